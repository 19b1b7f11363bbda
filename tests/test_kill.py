"""Issue 9 item 1: SIGKILL a bulk run mid-flight, resume it; judged by the server's record.

``alloy-async bulk --checkpoint`` against a sandbox subprocess (20 ms latency, concurrency 32),
killed with SIGKILL (what the OOM killer, a spot reclaim or a forced pod delete sends) once a
share of the outcomes is written, then rerun with the same checkpoint until it completes:

* the sandbox executed every job at most once (``/_sandbox/executions``);
* every job has exactly one outcome line across all the runs;
* jobs that were in flight at the kill are reported as outcome-unknown, never re-sent.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import pytest
from test_cli_bulk import Sandbox, running_sandbox

CLI = [sys.executable, "-m", "alloy_async.cli"]
ENV = {k: v for k, v in os.environ.items() if not k.startswith("ALLOY_")}
N_JOBS = 3000


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with running_sandbox(users=8) as box:
        yield box


def _executions(url: str) -> Counter[str]:
    with urlopen(f"{url}/_sandbox/executions", timeout=30) as resp:
        done = json.loads(resp.read())
    return Counter(str(e["request_body"]["subject"]) for e in done)


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for raw in path.read_bytes().splitlines():
        # SIGKILL can cut the last line of a run in two: such a fragment is no outcome.
        try:
            rows.append(json.loads(raw))
        except json.JSONDecodeError:
            continue
    return rows


def _outcome_unknown(row: dict[str, Any]) -> bool:
    return not row["ok"] and row["error"]["type"] == "OutcomeUnknownError"


def _bulk(url: str, jobs: Path, out: Path, ckpt: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            *CLI,
            "bulk",
            str(jobs),
            "--out",
            str(out),
            "--checkpoint",
            str(ckpt),
            "--concurrency",
            "32",
            "--base-url",
            url,
            "--api-key",
            "sk_test_fake_alloy_key",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ENV,
    )


def _kill_when(proc: subprocess.Popen[bytes], out: Path, lines: int) -> None:
    """SIGKILL ``proc`` once ``out`` holds ``lines`` outcome lines (polled, bounded)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if out.exists() and out.stat().st_size and len(_lines(out)) >= lines:
            break
        time.sleep(0.005)  # polling a file another process writes: no event to wait on
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


@pytest.mark.parametrize("kill_points", [(0.2,), (0.35, 0.7)])
def test_sigkill_then_resume_executes_nothing_twice_and_loses_no_outcome(
    sandbox: Sandbox,
    tmp_path: Path,
    kill_points: tuple[float, ...],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Catches: a kill that finds nothing in flight (before the run starts, after it ends).

    Each kill must leave jobs in flight, which the next run reports outcome-unknown; else
    the resume had nothing to prove."""
    url, seeded = sandbox
    tag = f"k{len(kill_points)}"
    jobs = tmp_path / "jobs.jsonl"
    with jobs.open("w") as f:
        for n in range(N_JOBS):
            user, cred = seeded[n % len(seeded)]
            job = {
                "connectorId": "sendgrid",
                "actionId": "sendEmail",
                "credentialId": cred,
                "userId": user,
                "key": f"{tag}-{n}",
                "requestBody": {"to": f"c{n}@example.com", "subject": f"{tag}-{n}"},
            }
            f.write(json.dumps(job) + "\n")
    out, ckpt = tmp_path / "out.jsonl", tmp_path / "run.journal"
    after_kill = []  # outcome lines in --out when each kill landed
    for share in kill_points:
        _kill_when(_bulk(url, jobs, out, ckpt), out, int(N_JOBS * share))
        after_kill.append(len(_lines(out)))
    killed_lines = after_kill[-1]
    assert killed_lines < N_JOBS, "the run finished before it was killed"
    final = _bulk(url, jobs, out, ckpt)
    assert final.wait(timeout=300) in (0, 1)  # 1: some jobs ended outcome-unknown
    executed = _executions(url)
    mine = {k: n for k, n in executed.items() if k.startswith(f"{tag}-")}
    twice = sorted(k for k, n in mine.items() if n > 1)
    assert not twice, f"executed twice on the server: {twice[:10]}"
    rows = _lines(out)
    per_key = Counter(r["key"] for r in rows)
    assert set(per_key) == {f"{tag}-{n}" for n in range(N_JOBS)}, "a job has no outcome line"
    doubled = sorted(k for k, n in per_key.items() if n > 1)
    assert not doubled, f"keys with two outcome lines: {doubled[:10]}"
    unknown = [r for r in rows if _outcome_unknown(r)]
    # Jobs were in flight at every kill: the run after it (its lines start where the killed
    # one's stop) reports them outcome-unknown. A run killed idle leaves none.
    for i, start in enumerate(after_kill):
        end = after_kill[i + 1] if i + 1 < len(after_kill) else len(rows)
        assert any(_outcome_unknown(r) for r in rows[start:end]), (
            f"no outcome-unknown line from the run after kill {i + 1}: nothing was in flight "
            f"at that kill, or that run was itself killed before it started"
        )
    # What the server did not execute was either never sent or refused: never a lost success.
    for r in rows:
        if r["ok"]:
            assert mine.get(r["key"]) == 1, r
    with capsys.disabled():
        print(
            f"\n[reliability] SIGKILL x{len(kill_points)} at {kill_points} of {N_JOBS} jobs: "
            f"{killed_lines} lines before the resume, {len(mine)} executed once, 0 twice, "
            f"{len(unknown)} outcome-unknown (in flight at a kill), one line per job"
        )
