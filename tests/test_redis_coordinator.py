"""``RedisCoordinator`` against a real ``redis-server``: coordinators on one namespace share
the caps and the journal (here in one process; tests/test_scale_out.py runs separate ones)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_server import RedisServer, running_redis

from alloy_async.distributed import RedisCoordinator
from alloy_async.models import ExecuteJob
from alloy_async.testing import FakeAlloy


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as server:
        yield server


def _jobs(cred: str, user: str, n: int, tag: str = "") -> list[ExecuteJob]:
    return [
        ExecuteJob(
            "slack", "chat_postMessage", cred, user, {"channel": "C", "text": f"m{i}"},
            key=f"{tag}k{i}",
        )
        for i in range(n)
    ]  # fmt: skip


async def test_two_coordinators_share_the_per_user_cap_and_never_send_a_key_twice(
    redis_server: RedisServer,
) -> None:
    fake = FakeAlloy(latency=0.02)
    user = fake.add_user("a@example.com")
    cred = fake.add_credential(user, "slack")
    jobs = _jobs(cred, user, 60)
    skipped: list[str] = []
    async with (
        fake.client() as alloy,
        RedisCoordinator(redis_server.url, namespace="t1") as one,
        RedisCoordinator(redis_server.url, namespace="t1") as two,
    ):

        async def run(coord: RedisCoordinator) -> list[str]:
            bulk = alloy.actions.execute_many(
                jobs, concurrency=8, per_user=3, coordinator=coord,
                on_skip=lambda job, why: skipped.append(why),
            )  # fmt: skip
            async with bulk:
                return [o.job.key async for o in bulk if o.ok]

        a, b = await asyncio.gather(run(one), run(two))
    sent = Counter(e.request_body["text"] for e in fake.executions)
    assert max(sent.values()) == 1 and len(sent) == 60
    assert sorted(a + b) == sorted(j.key for j in jobs)
    assert fake.peak_by_user[user] == 3  # not 3 per coordinator: the cap is the namespace's
    assert len(skipped) == 60 and set(skipped) <= {"done", "claimed"}


async def test_a_rerun_on_a_finished_namespace_sends_nothing(redis_server: RedisServer) -> None:
    fake = FakeAlloy()
    user = fake.add_user("a@example.com")
    cred = fake.add_credential(user, "slack")
    jobs = _jobs(cred, user, 30)
    async with fake.client() as alloy:
        for _ in range(2):
            async with RedisCoordinator(redis_server.url, namespace="t2") as coord:
                bulk = alloy.actions.execute_many(jobs, rate=1000, coordinator=coord)
                async with bulk:
                    _ = [o async for o in bulk]
            report = bulk.report
    assert len(fake.executions) == 30
    assert report.skipped == 30 and report.succeeded == 0
