"""Issue 22, item 1, with real worker processes: ``--per-user`` holds when runs share one
coordinator, as the two chunks an ``alloy-async worker`` runs at once do.

A real ``redis-server``, a sandbox subprocess whose own peak per user is the judge, and real
``alloy-async worker`` processes under the ``bulk --redis`` driver.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.request import urlopen

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

PER_USER = 2

# test_distributed_cli's Redis server and worker pool (which runs against this file's sandbox).
redis_server = test_distributed_cli.redis_server
workers = test_distributed_cli.workers


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    # 50 ms calls: the two chunks the worker runs at once overlap for the whole run.
    with running_sandbox(latency="50ms", users=1) as box:  # every call: one user's
        yield box


def test_per_user_holds_for_the_chunks_one_worker_runs_at_once(
    workers: Workers, sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    """One worker, so two chunks at once on one coordinator; 100 jobs of one user in two
    chunks. Catches: lease members numbered per run (the two chunks' runs both
    lease ``<id>:0``, ``<id>:1``..., and the lease script, taking a member it already holds
    for a retried call, grants it past the cap: the issue measured 4 at ``--per-user 2``)."""
    workers.start(concurrency=8)
    jobs, out = tmp_path / "jobs.jsonl", tmp_path / "out.jsonl"
    keys = write_jobs(jobs, sandbox, "cap", 100)
    code, err = finish(driver(redis_server.url, jobs, out, "cap", "--per-user", str(PER_USER)))
    assert code == 0, err
    one_line_per_job(lines(out), keys)
    done = executed(sandbox, "cap")
    assert set(done) == keys and max(done.values()) == 1
    with urlopen(f"{sandbox.url}/_sandbox/stats", timeout=30) as resp:
        stats: dict[str, Any] = json.loads(resp.read())
    assert stats["peak_in_flight_per_user"] == PER_USER, stats  # reached, never passed
