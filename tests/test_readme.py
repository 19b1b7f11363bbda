"""Every Python snippet of README.md's Tour runs, in order, against FakeAlloy."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

from alloy_async.testing import FakeAlloy

README = Path(__file__).resolve().parent.parent / "README.md"


def tour_snippets() -> list[str]:
    text = README.read_text(encoding="utf-8")
    tour = text.split("## Tour", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", tour, flags=re.S)


def test_tour_has_the_promised_snippets() -> None:
    """The tour covers users, connectors, actions, both credential kinds, execute, errors."""
    joined = "\n".join(tour_snippets())
    for needle in (
        "users.create",
        "connectors.list",
        "actions.get",
        'authentication_type="oauth2"',
        'authentication_type="apiKey"',
        "actions.execute",
        "except NotFoundError",
        "except OutcomeUnknownError",
        "actions.paginate",
        "actions.execute_many",
    ):
        assert needle in joined


async def test_tour_snippets_run() -> None:
    """Run each snippet with top-level await, sharing one namespace, as a reader would."""
    fake = FakeAlloy(strict=True)
    async with fake.client() as alloy:
        namespace: dict[str, Any] = {"alloy": alloy}
        for snippet in tour_snippets():
            if "completed HubSpot's OAuth consent" in snippet:
                fake.add_credential(namespace["user"].user_id, "hubspot")
            code = compile(snippet, "README.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            result = eval(code, namespace)
            if result is not None:
                await result
    # the welcome email, one page of contacts (the refused email never ran), 100 fan-out emails
    actions = [e.action_id for e in fake.executions]
    assert actions[:2] == ["sendEmail", "listContacts"]
    assert actions[2:] == ["sendEmail"] * 100


def test_guarantees_name_real_tests() -> None:
    """Every test the Guarantees table cites exists, so the table cannot drift."""
    text = README.read_text(encoding="utf-8")
    table = text.split("## Guarantees", 1)[1].split("\n## ", 1)[0]
    cited = re.findall(r"::(test_\w+)", table)
    assert len(cited) >= 15
    sources = "\n".join(p.read_text() for p in README.parent.joinpath("tests").glob("test_*.py"))
    missing = [name for name in cited if f"def {name}(" not in sources]
    assert missing == []
