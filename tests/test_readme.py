"""README.md is a landing page: short, with the exact commands CI runs, linking into docs/.

Its python examples run in ``tests/test_docs_snippets.py`` with every page of the docs.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def sh_lines() -> list[str]:
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    return [line.split("  #", 1)[0].strip() for block in blocks for line in block.splitlines()]


def test_readme_is_at_most_300_lines() -> None:
    """Catches: the manual growing back into README instead of docs/."""
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 300


def test_readme_gives_the_exact_commands() -> None:
    """The quick start, the test command (CI runs the one README gives), the docs build and how
    to read the docs locally, each on a line of its own in a ``sh`` block.
    Catches: a command edited in README but not in CI, or dropped."""
    lines = sh_lines()
    for command in (
        "bash .ci/install && .venv/bin/alloy-async demo",
        ".venv/bin/python -m pytest",
        ".venv/bin/python -m sphinx -E -nW --keep-going -b html docs docs/_build/html",
        "python -m http.server -d docs/_build/html",
    ):
        assert command in lines, command
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "\n.venv/bin/python -m pytest\n" in ci
    # CI builds the docs with README's command, so a reader's build fails where CI's does.
    assert "\n.venv/bin/python -m sphinx -E -nW --keep-going -b html docs docs/_build/html\n" in ci


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def test_every_link_of_readme_resolves() -> None:
    """Every relative link names a file that exists, and its #anchor a heading there.
    Catches: a page renamed or a heading reworded under README's links."""
    text = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)]+)\)", text)
    relative = [link for link in links if not link.startswith(("http://", "https://"))]
    assert len(relative) >= 15
    for link in relative:
        path, _, anchor = link.partition("#")
        target = ROOT / path
        assert target.is_file(), link
        if anchor:
            headings = re.findall(r"^#+ (.+)$", target.read_text(encoding="utf-8"), flags=re.M)
            assert anchor in {github_slug(h) for h in headings}, link
