"""``alloy-async bulk --validate`` / ``--dry-run``, and a quarantined credential in a CLI run.

The command runs in a subprocess against a sandbox served on 127.0.0.1 by this test's own loop
(an in-process :class:`SandboxServer`), so a test can revoke a credential on the sandbox's
``fake`` and read the server's own record: ``/_sandbox/executions`` (what ran) and
``fake.requests`` (every request, by route: ``actions.get`` is a schema fetch, ``execute`` an
execution). The sandbox subprocess of ``test_cli_bulk`` serves ``FakeAlloy(record=False)``, so
neither is available there (its ``/_sandbox/stats`` reports ``requests: 0``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import pytest
from test_cli_bulk import CLI, ENV, Sandbox, job, line, rows_of

from alloy_async.sandbox import SandboxServer
from alloy_async.testing import FakeAlloy
from alloy_async.testing.seed import seed_demo


class Box(NamedTuple):
    box: Sandbox
    fake: FakeAlloy


@contextlib.asynccontextmanager
async def serving(users: int = 3, latency: float = 0.02) -> AsyncIterator[Box]:
    """A sandbox on this loop, seeded like ``alloy-async sandbox --users N`` (same ids)."""
    fake = FakeAlloy(seed=0, latency=latency)
    seeded = seed_demo(fake, users=users)
    async with SandboxServer(fake) as server:
        yield Box(Sandbox(server.url, seeded), fake)


async def cli(*args: str) -> tuple[int, str, str]:
    """Run ``alloy-async *args`` in a subprocess while this loop keeps serving the sandbox."""
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=ENV,
    )
    try:
        async with asyncio.timeout(120):
            out, err = await proc.communicate()
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def executed(url: str) -> Counter[str]:
    """subject -> times the server executed it (``/_sandbox/executions``)."""
    async with aiohttp.ClientSession() as http, http.get(f"{url}/_sandbox/executions") as resp:
        assert resp.status == 200
        rows: list[dict[str, Any]] = await resp.json()
    return Counter(str(r["request_body"].get("subject")) for r in rows)


def routes(fake: FakeAlloy) -> Counter[str]:
    return Counter(r.route for r in fake.requests)


def write_jobs(path: Path, items: list[dict[str, Any] | bytes]) -> None:
    path.write_bytes(b"\n".join(x if isinstance(x, bytes) else line(x) for x in items) + b"\n")


def mixed(box: Sandbox) -> tuple[list[dict[str, Any] | bytes], dict[str, int], dict[str, Any]]:
    """Jobs with invalid ones and a bad line: (lines, {valid key: line}, {invalid key: (line,
    problems)})."""

    items: list[dict[str, Any] | bytes] = [
        job(box, 0),  # 1
        job(box, 1, requestBody={"subject": "job-1"}),  # 2: "to" missing
        job(box, 2),  # 3
        b"{not json",  # 4: a bad line, no job
        job(box, 4, requestBody={"to": 5, "subject": "job-4"}),  # 5: "to" not a string
        job(box, 5),  # 6
        job(box, 6, requestBody={}),  # 7: both missing (no subject: executed() would say "None")
        job(box, 7),  # 8
    ]
    valid = {"job-0": 1, "job-2": 3, "job-5": 6, "job-7": 8}
    required = "is a required property"
    invalid = {
        "job-1": (2, [("/request_body/to", f"'to' {required}", "required")]),
        "job-4": (5, [("/request_body/to", "must be of type 'string'", "type")]),
        "job-6": (
            7,
            [
                ("/request_body/subject", f"'subject' {required}", "required"),
                ("/request_body/to", f"'to' {required}", "required"),
            ],
        ),
    }
    return items, valid, invalid


def check_invalid_row(row: dict[str, Any], number: int, problems: list[Any]) -> None:
    assert row["line"] == number and row["ok"] is False and row["attempts"] == 0
    error = row["error"]
    assert error["type"] == "InvalidRequestError"
    assert "nothing was sent" in error["message"]
    assert [(p["pointer"], p["message"], p["keyword"]) for p in error["problems"]] == problems


# -- 1. --validate ---------------------------------------------------------------------------


async def test_validate_fails_invalid_jobs_unsent_and_runs_the_valid_ones(tmp_path: Path) -> None:
    jobs, out = tmp_path / "jobs.jsonl", tmp_path / "out.jsonl"
    async with serving() as (box, fake):
        items, valid, invalid = mixed(box)
        write_jobs(jobs, items)
        code, stdout, stderr = await cli(
            "bulk", str(jobs), "--out", str(out), "--validate", *box.args()
        )
        ran = await executed(box.url)
    assert code == 1, stderr
    assert stdout == ""
    assert ran == Counter(dict.fromkeys(valid, 1))  # exactly the valid ones, once each
    assert routes(fake)["execute"] == len(valid)
    assert routes(fake)["actions.get"] == 1  # one schema fetch for the one action
    rows = {r["key"]: r for r in rows_of(out)}
    assert len(rows_of(out)) == len(valid) + len(invalid)  # one line per job
    assert set(rows) == set(valid) | set(invalid)
    for key, number in valid.items():
        assert rows[key]["ok"] is True and rows[key]["line"] == number
    for key, (number, problems) in invalid.items():
        check_invalid_row(rows[key], number, problems)
    assert "line 4:" in stderr  # the bad line, by number
    assert "InvalidRequestError x3" in stderr


# -- 2. --dry-run ----------------------------------------------------------------------------


async def test_dry_run_sends_nothing_and_writes_only_the_invalid_jobs(tmp_path: Path) -> None:
    jobs, out = tmp_path / "jobs.jsonl", tmp_path / "out.jsonl"
    async with serving() as (box, fake):
        items, valid, invalid = mixed(box)
        items.append(job(box, 8, actionId="noSuchAction"))  # 9: cannot be validated
        write_jobs(jobs, items)
        code, stdout, stderr = await cli(
            "bulk", str(jobs), "--out", str(out), "--dry-run", *box.args()
        )
        ran = await executed(box.url)
    assert code == 1, stderr
    assert stdout == ""
    assert ran == Counter() and fake.executions == []
    assert routes(fake)["execute"] == 0  # not a single execute request
    assert set(routes(fake)) == {"actions.get"}
    rows = rows_of(out)
    assert len(rows) == len(invalid) + 1  # exactly one line per invalid job
    by_key = {r["key"]: r for r in rows}
    for key, (number, problems) in invalid.items():
        check_invalid_row(by_key[key], number, problems)
        assert f"line {number}: " in stderr
    unknown = by_key["job-8"]
    assert unknown["line"] == 9 and unknown["error"]["type"] == "NotFoundError"
    assert unknown["error"]["status"] == 404
    summary = stderr.strip().splitlines()[-1]
    assert (len(valid), len(invalid)) == (4, 3)
    assert summary == (
        "dry run: 8 job(s) checked: 4 valid, 3 invalid, 1 could not be validated; "
        "1 bad line(s); nothing was sent"
    )


async def test_dry_run_of_valid_jobs_exits_0_and_writes_nothing(tmp_path: Path) -> None:
    jobs, out = tmp_path / "jobs.jsonl", tmp_path / "out.jsonl"
    async with serving() as (box, fake):
        write_jobs(jobs, [job(box, n) for n in range(6)])
        code, _, stderr = await cli("bulk", str(jobs), "--out", str(out), "--dry-run", *box.args())
        ran = await executed(box.url)
    assert code == 0, stderr
    assert ran == Counter() and routes(fake)["execute"] == 0
    assert out.read_text(encoding="utf-8") == ""
    assert stderr.strip().splitlines() == [
        "dry run: 6 job(s) checked: 6 valid, 0 invalid, 0 could not be validated; "
        "0 bad line(s); nothing was sent"
    ]


# -- 3. options that do not go together ------------------------------------------------------


REDIS = ["--redis", "redis://127.0.0.1:1"]


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--validate", "--dry-run"], "--validate and --dry-run: choose one"),
        (["--validate", *REDIS, "--namespace", "n"], "not available with --redis"),
        (["--dry-run", *REDIS, "--namespace", "n"], "not available with --redis"),
        (["--validate", *REDIS], "not available with --redis"),
    ],
)
async def test_conflicting_options_are_one_line_and_exit_2(
    tmp_path: Path, flags: list[str], says: str
) -> None:
    jobs, out = tmp_path / "jobs.jsonl", tmp_path / "out.jsonl"
    async with serving() as (box, fake):
        write_jobs(jobs, [job(box, n) for n in range(3)])
        code, stdout, stderr = await cli("bulk", str(jobs), "--out", str(out), *flags, *box.args())
        ran = await executed(box.url)
    assert code == 2, stderr
    assert stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    assert says in lines[0]
    assert fake.requests == [] and ran == Counter()
    assert not out.exists() or out.read_text(encoding="utf-8") == ""


# -- 4. a revoked credential -----------------------------------------------------------------


def check_quarantine_rows(
    rows: list[dict[str, Any]], bad: str, bad_user: str, sent: list[str], concurrency: int
) -> list[str]:
    """The out lines of a run where ``bad`` was revoked; returns the quarantined keys."""
    assert 1 <= len(sent) <= concurrency
    held = []
    for row in rows:
        number = int(row["key"].split("-")[1]) + 1
        assert row["line"] == number
        if row["userId"] != bad_user:
            assert row["ok"] is True, row
        elif row["key"] in sent:
            error = row["error"]
            assert error["type"] == "AuthenticationError" and error["status"] == 401
            assert error["code"] == "CREDENTIAL_REVOKED"
        else:
            error = row["error"]
            assert row["ok"] is False and row["attempts"] == 0
            assert error["type"] == "CredentialQuarantinedError"
            assert error["credentialId"] == bad and error["cause"] == "AuthenticationError"
            assert bad in error["message"]
            held.append(row["key"])
    return held


async def test_a_revoked_credential_is_quarantined_in_a_cli_run(tmp_path: Path) -> None:
    jobs, out = tmp_path / "jobs.jsonl", tmp_path / "out.jsonl"
    n = 30
    async with serving() as (box, fake):
        bad_user, bad = box.seeded[1]
        fake.revoke_credential(bad)
        write_jobs(jobs, [job(box, i) for i in range(n)])
        code, _, stderr = await cli(
            "bulk", str(jobs), "--out", str(out), "--concurrency", "4", *box.args()
        )
        ran = await executed(box.url)
    assert code == 1, stderr
    healthy = [f"job-{i}" for i in range(n) if box.seeded[i % 3][1] != bad]
    assert ran == Counter(dict.fromkeys(healthy, 1))
    sent = [
        str(r.json["requestBody"]["subject"])
        for r in fake.requests
        if r.route == "execute" and r.json["credentialId"] == bad
    ]
    rows = rows_of(out)
    assert len(rows) == n
    held = check_quarantine_rows(rows, bad, bad_user, sent, 4)
    assert len(held) == n // 3 - len(sent) > 0
    assert f"quarantined credentials: {bad} ({len(held)} jobs not sent" in stderr
    assert f"{len(held)} job(s) not sent: their credential was refused" in stderr
    assert "CredentialQuarantinedError" in stderr


async def test_a_rerun_with_the_checkpoint_after_reconnecting_sends_the_quarantined_jobs(
    tmp_path: Path,
) -> None:
    jobs, ckpt = tmp_path / "jobs.jsonl", tmp_path / "run.db"
    out1, out2 = tmp_path / "out1.jsonl", tmp_path / "out2.jsonl"
    n = 30
    async with serving() as (box, fake):
        bad_user, bad = box.seeded[2]
        fake.revoke_credential(bad)
        write_jobs(jobs, [job(box, i) for i in range(n)])
        args = ["--concurrency", "4", "--checkpoint", str(ckpt), *box.args()]
        code, _, stderr = await cli("bulk", str(jobs), "--out", str(out1), *args)
        assert code == 1, stderr
        assert "rerun with the same --checkpoint" in stderr
        sent = [
            str(r.json["requestBody"]["subject"])
            for r in fake.requests
            if r.route == "execute" and r.json["credentialId"] == bad
        ]
        held = check_quarantine_rows(rows_of(out1), bad, bad_user, sent, 4)
        first = await executed(box.url)
        before = len(fake.requests)

        fake.revoked.discard(bad)  # the user reconnected
        code, _, stderr = await cli("bulk", str(jobs), "--out", str(out2), *args)
        ran = await executed(box.url)
    assert code == 0, stderr
    # exactly the quarantined jobs and those the third party refused with 401 (nothing ran
    # for them) are sent, once each
    again = set(held) | set(sent)
    resent = [str(r.json["requestBody"]["subject"]) for r in fake.requests[before:]]
    assert sorted(resent) == sorted(again)
    assert ran - first == Counter(dict.fromkeys(again, 1))
    rows = rows_of(out2)
    assert sorted(r["key"] for r in rows) == sorted(again) and all(r["ok"] for r in rows)
    assert "quarantined" not in stderr
