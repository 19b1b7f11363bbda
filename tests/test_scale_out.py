"""Issue 12: processes on one namespace share one budget, one set of caps and one journal.

Plain processes (tests/fixtures/plain_worker.py: no taskiq, as an arq or Celery task would
use ``RedisCoordinator``) against the sandbox in a subprocess and a real ``redis-server``;
judged by the server's own record (``/_sandbox/executions``, ``/_sandbox/stats``).
"""

from __future__ import annotations

import json
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
from bounds import max_in_window
from redis_server import RedisServer, running_redis
from test_cli_bulk import ENV, Sandbox, running_sandbox

WORKER = Path(__file__).parent / "fixtures" / "plain_worker.py"


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as server:
        yield server


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with running_sandbox(latency="200ms", users=4) as box:
        yield box


def _get(url: str, path: str) -> Any:
    with urlopen(f"{url}{path}", timeout=30) as resp:
        return json.loads(resp.read())


def _write_jobs(box: Sandbox, path: Path, n: int, tag: str) -> list[str]:
    _, seeded = box
    keys = []
    with path.open("w") as f:
        for i in range(n):
            user, cred = seeded[i % len(seeded)]
            key = f"{tag}-{i}"
            keys.append(key)
            job = {
                "connectorId": "sendgrid", "actionId": "sendEmail", "credentialId": cred,
                "userId": user, "key": key,
                "requestBody": {"to": f"c{i}@example.com", "subject": key},
            }  # fmt: skip
            f.write(json.dumps(job) + "\n")
    return keys


def _start(
    redis: RedisServer, box: Sandbox, jobs: Path, ns: str, rate: float, per_user: int,
    out: Path, lease_ttl: float = 10.0, start_key: str | None = None,
) -> subprocess.Popen[bytes]:  # fmt: skip
    """One plain_worker.py; with ``start_key`` it waits for :func:`_go` before sending."""
    args = [redis.url, box.url, str(jobs), ns, str(rate), str(per_user), str(lease_ttl)]
    if start_key is not None:
        args.append(start_key)
    with out.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, str(WORKER), *args],
            stdout=sink,
            stderr=subprocess.DEVNULL,
            env=ENV,
        )


def _rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    for raw in path.read_bytes().splitlines() if path.exists() else []:
        try:
            rows.append(json.loads(raw))
        except json.JSONDecodeError:  # a line cut by SIGKILL
            continue
    return rows


def _executed(url: str, tag: str) -> list[dict[str, Any]]:
    done = _get(url, "/_sandbox/executions")
    return [e for e in done if str(e["request_body"]["subject"]).startswith(f"{tag}-")]


def _go(redis: RedisServer, start_key: str, procs: list[subprocess.Popen[bytes]]) -> None:
    """The start barrier: once every process has said it is ready (imports done, client and
    coordinator open), let them all send at once, so their runs overlap whatever the
    start-up of each took."""
    with redis.client() as raw:
        deadline = time.monotonic() + 120  # generous: Python start-ups on a loaded machine
        while int(raw.get(f"{start_key}:ready") or 0) < len(procs):
            assert all(p.poll() is None for p in procs), "a worker exited before the start"
            assert time.monotonic() < deadline, "the workers never got ready"
            time.sleep(0.01)  # polling a counter other processes write: no event to wait on
        raw.rpush(f"{start_key}:go", *["go"] * len(procs))


def _wait(procs: list[subprocess.Popen[bytes]], timeout: float = 120) -> None:
    for proc in procs:
        try:
            assert proc.wait(timeout=timeout) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _race(
    redis: RedisServer,
    box: Sandbox,
    tmp: Path,
    tag: str,
    rate: float,
    per_user: int,
    n: int = 240,
    *,
    split: bool = False,
) -> tuple[list[str], list[dict[str, Any]]]:
    """Three processes on the same ``n`` jobs (``split``: a third each), started together
    (a barrier on Redis); returns the keys and the server's record."""
    jobs = tmp / f"{tag}.jsonl"
    keys = _write_jobs(box, jobs, n, tag)
    files = [jobs] * 3
    if split:
        lines = jobs.read_text().splitlines(keepends=True)
        files = [tmp / f"{tag}-{i}.jsonl" for i in range(3)]
        for i, path in enumerate(files):
            path.write_text("".join(lines[i::3]))
    outs = [tmp / f"{tag}-out{i}.jsonl" for i in range(3)]
    start_key = f"start:{tag}"
    procs = [
        _start(redis, box, path, tag, rate, per_user, out, start_key=start_key)
        for path, out in zip(files, outs, strict=True)
    ]
    try:
        _go(redis, start_key, procs)
    except BaseException:
        for proc in procs:
            proc.kill()
            proc.wait()
        raise
    _wait(procs)
    executed = _executed(box.url, tag)
    per_key = Counter(e["request_body"]["subject"] for e in executed)
    assert set(per_key) == set(keys) and max(per_key.values()) == 1
    # One outcome per job across the three processes (the others skipped it).
    rows = [r for out in outs for r in _rows(out)]
    assert sorted(r["key"] for r in rows) == sorted(keys)
    assert all(r["ok"] for r in rows)
    return keys, executed


