"""``RedisCoordinator`` against a real ``redis-server``: coordinators on one namespace share
the caps and the journal (here in one process; tests/test_scale_out.py runs separate ones)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis_server import RedisServer, running_redis

from alloy_async.distributed import RedisCoordinator
from alloy_async.distributed._limits import RedisRate
from alloy_async.errors import CoordinatorError, InvalidRequestError
from alloy_async.models import ExecuteJob
from alloy_async.testing import FakeAlloy


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as server:
        yield server


def _fake(latency: float = 0.0) -> tuple[FakeAlloy, str, str]:
    """A simulator with one user holding one Slack credential."""
    fake = FakeAlloy(latency=latency)
    user = fake.add_user("a@example.com")
    return fake, user, fake.add_credential(user, "slack")


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
    fake, user, cred = _fake(latency=0.02)
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
    fake, user, cred = _fake()
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


async def _until(predicate: Any, what: str, within: float = 10.0) -> None:
    """Wait for a condition another task or process makes true (bounded; no fixed sleep)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def _until_async(ask: Any, wanted: object, what: str, within: float = 10.0) -> None:
    """``_until`` for a value that must be awaited (a question to Redis): ``await ask()``
    until it equals ``wanted``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while (got := await ask()) != wanted:
        assert loop.time() < deadline, f"timed out waiting for {what} (last: {got!r})"
        await asyncio.sleep(0.01)


async def _subscribers(server: RedisServer, channel: str) -> int:
    """How many connections Redis itself counts as subscribed to ``channel``."""
    raw = aioredis.Redis.from_url(server.url)
    try:
        ((_, count),) = await raw.pubsub_numsub(channel)
        return int(count)
    finally:
        await raw.aclose()


async def test_a_throttle_seen_by_one_coordinator_cools_the_scope_in_the_other(
    redis_server: RedisServer,
) -> None:
    """Catches: a listener that never subscribes to the throttle channel, or ignores it."""
    fake, user, cred = _fake()
    fake.fail("execute", 429, times=1, retry_after="30")
    channel = "alloy:{cool}:cool"  # the namespace's throttle channel
    async with (
        fake.client(max_retries=0) as alloy,
        RedisCoordinator(redis_server.url, namespace="cool") as one,
        RedisCoordinator(redis_server.url, namespace="cool") as two,
    ):
        await two.flush()  # connected (its listener task started)
        # Pub/sub keeps nothing for a late subscriber: publish only once Redis counts both
        # coordinators' listeners on the channel (a task that exists may not have subscribed).
        await _until_async(
            lambda: _subscribers(redis_server, channel), 2, "both listeners subscribed on Redis"
        )
        bulk = alloy.actions.execute_many(_jobs(cred, user, 1), coordinator=one, max_requeues=0)
        async with bulk:
            outcomes = [o async for o in bulk]
        assert type(outcomes[0].error).__name__ == "RateLimitError"
        await _until(lambda: two.cooldown.blocked_for("execute:slack") is not None, "the throttle")
        wait = two.cooldown.blocked_for("execute:slack")
        assert wait is not None and 20 < wait <= 30
        assert two.cooldown.blocked_for("execute:other") is None  # only that scope


async def test_redis_killed_and_restarted_mid_run_is_a_pause_and_nothing_runs_twice(
    redis_server: RedisServer,
) -> None:
    fake, user, cred = _fake(latency=0.01)
    jobs = _jobs(cred, user, 300)
    async with (
        fake.client() as alloy,
        RedisCoordinator(redis_server.url, namespace="restart", lease_ttl=30) as coord,
    ):
        bulk = alloy.actions.execute_many(jobs, concurrency=16, coordinator=coord)
        restarted = False
        ok = 0
        async with bulk:
            async for outcome in bulk:
                ok += outcome.ok
                if ok == 60 and not restarted:
                    restarted = True
                    await asyncio.to_thread(redis_server.kill)  # SIGKILL: no clean shutdown
                    await _until(lambda: coord.statistics().retries > 0, "a retried call")
                    await asyncio.to_thread(redis_server.start)
    assert restarted and bulk.report.succeeded == 300
    sent = Counter(e.request_body["text"] for e in fake.executions)
    assert len(sent) == 300 and max(sent.values()) == 1


async def test_redis_down_past_the_outage_limit_stops_the_run_and_a_rerun_finishes_it(
    redis_server: RedisServer,
) -> None:
    fake, user, cred = _fake(latency=0.01)
    jobs = _jobs(cred, user, 200)
    ns = "outage"
    async with fake.client() as alloy:
        async with RedisCoordinator(
            redis_server.url, namespace=ns, lease_ttl=1, unavailable_timeout=0.5
        ) as coord:
            bulk = alloy.actions.execute_many(jobs, concurrency=8, coordinator=coord)
            errors = []
            first: dict[str, bool] = {}
            async with bulk:
                async for outcome in bulk:
                    if len(fake.executions) >= 50 and redis_server.running:
                        await asyncio.to_thread(redis_server.kill)
                    if outcome.error is not None:
                        errors.append(outcome.error)
                    first[outcome.job.key] = outcome.ok
            report = bulk.report
        assert report.stopped_early and "coordinator failed" in (report.stop_reason or "")
        assert errors and any(isinstance(e, CoordinatorError) for e in errors)
        assert "127.0.0.1" in str(next(e for e in errors if isinstance(e, CoordinatorError)))
        assert len(fake.executions) < 200
        await asyncio.to_thread(redis_server.start)
        # The dead run's key lapses after lease_ttl: its leftover intents then read "dead".
        await _until(lambda: not _run_keys(redis_server, ns), "the first run's key to lapse")
        async with RedisCoordinator(redis_server.url, namespace=ns, lease_ttl=1) as coord:
            bulk = alloy.actions.execute_many(jobs, concurrency=8, coordinator=coord)
            async with bulk:
                second = {o.job.key: o async for o in bulk}
    sent = Counter(e.request_body["text"] for e in fake.executions)
    assert max(sent.values()) == 1, "a job was sent twice"
    done_first = {k for k, ok in first.items() if ok}
    # Every job: done in the first run (skipped by the second), or given an outcome by the
    # second: run now, or outcome-unknown (its intent was written, its outcome was not:
    # Redis died first). That is what an outage past the limit costs: a job done in the
    # first run can be reported again as outcome-unknown; it is never sent again.
    assert done_first | set(second) == {j.key for j in jobs}
    for key in done_first & set(second):
        assert type(second[key].error).__name__ == "OutcomeUnknownError"
    for key, outcome in second.items():
        assert outcome.ok or type(outcome.error).__name__ == "OutcomeUnknownError", outcome
        if outcome.ok:
            assert sent[f"m{key[1:]}"] == 1


def _run_keys(server: RedisServer, ns: str) -> list[bytes]:
    client = server.client()
    try:
        return list(client.scan_iter(match=f"alloy:{{{ns}}}:run:*"))
    finally:
        client.close()


def test_bad_arguments_are_refused_naming_the_field() -> None:
    with pytest.raises(InvalidRequestError) as info:
        RedisCoordinator("http://127.0.0.1:1", namespace="x")
    assert info.value.field == "url"
    for bad in ("", "has space", "x" * 101, "{brace}"):
        with pytest.raises(InvalidRequestError) as info:
            RedisCoordinator("redis://127.0.0.1:1/0", namespace=bad)
        assert info.value.field == "namespace"
    with pytest.raises(InvalidRequestError) as info:
        RedisCoordinator("redis://127.0.0.1:1/0", namespace="x", lease_ttl=0)
    assert info.value.field == "lease_ttl"


@pytest.mark.parametrize(
    "url",
    [
        "redis://user:s3cret-pw@127.0.0.1:1/0",
        "redis://:s3cret-pw@127.0.0.1:1/0",
        "redis://127.0.0.1:1/0?password=s3cret-pw",  # redis-py reads this form too
        "redis://127.0.0.1:1/0?db=1&PASSWORD=s3cret-pw",
    ],
)
def test_the_password_of_the_url_is_never_shown(url: str) -> None:
    coord = RedisCoordinator(url, namespace="x")
    assert "s3cret-pw" not in repr(coord) and "127.0.0.1:1" in repr(coord)


async def test_a_refused_password_is_one_clear_error_at_once(redis_server: RedisServer) -> None:
    """A wrong password is not an outage: no 30 s of retries, and the message says so."""
    with redis_server.client() as raw:
        raw.config_set("requirepass", "right-pw")
    try:
        fake, user, cred = _fake()
        url = redis_server.url.replace("redis://", "redis://:wrong-pw@")
        async with fake.client() as alloy, RedisCoordinator(url, namespace="auth") as coord:
            bulk = alloy.actions.execute_many(_jobs(cred, user, 2), coordinator=coord)
            started = asyncio.get_running_loop().time()
            with pytest.raises(CoordinatorError, match="refused") as info:
                async with bulk:
                    _ = [o async for o in bulk]
            assert asyncio.get_running_loop().time() - started < 10  # not the 30 s outage
        assert "wrong-pw" not in str(info.value) and fake.executions == []
    finally:
        with redis_server.client(password="right-pw") as raw:
            raw.config_set("requirepass", "")


async def test_an_unreachable_redis_is_a_coordinator_error_without_the_password() -> None:
    fake, user, cred = _fake()
    async with (
        fake.client() as alloy,
        RedisCoordinator(
            "redis://user:s3cret-pw@127.0.0.1:1/0", namespace="x", unavailable_timeout=0.2
        ) as coord,
    ):
        bulk = alloy.actions.execute_many(_jobs(cred, user, 3), coordinator=coord)
        with pytest.raises(CoordinatorError) as info:
            async with bulk:
                _ = [o async for o in bulk]
    assert "s3cret-pw" not in str(info.value) and "127.0.0.1:1" in str(info.value)
    assert fake.executions == []


async def test_ordered_outcomes_skip_jobs_another_coordinator_has(
    redis_server: RedisServer,
) -> None:
    fake, user, cred = _fake(latency=0.005)
    jobs = _jobs(cred, user, 40)
    async with fake.client() as alloy:
        async with RedisCoordinator(redis_server.url, namespace="ord") as coord:
            first = alloy.actions.execute_many(jobs[::2], coordinator=coord)
            async with first:
                _ = [o async for o in first]
        async with RedisCoordinator(redis_server.url, namespace="ord") as coord:
            bulk = alloy.actions.execute_many(jobs, coordinator=coord, ordered=True)
            async with bulk:
                indexes = [o.index async for o in bulk]
    assert indexes == list(range(1, 40, 2))  # in order, the done ones skipped, no hang
    assert len(fake.executions) == 40


async def test_leases_of_calls_longer_than_the_lease_ttl_are_renewed(
    redis_server: RedisServer,
) -> None:
    """Catches: leases not renewed while their calls run (the other coordinator takes the slot).

    Calls three times longer than ``lease_ttl``: a live holder's renewals keep its slot, so
    two coordinators never hold more than ``per_user`` between them. ``lease_ttl`` is 1 s, so
    that a loaded machine's scheduling pauses (renewals come every third of it) do not let a
    live holder's lease lapse."""
    lease_ttl = 1.0
    fake, user, cred = _fake(latency=3 * lease_ttl)
    async with (
        fake.client() as alloy,
        RedisCoordinator(redis_server.url, namespace="renew", lease_ttl=lease_ttl) as one,
        RedisCoordinator(redis_server.url, namespace="renew", lease_ttl=lease_ttl) as two,
    ):

        async def run(coord: RedisCoordinator, tag: str) -> int:
            bulk = alloy.actions.execute_many(
                _jobs(cred, user, 1, tag), per_user=1, coordinator=coord
            )
            async with bulk:
                return sum([o.ok async for o in bulk])

        assert await asyncio.gather(run(one, "a"), run(two, "b")) == [1, 1]
    assert fake.peak_by_user[user] == 1


