"""Issue 25: what ``mypy --strict`` makes of generated packages, run as a user would run it.

Two mypy runs share one cache (mypy is slow on 2 cores): the first checks the crafted
catalog's package, the committed package of the sandbox's catalog and a file of correct uses
(exit 0); the second checks one file per mistake the types must refuse (exit 1), and every
error must be the one its file announces on the line that makes it (``# expect: code text``).
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

from codegen_catalog import fake_with_acme, generate_from

from alloy_async.codegen import write

FIXTURES = Path(__file__).resolve().parent / "fixtures"

_HEAD = """\
from alloy_async import AlloyClient
from acme_bindings.acme_crm import AcmeCrmActions


async def use(alloy: AlloyClient) -> None:
    acme = AcmeCrmActions(alloy)
"""

GOOD = """\
from alloy_async import AlloyClient, ExecuteJob, ExecutionResult
from alloy_async.codegen import with_extra
from acme_bindings import AcmeCrmActions
from acme_bindings.acme_crm import CreateContactBody, CreateContactBodyCustom
from alloy_bindings import NotionActions, SlackActions


async def use(alloy: AlloyClient) -> list[ExecutionResult]:
    acme = AcmeCrmActions(alloy.for_user("u1"))
    custom = with_extra(CreateContactBodyCustom({"source": "web"}), {"utm_campaign": 3})
    body: CreateContactBody = {
        "first-name": "Ada",
        "class": "customer",
        "email": "ada@example.com",
        "address": {"street": "1 Main", "city": "Paris", "geo": {"lat": 1.5, "lng": 2}},
        "tags": ["vip"],
        "phones": [{"number": "+33", "kind": "work"}],
        "priority": 2,
        "owner": None,
        "metadata": {"anything": [1, "two"]},
        "labels": {"team": "a"},
        "custom": custom,
        "notes": object(),
    }
    results = [
        await acme.create_contact(credential_id="c", request_body=body, timeout=5, validate=True),
        await acme.get_contact(
            credential_id="c", path_params={"contact_id": "x"}, query_parameters={"fields": ["a"]}
        ),
        await acme.list_contacts_2(credential_id="c", query_parameters={"sort": "name"}),
        await acme.list_contacts(credential_id="c", validate="best_effort"),
        await acme.import_(credential_id="c", request_body={"rows": [{"id": 1}], "file": b""}),
        await SlackActions(alloy).chat_post_message(
            credential_id="c", request_body={"channel": "C1", "text": "hi"}
        ),
        await NotionActions(alloy).retrieve_a_page(credential_id="c", path_params={"page_id": "p"}),
    ]
    jobs: list[ExecuteJob] = [
        AcmeCrmActions.delete_contact_job(credential_id="c", path_params={"contact_id": "x"}),
        AcmeCrmActions.create_contact_job(credential_id="c", request_body=body, key="k"),
    ]
    async for outcome in alloy.actions.execute_many(jobs):
        assert outcome.ok
    return results
"""


def _body(**changes: str) -> str:
    """A create-contact body in source form: the valid one, with keys replaced (None drops
    one) or added."""
    keys = {
        "first-name": '"Ada"',
        "class": '"lead"',
        "email": '"a@x.io"',
        "address": '{"street": "s", "city": "c"}',
    }
    keys.update({k.replace("_", "-"): v for k, v in changes.items()})
    return "{" + ", ".join(f'"{k}": {v}' for k, v in keys.items() if v != "None") + "}"


def _create(**changes: str) -> str:
    return f'acme.create_contact(credential_id="c", request_body={_body(**changes)})'


# One user file per mistake: (the call, the error code mypy must give, a part of its message).
BAD = {
    "bad_wrong_type": (
        _create(first_name="1"),
        "typeddict-item",
        'has type "int", TypedDict item "first-name" has type "str"',
    ),
    "bad_missing_key": (
        _create(email="None"),
        "typeddict-item",
        'Missing key "email" for TypedDict "CreateContactBody"',
    ),
    "bad_unknown_key": (
        _create(nickname='"x"'),
        "typeddict-unknown-key",
        'Extra key "nickname" for TypedDict "CreateContactBody"',
    ),
    "bad_enum": (
        _create(**{"class": '"vip"'}),
        "typeddict-item",
        'has type "Literal[\'vip\']", TypedDict item "class" has type '
        "\"Literal['lead', 'customer', 'partner']\"",
    ),
    "bad_nested_missing": (
        _create(address='{"street": "s"}'),
        "typeddict-item",
        'Missing key "city" for TypedDict "CreateContactBodyAddress"',
    ),
    "bad_missing_path": (
        'acme.get_contact(credential_id="c")',
        "call-arg",
        'Missing named argument "path_params" for "get_contact" of "AcmeCrmActions"',
    ),
}

_ERROR = re.compile(
    r"^(?P<file>[^:]+\.py):(?P<line>\d+): error: (?P<text>.*)  \[(?P<code>[a-z-]+)\]$"
)


def _mypy(cwd: Path, *targets: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cwd / ".mypy"), *targets],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "MYPYPATH": str(FIXTURES)},
    )


def test_mypy_accepts_correct_use_and_refuses_each_mistake(tmp_path: Path) -> None:
    """Catches, one file each: a body key typed ``Any`` (a wrong type passes), a required key
    made ``NotRequired``, a TypedDict open to unknown keys (a typo passes), an enum typed
    ``str``, a nested object typed ``dict[str, Any]``, and an optional ``path_params``; the
    correct uses (every part kind, both packages, ``with_extra``, ``validate``, ``timeout``,
    ``_job`` into ``execute_many``) must all pass ``--strict``."""
    write(tmp_path / "acme_bindings", asyncio.run(generate_from(fake_with_acme(), "acme-crm")))
    (tmp_path / "good.py").write_text(GOOD)
    good = _mypy(tmp_path, "good.py", "acme_bindings", str(FIXTURES / "alloy_bindings"))
    assert good.returncode == 0, good.stdout + good.stderr

    line = len(_HEAD.splitlines()) + 1  # each file's one call, right after the head
    for name, (call, _, _) in BAD.items():
        (tmp_path / f"{name}.py").write_text(f"{_HEAD}    await {call}\n")
    bad = _mypy(tmp_path, *(f"{name}.py" for name in BAD))
    assert bad.returncode == 1, bad.stdout + bad.stderr
    found = {
        (m["file"], int(m["line"]), m["code"], m["text"])
        for m in map(_ERROR.match, bad.stdout.splitlines())
        if m
    }
    assert len(found) == len(BAD), bad.stdout
    for name, (_, code, message) in BAD.items():
        assert any(
            (file, number, kind) == (f"{name}.py", line, code) and message in text
            for file, number, kind, text in found
        ), (name, bad.stdout)
