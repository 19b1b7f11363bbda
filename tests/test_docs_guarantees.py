"""docs/guarantees.md: every row cites real tests, and each cited test is the one shown.

Each citation is a ``{ref}`` to a proof label ``proof-<file>-<test>``; each proof includes
``tests/<file>.py`` with ``:pyobject: <test>`` under that label.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "guarantees.md"
CITATION = re.compile(r"\{ref\}`[^`<]*<proof-(test_\w+?)-(test_\w+)>`")
PROOF = re.compile(
    r"^\(proof-(test_\w+?)-(test_\w+)\)=\n#### `(test_\w+)`\n\n"
    r"```\{literalinclude\} \.\./tests/(test_\w+)\.py\n"
    r":language: python\n:pyobject: (test_\w+)\n```",
    flags=re.M,
)


def table() -> str:
    return PAGE.read_text(encoding="utf-8").split("\n## Proofs", 1)[0]


def test_guarantees_name_real_tests() -> None:
    """Every test the table cites exists in the file it names, so the table cannot drift.
    Catches: a test renamed or removed while a row still cites it (seen failing with a
    citation edited to a name that does not exist)."""
    cited = CITATION.findall(table())
    assert len(cited) >= 150
    for module, name in cited:
        source = (ROOT / "tests" / f"{module}.py").read_text(encoding="utf-8")
        assert re.search(rf"^(async )?def {name}\(", source, flags=re.M), f"{module}::{name}"


def test_every_row_cites_through_a_proof_link() -> None:
    """Each row's last cell holds only proof links (and notes): no bare file or test name that
    escapes the check above. Catches: a citation written as plain code."""
    rows = [line for line in table().splitlines() if line.startswith("| ")][1:]
    assert len(rows) >= 60
    for row in rows:
        proofs = row.rsplit(" | ", 1)[1]
        assert CITATION.search(proofs), row
        assert "test_" not in CITATION.sub("", proofs), row


def test_each_cited_test_is_the_one_shown() -> None:
    """Every citation has a proof, every proof is cited, and each proof includes the very test
    its label names. Catches: a proof showing another test than the row cites."""
    text = PAGE.read_text(encoding="utf-8")
    proofs = PROOF.findall(text)
    assert len(proofs) == text.count("```{literalinclude}")
    for module, name, heading, included, pyobject in proofs:
        assert module == included and name == heading == pyobject
    assert {(m, n) for m, n, *_ in proofs} == set(CITATION.findall(table()))
