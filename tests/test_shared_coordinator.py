"""Runs that share one ``RedisCoordinator`` share its caps and its rate (issue 22, item 1).

``alloy-async worker`` runs two chunks at once on one coordinator, and an application may start
several ``execute_many`` runs on one; each run used to number its lease and permit members from
0 on its own, the members of two runs collided on Redis, and the caps and the rate were passed.
Judged by the server's own record (the sandbox's ``/_sandbox/stats`` and executions, over real
HTTP), on a real ``redis-server``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from bounds import max_in_window
from redis_server import RedisServer, running_redis

from alloy_async import AlloyClient
from alloy_async.distributed import RedisCoordinator
from alloy_async.distributed._limits import RedisRate
from alloy_async.distributed._redis import Shared
from alloy_async.errors import InvalidRequestError
from alloy_async.models import ExecuteJob
from alloy_async.sandbox import SandboxServer
from alloy_async.testing import FakeAlloy


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as server:
        yield server


def _users(fake: FakeAlloy, n: int) -> list[tuple[str, str]]:
    pairs = []
    for i in range(n):
        user = fake.add_user(f"u{i}@example.com")
        pairs.append((user, fake.add_credential(user, "slack")))
    return pairs


def _jobs(pairs: list[tuple[str, str]], n: int, tag: str) -> list[ExecuteJob]:
    return [
        ExecuteJob(
            "slack",
            "chat_postMessage",
            pairs[i % len(pairs)][1],
            pairs[i % len(pairs)][0],
            {"channel": "C", "text": f"{tag}-{i}"},
            key=f"{tag}-{i}",
        )
        for i in range(n)
    ]


async def _runs_on_one_coordinator(
    redis: RedisServer, fake: FakeAlloy, runs: int, n: int, **limits: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``runs`` execute_many runs at once on one coordinator, each with its own ``n`` jobs,
    against the sandbox over HTTP; the sandbox's stats and executions."""
    pairs = _users(fake, 4)
    async with (
        SandboxServer(fake) as server,
        aiohttp.ClientSession() as http,
        AlloyClient(fake.api_key, base_url=server.url) as alloy,
        RedisCoordinator(redis.url, namespace="shared") as coordinator,
    ):

        async def run(tag: str) -> int:
            bulk = alloy.actions.execute_many(
                _jobs(pairs, n, tag), concurrency=32, coordinator=coordinator, **limits
            )
            async with bulk:
                return sum([o.ok async for o in bulk])

        succeeded = await asyncio.gather(*(run(f"r{i}") for i in range(runs)))
        assert succeeded == [n] * runs

        async def sandbox(what: str) -> Any:
            async with http.get(f"{server.url}/_sandbox/{what}") as resp:
                assert resp.status == 200
                return await resp.json()

        return await sandbox("stats"), await sandbox("executions")


async def test_two_runs_on_one_coordinator_share_its_per_user_cap(
    redis_server: RedisServer,
) -> None:
    """Two runs, one coordinator, ``per_user=2``, 4 users, 200 ms calls: the server's peak
    per user is 2 (it was 4). Catches: lease members numbered per run (they collide on Redis,
    and the lease script grants a colliding member past the cap)."""
    fake = FakeAlloy(latency=0.2)
    stats, executions = await _runs_on_one_coordinator(redis_server, fake, 2, 40, per_user=2)
    assert stats["peak_in_flight_per_user"] == 2  # reached, never passed
    assert len(executions) == 80


@pytest.mark.parametrize("runs", [2, 4])
async def test_runs_on_one_coordinator_share_its_rate(redis_server: RedisServer, runs: int) -> None:
    """``rate=50`` shared by 2 and 4 runs on one coordinator: at most rate + a burst of
    delivery jitter in any second of the server's clock (it was 57 and 61), and the run takes
    as long as the budget says. Catches, end to end: permit members numbered per run (a
    colliding member replaces another run's permit in the window); with 4 runs most times,
    with 2 seldom: the step-by-step test below catches it every time."""
    rate, burst = 50.0, 5  # burst: ceil(rate / 10), the budget's default
    fake = FakeAlloy(latency=0.005)
    _, executions = await _runs_on_one_coordinator(
        redis_server, fake, runs, 200 // runs, rate=rate, per_user=32
    )
    times = sorted(e["at"] for e in executions)
    peak = max_in_window(times, 1.0)
    assert peak <= rate + burst, peak
    # The whole run, too: n permits take at least (n - burst) / rate seconds; every permit
    # lost to a collision shortens it (a surer sign than one second's peak). One burst more
    # of slack for delivery jitter at either end.
    span, least = times[-1] - times[0], (len(times) - 2 * burst) / rate
    assert span >= least, f"{len(times)} executions in {span:.2f} s, at least {least:.2f} s"


