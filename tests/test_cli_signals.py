"""``alloy-async bulk`` stopped by SIGTERM / SIGINT: dispatch stops, every dispatched job gets
exactly one outcome line, the exit code is 128 + signum, and a rerun with the same checkpoint
finishes the rest without executing anything twice. Two runs on one checkpoint: one is refused.

Real subprocesses against a sandbox subprocess; the sandbox's ``/_sandbox/executions`` (what
the server really executed) is the judge, never the client's own report.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_cli_bulk import (
    CLI,
    ENV,
    Sandbox,
    executed,
    job,
    line,
    rows_of,
    run_cli,
    running_sandbox,
    wait_for,
)

from alloy_async.journal import SqliteJournal, read_journal

TOTAL = 400


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with running_sandbox(latency="20ms") as box:
        yield box


@pytest.fixture
def slow_sandbox() -> Iterator[Sandbox]:
    """Calls take 1 s: a signal always finds calls in flight."""
    with running_sandbox(latency="1s") as box:
        yield box


def write_jobs(box: Sandbox, path: Path, total: int = TOTAL) -> list[str]:
    path.write_bytes(b"".join(line(job(box, n)) + b"\n" for n in range(total)))
    return [f"job-{n}" for n in range(total)]


def start_bulk(
    box: Sandbox, jobs: Path, out: Path, ckpt: Path, *extra: str, stdin: int | None = None
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*CLI, "bulk", str(jobs), "--out", str(out), "--checkpoint", str(ckpt),
         "--concurrency", "32", *box.args(), *extra],
        stdin=stdin,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=ENV,
    )  # fmt: skip


def count_lines(path: Path) -> int:
    return len(path.read_bytes().splitlines()) if path.exists() else 0


def read_until(proc: subprocess.Popen[bytes], marker: str, timeout: float = 30) -> str:
    """Read the process's stderr until ``marker`` appears (bounded)."""
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    seen = b""
    deadline = time.monotonic() + timeout
    while marker.encode() not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"no {marker!r} on stderr within {timeout} s: {seen.decode()!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            assert chunk, f"stderr closed before {marker!r}: {seen.decode()!r}"
            seen += chunk
    return seen.decode()


