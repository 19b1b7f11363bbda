"""The namespace's credential quarantine when a worker holding it is SIGKILLed (no clean
leave: its live-run entry stays on Redis until it lapses, ``lease_ttl`` = 10 s after its last
renewal, and it may die mid-call).

Everything is real: a ``redis-server`` of our own, a sandbox subprocess whose own record
(``/_sandbox/executions``, ``/_sandbox/stats``) judges what was sent, ``alloy-async worker``
processes and the ``bulk --redis`` driver. One credential of four is revoked at the sandbox.
The tests wait for a dead holder's entry to lapse by polling Redis (no sleep): each lasts at
most ``lease_ttl`` plus the run around it.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import pytest
import redis
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
    wait_for,
    write_jobs,
    written,
)  # fmt: skip
from test_quarantine_workers import requests_of, revoked

from alloy_async.distributed import RedisCoordinator

# test_distributed_cli's Redis server and worker pool (which runs against this file's sandbox).
redis_server = test_distributed_cli.redis_server
workers = test_distributed_cli.workers

CHUNK = 50  # jobs per chunk (the driver's)
LAPSE = 30.0  # seconds to wait for a dead holder's entry to lapse (lease_ttl 10 s, loaded box)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    # 100 ms a call: a worker is always mid-call while the run lasts.
    with running_sandbox(latency="100ms", users=4) as box:
        yield box


def _keys(namespace: str) -> tuple[str, str]:
    """(the quarantine hash, the live runs' sorted set) of ``namespace`` on Redis (the
    coordinator's own names; it connects on first use, never here)."""
    quarantine = RedisCoordinator("redis://127.0.0.1:1/0", namespace=namespace).quarantine
    return quarantine.key, quarantine.runs_key


def _redis_ms(raw: redis.Redis) -> float:
    """Redis's clock in ms (the live runs' scores are expiry times on it)."""
    sec, usec = raw.time()
    return sec * 1000 + usec / 1000


def _in_flight(box: Sandbox) -> int:
    with urlopen(f"{box.url}/_sandbox/stats", timeout=30) as resp:
        return int(json.loads(resp.read())["in_flight"])


def _kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


def _chunks_run(log: str) -> int:
    """Chunks a stopped worker says it ran (its last progress line)."""
    found = re.findall(r"worker: (\d+) chunk\(s\)", log)
    return int(found[-1]) if found else 0


def test_a_sigkilled_holders_lapse_leaves_the_quarantine_to_the_live_runs(
    workers: Workers, sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Worker A is SIGKILLed mid-call while it holds the quarantine; B (and the driver's
    session) go on. A's entry lapses and a later run drops it; the quarantine must stay, and
    worker C, started only then, takes it from Redis.

    Catches: the end of a dead holder (its lapsed entry dropped) taking the quarantine with it
    while live holders remain (``_LAST_ONE_OUT`` deleting it when any entry expired, not when
    none is left): the hash is gone from Redis and C sends the revoked credential's jobs (the
    sandbox counts them); a kill that resends what A had in flight, or loses a job."""
    n, bad = 600, sandbox.seeded[1][1]
    quarantine, runs = _keys("qk")
    revoked(sandbox, bad, True)
    victim = workers.start()
    workers.start()
    jobs, out = tmp_path / "jobs.jsonl", tmp_path / "out.jsonl"
    keys = write_jobs(jobs, sandbox, "qk", n)  # over the four users in turn
    creds = {f"qk-{i}": sandbox.seeded[i % 4][1] for i in range(n)}
    # Two calls at once per worker: the run outlasts A's lapse, and A is always mid-call.
    run = driver(redis_server.url, jobs, out, "qk", "--concurrency", "2")
    try:
        with redis_server.client() as raw:
            wait_for(
                "the quarantine on Redis and two chunks written",
                lambda: bool(raw.hexists(quarantine, bad)) and written(out) >= 2 * CHUNK,
            )
            paid = requests_of(sandbox, bad)  # every process knows it by now
            _kill(victim)
            assert written(out) < n, "the run finished before the kill"
            at_kill = dict(raw.zrange(runs, 0, -1, withscores=True))  # A's entries among them

            def settled() -> bool:  # each entry left, or was renewed (a live holder's)
                now = {m: raw.zscore(runs, m) for m in at_kill}
                return all(s is None or s > at_kill[m] for m, s in now.items())

            # A's entries are neither: they go only once they lapsed and a run dropped them.
            wait_for("the victim's entries lapsed and dropped", settled, LAPSE)
            assert raw.hexists(quarantine, bad), "a dead holder's end took the quarantine"
            assert run.poll() is None and written(out) < n, "the run ended before A lapsed"
            workers.start()  # C: its first run takes the namespace's quarantine from Redis
        code, err = finish(run)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert workers.stop()[1:] == [0, 0]
    assert _chunks_run(workers.log(2)) >= 1, "C ran no chunk: nothing proved"
    # The sandbox's record: nothing of the revoked credential after the kill, nothing twice.
    assert requests_of(sandbox, bad) == paid and 1 <= paid <= 2 * 2 * 2, paid
    rows = lines(out)
    one_line_per_job(rows, keys)
    done = executed(sandbox, "qk")
    assert max(done.values()) == 1, [k for k, c in done.items() if c > 1][:10]
    kinds = {r["error"]["type"] for r in rows if not r["ok"]}
    assert kinds <= {"CredentialQuarantinedError", "AuthenticationError", "OutcomeUnknownError"}
    for row in rows:
        if row["ok"]:
            assert done[row["key"]] == 1 and creds[row["key"]] != bad, row
        elif row["error"]["type"] != "OutcomeUnknownError":
            assert creds[row["key"]] == bad and row["key"] not in done, row
    # What A had in flight is outcome-unknown (never resent), only in the chunks it held.
    unknown = [r for r in rows if not r["ok"] and r["error"]["type"] == "OutcomeUnknownError"]
    assert unknown, "the victim had nothing in flight when it was killed"
    assert len({(r["line"] - 1) // CHUNK for r in unknown}) <= 2, unknown
    assert code == 1, err


def _outcomes(path: Path) -> tuple[dict[str, list[dict[str, Any]]], int]:
    """Each key's lines in ``--out``, in order, and the torn lines (a driver killed mid-write
    leaves at most one)."""
    per_key: dict[str, list[dict[str, Any]]] = {}
    torn = 0
    for raw in path.read_bytes().splitlines():
        try:
            row = json.loads(raw)
        except json.JSONDecodeError:
            torn += 1
            continue
        per_key.setdefault(row["key"], []).append(row)
    return per_key, torn


def _never_acted_on(row: dict[str, Any]) -> bool:
    """A line saying the server did nothing with the job (a rerun sends it)."""
    error = row.get("error") or {}
    return error.get("type") == "CredentialQuarantinedError" or (
        error.get("type") == "AuthenticationError" and error.get("source") == "THIRD_PARTY"
    )


def test_after_every_holder_is_sigkilled_a_rerun_sends_the_held_back_jobs_once(
    workers: Workers, sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Both workers and the driver are SIGKILLed mid-run (their entries stay until they
    lapse); the user reconnects; the operator starts new workers and reruns with the same
    namespace and --out.

    Catches: a dead holder's entry that keeps the quarantine for ever (a join that does not
    drop lapsed entries: the rerun holds the jobs back again); a rerun that resends what was
    in flight at the kill (an intent of a dead run read as free), or loses a job, or sends a
    held-back one twice (the first run's queued chunks, taken by the new workers, and the
    rerun's)."""
    n, bad = 400, sandbox.seeded[1][1]
    quarantine, runs = _keys("qr")
    revoked(sandbox, bad, True)
    workers.start()
    workers.start()
    jobs, out = tmp_path / "jobs.jsonl", tmp_path / "out.jsonl"
    keys = write_jobs(jobs, sandbox, "qr", n)
    creds = {f"qr-{i}": sandbox.seeded[i % 4][1] for i in range(n)}
    run = driver(redis_server.url, jobs, out, "qr")
    try:
        with redis_server.client() as raw:
            wait_for(
                "the quarantine on Redis and two chunks written",
                lambda: bool(raw.hexists(quarantine, bad)) and written(out) >= 2 * CHUNK,
            )
            for proc in [*workers.procs, run]:  # everything dies, mid-call
                _kill(proc)
            assert written(out) < n, "the run finished before the kill"
            wait_for("the sandbox done with the calls in flight", lambda: _in_flight(sandbox) == 0)
            before = executed(sandbox, "qr")
            # Every holder is dead, but not yet lapsed: the quarantine is still there.
            assert raw.hexists(quarantine, bad) and raw.zcard(runs) >= 1
            wait_for(
                "every dead holder's entry lapsed",
                lambda: not raw.zrangebyscore(runs, _redis_ms(raw), "+inf"),
                LAPSE,
            )
            assert raw.hexists(quarantine, bad)  # nothing removed it: the next run's join will
    finally:
        if run.poll() is None:
            run.kill()
        run.communicate()
    revoked(sandbox, bad, False)  # the user reconnected
    workers.start()
    workers.start()
    code, err = finish(driver(redis_server.url, jobs, out, "qr"))
    assert "not sent: their credential was refused" not in err, err
    per_key, torn = _outcomes(out)
    assert set(per_key) == keys and torn <= 1
    done = executed(sandbox, "qr")
    assert max(done.values()) == 1, [k for k, c in done.items() if c > 1][:10]
    unknown = set()
    for key, rows in per_key.items():
        *earlier, final = rows
        # One outcome per job: any earlier line says the server never acted on it.
        assert all(_never_acted_on(r) for r in earlier), rows
        if final["ok"]:
            assert done[key] == 1, rows
        else:
            assert final["error"]["type"] == "OutcomeUnknownError", rows
            assert done[key] == before[key], rows  # in flight at the kill: never sent again
            unknown.add(key)
    assert unknown, "nothing was in flight at the kill: nothing proved"
    held = {k for k, c in creds.items() if c == bad} - unknown
    assert held and all(done[k] == 1 for k in held)  # the held-back jobs: sent once each
    assert code == 1, err  # the outcome-unknown jobs