def test_three_processes_share_one_rate(redis_server: RedisServer, tmp_path: Path) -> None:
    """Catches: each process keeping its own rate budget (3 x rate in all), not the shared one.

    Three processes, a third of the jobs each (32 calls in flight each, 20 ms latency: each
    alone could send 1,600/s), started together: the server never executes more than
    ``rate`` in any second, not 3 x rate, and the shared budget is used, not wasted."""
    rate = 80.0
    with running_sandbox(latency="20ms", users=4) as box:
        _, executed = _race(redis_server, box, tmp_path, "rate", rate, per_user=32, split=True)
    # By the server's clock: the shared window grants at most rate + burst (ceil(rate / 10))
    # permits in any second; requests reach the server a few milliseconds after their
    # permits, which may move one more burst into a window.
    burst = 8
    assert max_in_window([e["at"] for e in executed], 1.0) <= rate + 2 * burst
    assert max_in_window([e["at"] for e in executed], 1.0) >= rate - 2 * burst


def test_three_processes_share_one_per_user_cap(redis_server: RedisServer, tmp_path: Path) -> None:
    """Catches: each process keeping its own per-user cap (3 x per_user at once) instead of
    the shared one.

    With 200 ms calls and 4 users, three processes of 32 calls each, started together, would
    hold 24 calls per user; the shared cap holds them to 2 per user across all (the server's
    peak)."""
    with running_sandbox(latency="200ms", users=4) as box:
        _race(redis_server, box, tmp_path, "cap", rate=1000.0, per_user=2, n=160, split=True)
        stats = _get(box.url, "/_sandbox/stats")
    assert stats["peak_in_flight_per_user"] == 2  # reached, never passed, across all


def test_three_processes_racing_over_the_same_jobs_send_each_once(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """The same 240 jobs given to three processes at once: each job is executed once, and
    has one outcome, from whichever process claimed it."""
    with running_sandbox(latency="20ms", users=4) as box:
        _race(redis_server, box, tmp_path, "same", rate=1000.0, per_user=32)


def test_sigkill_of_one_process_then_a_rerun_sends_nothing_twice(
    redis_server: RedisServer, sandbox: Sandbox, tmp_path: Path
) -> None:
    """Two processes on the same jobs; one is SIGKILLed mid-run. The survivor never sends
    what the dead one had claimed; a rerun after its lease lapsed reports the dead one's
    in-flight jobs outcome-unknown and runs nothing twice."""
    jobs = tmp_path / "jobs.jsonl"
    keys = _write_jobs(sandbox, jobs, 400, "kill")
    out_a, out_b, out_c = (tmp_path / f"{n}.jsonl" for n in "abc")
    # per_user 16 (64 slots for 2 x 32 calls): the victim always has calls in flight.
    lease = 1.0
    a = _start(redis_server, sandbox, jobs, "kill", 200.0, 16, out_a, lease)
    b = _start(redis_server, sandbox, jobs, "kill", 200.0, 16, out_b, lease)
    deadline = time.monotonic() + 60
    while len(_rows(out_a)) < 60 and time.monotonic() < deadline and a.poll() is None:
        time.sleep(0.005)  # polling a file another process writes: no event to wait on
    a.send_signal(signal.SIGKILL)
    a.wait(timeout=30)
    _wait([b])
    # The rerun comes once the dead run's liveness has lapsed (its intents then read "dead").
    _wait([_start(redis_server, sandbox, jobs, "kill", 200.0, 16, out_c, lease)])
    per_key = Counter(e["request_body"]["subject"] for e in _executed(sandbox.url, "kill"))
    twice = sorted(k for k, n in per_key.items() if n > 1)
    assert not twice, f"executed twice on the server: {twice[:10]}"
    rows = _rows(out_a) + _rows(out_b) + _rows(out_c)
    seen = Counter(r["key"] for r in rows)
    assert set(seen) == set(keys), "a job has no outcome at all"
    unknown = {r["key"] for r in _rows(out_c) if r["error"] == "OutcomeUnknownError"}
    # A job with two lines: the killed process printed it, then died before journaling it;
    # the rerun reports it outcome-unknown. Never two successes, never a resend.
    for key, n in seen.items():
        assert n == 1 or (n == 2 and key in unknown), key
    for r in rows:
        if r["ok"]:
            assert per_key[r["key"]] == 1, r
    assert 0 < len(unknown) <= 32  # what was in flight in the killed process
