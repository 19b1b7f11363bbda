"""Workers never outnumber the jobs that can be in flight (issue 22, item 6).

``execute_many(5 jobs, concurrency=100_000)`` started 300,000 worker tasks (4.7 s, 316 MB), and
``bulk --concurrency 100000000`` was killed by the OOM killer: one task per unit of
``concurrency``, whatever the number of jobs. Counted here by the tasks alive on the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from alloy_async.models import ExecuteJob
from alloy_async.testing import FakeAlloy


def _job(user: str, cred: str, i: int) -> ExecuteJob:
    return ExecuteJob(
        "slack", "chat_postMessage", cred, user, {"channel": "C", "text": f"m{i}"}, key=f"k{i}"
    )


@pytest.mark.virtual_time
async def test_five_jobs_at_a_huge_concurrency_start_at_most_five_workers() -> None:
    """Catches: one worker task per unit of ``concurrency`` (100,000 tasks for 5 jobs)."""
    fake = FakeAlloy(latency=0.01)
    user = fake.add_user("a@example.com")
    cred = fake.add_credential(user, "slack")
    peak = 0
    async with fake.client() as alloy:
        before = len(asyncio.all_tasks())
        run = alloy.actions.execute_many(
            [_job(user, cred, i) for i in range(5)], concurrency=100_000
        )
        async with run:
            async for _ in run:
                peak = max(peak, len(asyncio.all_tasks()) - before)
    assert len(fake.executions) == 5
    # five workers at most, the reader, and the run's own helpers: not 100,000
    assert peak <= 5 + 4, peak


@pytest.mark.virtual_time
async def test_a_slow_trickle_of_jobs_grows_the_workers_only_as_jobs_arrive() -> None:
    """Jobs arriving one at a time while each call takes long: the workers grow with the jobs
    in flight, up to ``concurrency``, and every job still starts at once (all 8 in flight
    together). Catches: a lazy start that leaves a queued job without a worker."""
    fake = FakeAlloy(latency=0.2)
    user = fake.add_user("a@example.com")
    cred = fake.add_credential(user, "slack")
    arrived = asyncio.Event()

    async def jobs() -> AsyncIterator[ExecuteJob]:
        for i in range(8):
            yield _job(user, cred, i)
            await asyncio.sleep(0)  # one job at a time: the reader yields between them
        arrived.set()

    async with fake.client() as alloy:
        run = alloy.actions.execute_many(jobs(), concurrency=1000)
        async with run:
            outcomes = [o async for o in run]
    assert arrived.is_set() and all(o.ok for o in outcomes) and len(outcomes) == 8
    assert fake.peak_in_flight == 8  # the server's record: none waited for a worker