def finish(proc: subprocess.Popen[bytes], timeout: float = 60, stdin: bytes | None = None) -> str:
    """Wait for ``proc`` (writing ``stdin`` to it, then closing it) and return its stderr."""
    try:
        _, err = proc.communicate(stdin, timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    return err.decode()


def check_one_line_per_executed_key(
    rows: list[dict[str, Any]], server: Counter[str], keys: list[str]
) -> None:
    per_key = Counter(r["key"] for r in rows)
    assert not [k for k, n in per_key.items() if n > 1], "a job has two outcome lines"
    assert set(per_key) <= set(keys)
    missing = sorted(set(server) - set(per_key), key=lambda k: int(k.rsplit("-", 1)[1]))
    assert not missing, f"executed on the server without an outcome line: {missing[:10]}"
    for r in rows:  # a success is something the server did
        if r["ok"]:
            assert server[r["key"]] == 1, r


def rerun_and_check(
    box: Sandbox, jobs: Path, out: Path, ckpt: Path, keys: list[str], first: list[dict[str, Any]]
) -> None:
    """Rerun on the same checkpoint to the end: nothing executed twice, every key has its
    line; a job first reported outcome-unknown is never sent again."""
    second = run_cli(
        "bulk", str(jobs), "--out", str(out), "--checkpoint", str(ckpt),
        "--concurrency", "32", *box.args(),
    )  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert "Traceback" not in second.stderr
    server = executed(box.url)
    assert max(server.values()) == 1, "a job was executed twice"
    rows = rows_of(out)
    per_key = Counter(r["key"] for r in rows)
    assert set(per_key) == set(keys), "a job of the file has no outcome line"
    unknown_first = {
        r["key"] for r in first if not r["ok"] and r["error"]["type"] == "OutcomeUnknownError"
    }
    for key, n in per_key.items():
        assert n == 1 or key in unknown_first, (key, n)
    for key in unknown_first:
        assert server[key] <= 1
    # Every job of the first run that did not run on the server ran in the second, once.
    assert set(server) | unknown_first >= set(keys)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_stops_cleanly_with_one_line_per_dispatched_job(
    sandbox: Sandbox, tmp_path: Path, sig: signal.Signals, code: int
) -> None:
    """One signal mid-run: dispatch stops, jobs in flight finish within the grace, each job
    the server executed has exactly one outcome line, exit 128 + signum; then the rerun."""
    jobs, out, ckpt = tmp_path / "jobs.jsonl", tmp_path / "out.jsonl", tmp_path / "run.journal"
    keys = write_jobs(sandbox, jobs)
    proc = start_bulk(sandbox, jobs, out, ckpt)
    try:
        wait_for(lambda: count_lines(out) >= 40, "40 outcome lines", timeout=60)
        proc.send_signal(sig)
    finally:
        stderr = finish(proc)
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    name = sig.name
    assert f"{name} received: dispatch stopped; jobs in flight get 10 s" in stderr, stderr
    assert f"stopped early: {name} received" in stderr
    first = rows_of(out)
    assert 40 <= len(first) < TOTAL, "the signal came too late to test anything"
    check_one_line_per_executed_key(first, executed(sandbox.url), keys)
    # 20 ms calls and a 10 s grace: every call in flight finished.
    assert all(r["ok"] for r in first), [r for r in first if not r["ok"]][:3]
    rerun_and_check(sandbox, jobs, out, ckpt, keys, first)


def test_second_signal_gives_up_on_jobs_in_flight(slow_sandbox: Sandbox, tmp_path: Path) -> None:
    """SIGINT, then SIGINT again during the grace: the run ends at once, the jobs in flight
    each get one OutcomeUnknownError line, and the rerun never re-sends them."""
    box = slow_sandbox
    jobs, out, ckpt = tmp_path / "jobs.jsonl", tmp_path / "out.jsonl", tmp_path / "run.journal"
    keys = write_jobs(box, jobs, total=200)
    proc = start_bulk(box, jobs, out, ckpt, "--grace", "600")
    try:
        wait_for(lambda: count_lines(out) >= 32, "the first wave of outcomes", timeout=60)
        proc.send_signal(signal.SIGINT)
        read_until(proc, "SIGINT received: dispatch stopped; jobs in flight get 600 s")
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
    finally:
        stderr = finish(proc)
    assert proc.returncode == 130, stderr
    assert time.monotonic() - started < 30, "the second signal did not cut the grace short"
    first = rows_of(out)
    unknown = [r for r in first if not r["ok"]]
    assert unknown, "no call was in flight at the second signal"
    assert {r["error"]["type"] for r in unknown} == {"OutcomeUnknownError"}
    check_one_line_per_executed_key(first, executed(box.url), keys)
    rerun_and_check(box, jobs, out, ckpt, keys, first)


def test_two_runs_on_one_checkpoint_one_is_refused(sandbox: Sandbox, tmp_path: Path) -> None:
    """Started together on one checkpoint: one runs, the other exits 2 naming the holder;
    the server executed each job at most once (here: exactly once, by the winner).

    Both read their jobs from stdin, kept open until one of them has exited: the winner
    cannot end (and let go of the checkpoint) before the other has tried it, however slowly
    either starts on a busy machine.

    Catches: a checkpoint journal opened without its lock (both runs go on)."""
    ckpt = tmp_path / "run.journal"
    total = 300
    lines = [line(job(sandbox, n)) + b"\n" for n in range(total)]
    keys = [f"job-{n}" for n in range(total)]
    first, rest = b"".join(lines[:10]), b"".join(lines[10:])
    outs = [tmp_path / "out-a.jsonl", tmp_path / "out-b.jsonl"]
    procs = [
        start_bulk(sandbox, Path("-"), out, ckpt, "--concurrency", "4", stdin=subprocess.PIPE)
        for out in outs
    ]
    try:
        for proc in procs:
            assert proc.stdin is not None
            with contextlib.suppress(BrokenPipeError):  # the loser may be gone already
                proc.stdin.write(first)
                proc.stdin.flush()
        wait_for(
            lambda: any(p.poll() is not None for p in procs),
            "one of two runs on one checkpoint to be refused",
            timeout=60,
        )
        loser = next(i for i, p in enumerate(procs) if p.poll() is not None)
        errs = ["", ""]
        errs[loser] = finish(procs[loser])
        assert procs[1 - loser].poll() is None, "both runs ended"
        errs[1 - loser] = finish(procs[1 - loser], stdin=rest)  # the winner runs them all
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=10)
    assert procs[loser].returncode == 2, errs
    assert procs[1 - loser].returncode == 0, errs
    message = errs[loser]
    assert "Traceback" not in message
    assert len(message.strip().splitlines()) == 1, message
    assert f"in use by pid {procs[1 - loser].pid}" in message, message  # names the holder
    server = executed(sandbox.url)
    assert max(server.values()) == 1
    assert set(server) == set(keys)


def test_resume_settles_outcomes_written_but_not_journaled(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """A run killed after writing a job's line but before journaling it leaves an intent: the
    rerun takes the line as the outcome (no second line, not sent again, not a "duplicate");
    an intent without a line (in flight at the kill) gets one OutcomeUnknownError line and is
    never sent; the rest runs once."""
    jobs, out, ckpt = tmp_path / "jobs.jsonl", tmp_path / "out.jsonl", tmp_path / "run.journal"
    keys = write_jobs(sandbox, jobs, total=3)

    async def killed_run() -> None:  # what SIGKILL leaves: two intents, no outcome
        journal = SqliteJournal(ckpt)
        await journal.open("killed-run")
        for key in keys[:2]:
            await journal.intend(key)
        await journal.aclose()

    asyncio.run(killed_run())
    written = {"line": 1, "key": keys[0], "ok": True, "attempts": 1, "data": {"sent": True}}
    out.write_text(json.dumps(written) + "\n")  # job-0's line made it; job-1 was in flight
    proc = run_cli("bulk", str(jobs), "--out", str(out), "--checkpoint", str(ckpt), *sandbox.args())
    assert proc.returncode == 1, proc.stderr  # job-1's outcome is unknown
    assert "duplicate of an earlier job" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "1 job(s) an earlier run wrote to --out" in proc.stderr
    rows = rows_of(out)
    assert rows[0] == written  # the earlier line stands; nothing else was said of job-0
    assert Counter(r["key"] for r in rows) == Counter(keys)
    unknown = next(r for r in rows if r["key"] == keys[1])
    assert unknown["error"]["type"] == "OutcomeUnknownError"
    assert executed(sandbox.url) == Counter({keys[2]: 1})
    assert dict(read_journal(ckpt)) == {
        keys[0]: "succeeded", keys[1]: "outcome_unknown", keys[2]: "succeeded",
    }  # fmt: skip