async def test_a_forget_removes_only_this_runs_own_intent(redis_server: RedisServer) -> None:
    """A forget that follows a claim cancelled in flight (which may never have run) must not
    remove the record another run holds: that would let the job be sent twice."""
    async with RedisCoordinator(redis_server.url, namespace="forget") as coord:
        mine = coord.configure(concurrency=1, per_user=None, per_connector=None, rate=None)
        other = coord.configure(concurrency=1, per_user=None, per_connector=None, rate=None)
        await mine.journal.open("run-a")
        await other.journal.open("run-b")
        assert await mine.journal.claim("k") is None
        other.journal.forget("k")  # run-b never held "k"
        await coord.flush()
        assert await other.journal.claim("k") == "claimed"  # still run-a's
        mine.journal.forget("k")
        await coord.flush()
        assert await other.journal.claim("k") is None  # now free, and run-b's
        await mine.journal.aclose()
        await other.journal.aclose()


async def test_two_runs_on_one_coordinator_hold_distinct_leases_and_permits(
    redis_server: RedisServer,
) -> None:
    """Catches: lease and permit ids numbered per run, so two runs on one coordinator (a
    worker's chunks at once) reuse each other's: a second holder of a cap of 1, a permit that
    overwrites another in the rate window."""
    async with RedisCoordinator(redis_server.url, namespace="runs") as coord:
        a, b = (
            coord.configure(concurrency=2, per_user=1, per_connector=None, rate=None)
            for _ in range(2)
        )
        user = (("user", "u1"),)
        assert await a.slots.lease(user) is None
        assert await b.slots.lease(user) == user[0]  # full: a holds the user's one slot
        a.slots.unlease(user)
        await coord.flush()
        assert await b.slots.lease(user) is None
        # Two runs' budgets on one window (10 permits in 10 s: both granted at once); the
        # window on Redis must count two permits, not one overwritten by the other.
        key = "alloy:{runs}:rate"
        for _ in range(2):
            await RedisRate(coord._shared, key, 1.0, burst=10).acquire()
    with redis_server.client() as raw:
        assert raw.zcard(key) == 2