async def test_runs_on_one_coordinator_share_its_burst(redis_server: RedisServer) -> None:
    """``rate=4, burst=8`` on a RedisCoordinator, two runs of 5 jobs: 8 calls at once, the
    other 2 only when the 2 s window (``burst / rate``) has passed, by the server's clock.
    Catches: ``burst=`` refused with a coordinator (as before), dropped on the way to its
    budget (the default burst at 4/s is 1: 4 or 5 calls in the first second), or a budget per
    run (10 at once)."""
    fake = FakeAlloy(latency=0.005)
    _, executions = await _runs_on_one_coordinator(
        redis_server, fake, 2, 5, rate=4.0, burst=8, per_user=32
    )
    times = sorted(e["at"] for e in executions)
    assert len(times) == 10
    first_second = [t for t in times if t - times[0] < 1.0]
    assert len(first_second) == 8, times
    assert times[8] - times[0] >= 1.5, times  # the window is 2 s (a little jitter allowed)


async def test_a_workers_chunk_takes_the_burst_its_driver_sends(redis_server: RedisServer) -> None:
    """The limits ``bulk --redis`` sends with each chunk carry ``--burst``; the worker's
    runner hands it to the namespace's budget: ``rate=4, burst=8``, 10 jobs, 8 at once and
    the rest after the 2 s window (FakeAlloy's clock). Catches: the runner dropping ``burst``
    from the chunk's limits (1 at once at 4/s), or ``run_chunk`` not passing it on."""
    from alloy_async.distributed._runner import ChunkRunner

    fake = FakeAlloy(latency=0.005)
    jobs = [
        {
            "connectorId": "slack",
            "actionId": "chat_postMessage",
            "credentialId": credential,
            "userId": user,
            "key": f"chunk-{i}",
            "requestBody": {"channel": "C", "text": str(i)},
        }
        for i, (user, credential) in enumerate(_users(fake, 10))
    ]
    runner = ChunkRunner(redis_server.url, fake.client, concurrency=16)
    try:
        rows = await runner.run("chunks", jobs, {"rate": 4, "burst": 8})
    finally:
        await runner.aclose()
    assert [row["ok"] for row in rows] == [True] * 10, rows
    times = sorted(e.at for e in fake.executions)
    assert len([t for t in times if t - times[0] < 1.0]) == 8, times
    assert times[8] - times[0] >= 1.5, times


# -- the same, step by step: no timing involved ------------------------------------------------


async def test_configure_refuses_a_burst_without_a_rate(redis_server: RedisServer) -> None:
    """``RedisCoordinator.configure(rate=None, burst=5)`` (called by hand): an error naming
    ``burst``; with a rate the run's budget has it. Catches: the burst dropped because no
    budget is built (the caller believes the namespace is limited)."""
    async with RedisCoordinator(redis_server.url, namespace="burst") as coordinator:
        with pytest.raises(InvalidRequestError) as info:
            coordinator.configure(
                concurrency=2, per_user=None, per_connector=None, rate=None, burst=5
            )
        assert info.value.field == "burst"
        run = coordinator.configure(
            concurrency=2, per_user=None, per_connector=None, rate=10.0, burst=5
        )
        assert run.rate is not None and run.rate.burst == 5


async def test_leases_of_two_runs_on_one_coordinator_count_against_one_cap(
    redis_server: RedisServer,
) -> None:
    """Run A leases user u, run B leases u, run A asks again: with ``per_user=2`` the third
    lease is refused. Catches: lease members numbered per run (B's first member equals A's,
    the script reads it as A's retried call and grants it without counting it)."""
    async with RedisCoordinator(redis_server.url, namespace="leases") as coordinator:
        a, b = (
            coordinator.configure(concurrency=8, per_user=2, per_connector=None, rate=None)
            for _ in range(2)
        )
        keys = a.slots.keys_for({"user": "u"})
        assert keys == b.slots.keys_for({"user": "u"}) == (("user", "u"),)
        assert await a.slots.lease(keys) is None
        assert await b.slots.lease(keys) is None
        assert await a.slots.lease(keys) == ("user", "u")  # full: 2 leases held, not 1
        b.slots.unlease(keys)
        await coordinator.flush()
        assert await a.slots.lease(keys) is None  # B's release freed B's lease, not A's
        a.slots.unlease(keys)
        a.slots.unlease(keys)


async def test_permits_of_two_runs_on_one_connection_count_against_one_budget(
    redis_server: RedisServer,
) -> None:
    """Two budgets on one connection (two runs of one coordinator), ``rate=1`` with a burst of
    4 (a 4 s window): two permits for each use the burst, so a fifth waits for the window.
    Catches: permit members numbered per run (run B's permits replace run A's in the window,
    and the fifth is granted at once)."""
    shared = Shared(redis_server.url, op_timeout=5.0, unavailable_timeout=5.0)
    try:
        budgets = [RedisRate(shared, "alloy:{permits}:rate", 1.0, burst=4) for _ in range(2)]
        for _ in range(2):
            for budget in budgets:
                await budget.acquire()  # within the burst: at once
        waiting = asyncio.create_task(budgets[0].acquire())
        done, _ = await asyncio.wait({waiting}, timeout=1.0)
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        assert not done, "a fifth permit within the 4 s window was granted"
    finally:
        await shared.aclose()
