"""``execute_many(coordinator=...)``: runs that share a coordinator share its limits."""

from __future__ import annotations

import asyncio

import pytest

from alloy_async.engine import InProcessCoordinator
from alloy_async.models import ExecuteJob
from alloy_async.testing import FakeAlloy


@pytest.mark.virtual_time
async def test_two_runs_sharing_a_coordinator_share_its_per_user_cap() -> None:
    fake = FakeAlloy(latency=0.2)
    user = fake.add_user("a@example.com")
    cred = fake.add_credential(user, "slack")
    shared = InProcessCoordinator.build(concurrency=16, per_user=2)

    def jobs(tag: str) -> list[ExecuteJob]:
        return [
            ExecuteJob(
                "slack", "chat_postMessage", cred, user, {"channel": "C", "text": f"{tag}{i}"}
            )
            for i in range(20)
        ]

    async with fake.client() as alloy:

        async def run(tag: str) -> int:
            bulk = alloy.actions.execute_many(jobs(tag), concurrency=16, coordinator=shared)
            async with bulk:
                return len([o async for o in bulk if o.ok])

        done = await asyncio.gather(run("a"), run("b"))
    assert done == [20, 20]
    assert fake.peak_by_user[user] == 2  # not 2 per run: the cap is the coordinator's
