"""Issue 22, item 3: under ``bulk --redis`` one credential's quarantine is the namespace's, not
each 50-job chunk's.

Everything is real: a ``redis-server`` of our own, a sandbox subprocess whose own record judges
what was sent, two ``alloy-async worker`` processes and the driver. One credential of four is
revoked at the sandbox (its executes answer 401, ``source: THIRD_PARTY``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.request import Request, urlopen

import pytest
import test_distributed_cli
from redis_server import RedisServer
from test_cli_bulk import Sandbox, running_sandbox
from test_distributed_cli import (
    Workers,
    driver,
    executed,
    finish,
    lines,
    one_line_per_job,
    write_jobs,
)  # fmt: skip

N_JOBS = 2000
CONCURRENCY = 8  # per worker

# test_distributed_cli's Redis server and worker pool (which runs against this file's sandbox).
redis_server = test_distributed_cli.redis_server
workers = test_distributed_cli.workers


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with running_sandbox(latency="20ms", users=4) as box:
        yield box


def revoked(box: Sandbox, credential_id: str, state: bool) -> None:
    """Revoke (or, after the user reconnected, restore) a credential at the sandbox."""
    method = "PUT" if state else "DELETE"
    url = f"{box.url}/_sandbox/credentials/{credential_id}/revoked"
    with urlopen(Request(url, method=method), timeout=30) as resp:
        assert json.loads(resp.read()) == {"credentialId": credential_id, "revoked": state}


def requests_of(box: Sandbox, credential_id: str) -> int:
    """Executes the sandbox refused for revoked ``credential_id`` (its own count: a refused
    one executes nothing)."""
    with urlopen(f"{box.url}/_sandbox/stats", timeout=30) as resp:
        stats: dict[str, Any] = json.loads(resp.read())
    return int(stats["revoked_requests"].get(credential_id, 0))


def test_one_revoked_credential_is_quarantined_across_workers_and_chunks(
    workers: Workers,
    sandbox: Sandbox,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    """Catches: a quarantine kept per run (each chunk, in each worker, pays its own 401s: the
    issue measured 254 requests to the revoked credential); one that is never lifted (the
    rerun after reconnecting must send the held-back jobs); a driver that counts quarantined
    jobs as plain failures without saying which and how to send them.

    Bound: when the first 401 comes back, at most ``2 workers x 8`` calls are in flight, and
    the message reaches the other worker within a few ms; twice that is the ceiling. Per-chunk
    quarantine costs up to 8 per chunk, 40 chunks."""
    bad = sandbox.seeded[1][1]
    revoked(sandbox, bad, True)
    workers.start(concurrency=CONCURRENCY)
    workers.start(concurrency=CONCURRENCY)
    jobs, out = tmp_path / "jobs.jsonl", tmp_path / "out.jsonl"
    write_jobs(jobs, sandbox, "q", N_JOBS)  # over the four users in turn
    creds = {f"q-{i}": sandbox.seeded[i % 4][1] for i in range(N_JOBS)}
    code, err = finish(driver(redis_server.url, jobs, out, "q"))
    assert code == 1, err  # failed lines: the refused and the held-back jobs
    rows = lines(out)
    one_line_per_job(rows, set(creds))
    healthy = {k for k, c in creds.items() if c != bad}
    done = executed(sandbox, "q")
    assert set(done) == healthy and max(done.values()) == 1
    sent_bad = requests_of(sandbox, bad)
    assert 1 <= sent_bad <= 2 * 2 * CONCURRENCY, sent_bad
    refused = [r for r in rows if r.get("error", {}).get("type") == "AuthenticationError"]
    held = [r for r in rows if r.get("error", {}).get("type") == "CredentialQuarantinedError"]
    assert len(refused) == sent_bad and len(held) == N_JOBS // 4 - sent_bad
    assert {r["error"]["credentialId"] for r in held} == {bad}
    # The driver says them apart, with what to do.
    said = re.search(r"(\d+) job\(s\) not sent: their credential was refused .*\((.*?)\)", err)
    assert said is not None, err
    assert int(said.group(1)) == len(held) and said.group(2) == bad
    assert "reconnect, then rerun with the same --namespace and --out" in err

    # The user reconnects; the rerun (same namespace and --out) sends exactly those jobs.
    revoked(sandbox, bad, False)
    code, err = finish(driver(redis_server.url, jobs, out, "q"))
    assert code == 0, err
    done = executed(sandbox, "q")
    assert set(done) == set(creds) and max(done.values()) == 1
    latest = {r["key"]: r for r in lines(out)}  # a rerun appends the lines it sends again
    assert all(r["ok"] for r in latest.values())
