"""The fair scheduler on its own: plain code, no event loop (issue 11 item 2)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable

import pytest

from alloy_async.engine import InProcessCoordinator, execute_many
from alloy_async.engine.scheduler import USER_FULL, FairScheduler, Slot
from alloy_async.errors import InvalidRequestError
from alloy_async.models import ExecuteJob


def slot(i: int, user: str, key: Hashable = "k") -> Slot:
    return Slot(i, f"job-{i}", None, (key,), "scope", user)


def test_round_robin_gives_each_user_one_turn_per_round() -> None:
    sched = FairScheduler()
    for i in range(50):
        sched.add(slot(i, "heavy"))
    for i in range(50, 53):
        sched.add(slot(i, f"light-{i}"))
    picked = [sched.pick(lambda s: None) for _ in range(8)]
    users = [s.user for s in picked if s is not None]
    # the three light users are all served within the first two rounds
    assert {"light-50", "light-51", "light-52"} <= set(users[:4])
    assert users.count("heavy") <= 5


def test_a_full_user_leaves_the_rotation_until_unblocked() -> None:
    sched = FairScheduler()
    for i in range(3):
        sched.add(slot(i, "a"))
    sched.add(slot(3, "b"))
    full = {"a"}

    def try_start(s: Slot) -> Hashable | None:
        return USER_FULL if s.user in full else None

    first = sched.pick(try_start)
    assert first is not None and first.user == "b"
    assert sched.pick(try_start) is None  # "a" is out of the rotation: nobody spins on it
    full.clear()
    assert sched.pick(try_start) is None  # still out until its cap has room again
    sched.unblock_user("a")
    got = sched.pick(try_start)
    assert got is not None and got.index == 0  # its own order is kept


def test_a_parked_job_waits_on_its_key_and_nobody_queues_behind_it() -> None:
    sched = FairScheduler()
    sched.add(slot(0, "a", key="slack"))
    sched.add(slot(1, "b", key="hubspot"))
    busy = {"slack"}

    def try_start(s: Slot) -> Hashable | None:
        return s.keys[0] if s.keys[0] in busy else None

    first = sched.pick(try_start)
    assert first is not None and first.index == 1  # "a" parked on slack, "b" went ahead
    assert sched.waiting and sched.pick(try_start) is None
    busy.clear()
    assert sched.unpark("slack")
    again = sched.pick(try_start)
    assert again is not None and again.index == 0


def test_decided_jobs_come_first_and_take_no_slot() -> None:
    sched = FairScheduler()
    sched.add(slot(0, "a"))
    decided = slot(1, "a")
    sched.add_decided(decided)
    calls: Counter[int] = Counter()

    def try_start(s: Slot) -> Hashable | None:
        calls[s.index] += 1
        return None

    assert sched.pick(try_start) is decided
    assert calls == {}


def test_a_coordinator_excludes_the_limits_it_bundles() -> None:
    coordinator = InProcessCoordinator.build(concurrency=4, per_user=1)

    async def execute(job: ExecuteJob, stats: object) -> None:
        return None

    with pytest.raises(InvalidRequestError) as info:
        execute_many(execute, [], coordinator=coordinator, per_user=2)
    assert info.value.field == "per_user"
