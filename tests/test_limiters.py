"""Limiters: concurrency caps (global and keyed), rate precision, AIMD per scope."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from alloy_async.limiters import AdaptiveLimiter, ConcurrencyLimiter, RateLimiter

pytestmark = pytest.mark.virtual_time


def _now() -> float:
    return asyncio.get_running_loop().time()


# -- ConcurrencyLimiter ------------------------------------------------------------------------


async def test_caps_never_exceeded_and_reached() -> None:
    limiter = ConcurrencyLimiter(10, per_key={"user": 2, "connector": 3})
    held = Counter[tuple[str, str]]()
    peaks = Counter[tuple[str, str]]()
    total = 0
    peak_total = 0

    async def job(i: int) -> None:
        nonlocal total, peak_total
        keys = {"user": f"u{i % 7}", "connector": f"c{i % 4}"}
        async with limiter.acquire(keys):
            total += 1
            peak_total = max(peak_total, total)
            for k in keys.items():
                held[k] += 1
                peaks[k] = max(peaks[k], held[k])
            await asyncio.sleep(0.01 * (1 + i % 3))
            for k in keys.items():
                held[k] -= 1
            total -= 1

    await asyncio.gather(*(job(i) for i in range(400)))
    assert peak_total == 10
    assert max(v for (kind, _), v in peaks.items() if kind == "user") == 2
    assert max(v for (kind, _), v in peaks.items() if kind == "connector") == 3
    stats = limiter.statistics()
    assert stats.peak == 10
    assert stats.peak_per_kind == {"user": 2, "connector": 3}
    assert stats.in_flight == 0 and stats.waiting == 0 and stats.tracked_keys == 0


async def test_saturated_key_does_not_block_other_keys() -> None:
    limiter = ConcurrencyLimiter(100, per_key={"user": 1})
    release = asyncio.Event()

    async def hog() -> None:
        async with limiter.acquire({"user": "big"}):
            await release.wait()

    hogs = [asyncio.create_task(hog()) for _ in range(50)]  # 1 holds, 49 wait on "big"
    await asyncio.sleep(0)
    assert limiter.statistics().waiting == 49
    started = _now()
    async with limiter.acquire({"user": "small"}):
        assert _now() == started  # admitted at once, not behind the 49 waiters
        assert limiter.statistics().held["user"] == {"big": 1, "small": 1}
    release.set()
    await asyncio.gather(*hogs)
    assert limiter.statistics().tracked_keys == 0


async def test_cancelled_waiter_passes_on_its_wakeup() -> None:
    limiter = ConcurrencyLimiter(1)
    order: list[str] = []
    gate = asyncio.Event()

    async def holder() -> None:
        async with limiter.acquire():
            await gate.wait()

    async def waiter(name: str) -> None:
        async with limiter.acquire():
            order.append(name)

    h = asyncio.create_task(holder())
    await asyncio.sleep(0)
    a = asyncio.create_task(waiter("a"))
    b = asyncio.create_task(waiter("b"))
    await asyncio.sleep(0)
    gate.set()
    await asyncio.sleep(0)  # holder releases: a is woken ...
    a.cancel()  # ... and cancelled before it runs: b must still get the slot
    await asyncio.gather(h, b)
    assert a.cancelled()
    assert order == ["b"]
    assert limiter.statistics().in_flight == 0


async def test_keyed_state_dropped_when_idle() -> None:
    limiter = ConcurrencyLimiter(64, per_key={"user": 1, "connector": 2})
    # 100k distinct users through the non-waiting path, 64 held at a time ...
    held: list[tuple[tuple[str, str], ...]] = []
    for i in range(100_000):
        keys = limiter.keys_for({"user": f"user-{i}", "connector": f"c{i % 1000}"})
        if len(held) == 64:
            limiter.release(held.pop(0))
        assert limiter.try_acquire(keys) is None
        held.append(keys)
    assert len(limiter._held) <= 128
    for keys in held:
        limiter.release(keys)

    # ... and 3,000 more through the waiting path (global and connector waits).
    async def one(i: int) -> None:
        async with limiter.acquire({"user": f"w-{i}", "connector": f"c{i % 10}"}):
            await asyncio.sleep(0.001)

    await asyncio.gather(*(one(i) for i in range(3_000)))
    assert limiter._held == {}
    assert limiter._waiters == {}
    assert limiter.statistics().tracked_keys == 0
    assert limiter.statistics().peak == 64
    assert limiter.statistics().peak_per_kind["connector"] == 2


def test_bad_caps_are_refused() -> None:
    with pytest.raises(ValueError, match="total"):
        ConcurrencyLimiter(0)
    with pytest.raises(ValueError, match="user"):
        ConcurrencyLimiter(1, per_key={"user": 0})


# -- RateLimiter --------------------------------------------------------------------------------


@pytest.mark.parametrize(("rate", "burst"), [(50.0, None), (100.0, 1), (7.5, 3), (0.5, 1)])
async def test_rate_precision_under_virtual_time(rate: float, burst: int | None) -> None:
    limiter = RateLimiter(rate, burst=burst)
    start = _now()
    stamps: list[float] = []

    async def worker() -> None:
        while _now() - start < 20:
            await limiter.acquire()
            stamps.append(_now() - start)

    await asyncio.gather(*(worker() for _ in range(8)))
    # Past the initial burst, the achieved rate over 10 s is the set rate (within 1 permit).
    b = limiter.burst
    steady = [t for t in stamps if 5.0 <= t < 15.0]
    assert abs(len(steady) - rate * 10) <= max(1, b)
    # No window of burst/rate seconds ever holds more than `burst` permits.
    window = b / rate
    for i in range(len(stamps) - b):
        assert stamps[i + b] - stamps[i] >= window * (1 - 1e-9)
    assert limiter.statistics().acquired == len(stamps)


async def test_rate_limiter_is_fifo_and_counts_waits() -> None:
    limiter = RateLimiter(10, burst=1)
    order: list[int] = []

    async def take(i: int) -> None:
        await limiter.acquire()
        order.append(i)

    tasks = [asyncio.create_task(take(i)) for i in range(20)]
    await asyncio.sleep(0)
    assert limiter.statistics().waiting > 0
    await asyncio.gather(*tasks)
    assert order == list(range(20))
    assert _now() == pytest.approx(1.9, abs=1e-6)  # 20 permits at 10/s, first one free
    assert limiter.statistics().waited_seconds == pytest.approx(sum(i / 10 for i in range(20)))


async def test_rate_limiter_state_is_bounded_and_leaves_no_task() -> None:
    before = asyncio.all_tasks()
    limiter = RateLimiter(1000, burst=5)
    for _ in range(5000):
        await limiter.acquire()
    assert len(limiter._granted) == 5  # the times of the last `burst` permits, no more
    assert asyncio.all_tasks() == before
    assert _now() == pytest.approx(4.995, abs=1e-6)


async def test_injected_clock_is_used() -> None:
    fake_now = [100.0]
    limiter = RateLimiter(1, burst=2, clock=lambda: fake_now[0])
    await limiter.acquire()
    await limiter.acquire()
    third = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.5)
    assert not third.done()  # the fake clock has not moved: still blocked
    fake_now[0] += 2.1
    await asyncio.sleep(2.1)
    await third


def test_rate_validation() -> None:
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(0)
    with pytest.raises(ValueError, match="burst"):
        RateLimiter(5, burst=0)


# -- AdaptiveLimiter ----------------------------------------------------------------------------


async def test_throttle_cools_the_whole_scope_only() -> None:
    limiter = AdaptiveLimiter(8)
    admitted: dict[str, list[float]] = {"a": [], "b": []}

    async def call(scope: str) -> None:
        async with limiter.acquire(scope):
            admitted[scope].append(_now())
            await asyncio.sleep(0.1)

    limiter.on_throttle("a", 2.0)
    assert limiter.statistics().scopes["a"].limit == 4.0
    await asyncio.gather(*(call("a") for _ in range(4)), *(call("b") for _ in range(4)))
    assert admitted["b"] == [0.0] * 4
    assert min(admitted["a"]) >= 2.0  # every task of scope a waited for the cool-down
    assert "b" not in limiter.statistics().scopes


async def test_burst_of_429s_cuts_once_then_recovers_additively() -> None:
    limiter = AdaptiveLimiter(16, default_cooldown=1.0)
    for _ in range(10):  # ten in-flight answers reporting the same congestion
        limiter.on_throttle("s", None)
    stats = limiter.statistics()
    assert stats.throttles == 10 and stats.decreases == 1
    assert stats.scopes["s"].limit == 8.0
    assert stats.scopes["s"].cooling_for == pytest.approx(1.0)

    peak = 0
    current = 0

    async def call() -> None:
        nonlocal peak, current
        async with limiter.acquire("s"):
            current += 1
            peak = max(peak, current)
            await asyncio.sleep(0.01)
            current -= 1

    await asyncio.gather(*(call() for _ in range(8)))
    assert peak == 8  # capped at the cut limit
    assert 8.0 < limiter.statistics().scopes["s"].limit < 9.5  # +1 per `limit` successes
    limiter.on_throttle("s", 0.5)  # after the cool-down: a new congestion event, cut again
    assert limiter.statistics().decreases == 2
    await asyncio.sleep(1)
    for _ in range(40):
        await asyncio.gather(*(call() for _ in range(16)))
    assert "s" not in limiter.statistics().scopes  # fully recovered and idle: state dropped


async def test_adaptive_state_is_dropped_for_untroubled_scopes() -> None:
    limiter = AdaptiveLimiter(4)
    for i in range(10_000):
        async with limiter.acquire(f"scope-{i}"):
            pass
    assert limiter._scopes == {}


async def test_adaptive_respects_limit_floor_and_wakes_parked() -> None:
    limiter = AdaptiveLimiter(4, min_limit=2)
    for _ in range(5):
        limiter.on_throttle("x", 0.0)
        await asyncio.sleep(0.001)
    assert limiter.statistics().scopes["x"].limit == 2.0
    running = 0
    peak = 0

    async def call() -> None:
        nonlocal running, peak
        async with limiter.acquire("x"):
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.1)
            running -= 1

    await asyncio.gather(*(call() for _ in range(10)))
    assert peak == 2


async def test_try_acquire_asks_a_subclass_that_overrides_the_check() -> None:
    """try_acquire's fast path skips blocked_by / blocked_for only for the classes' own:
    a subclass overriding them (a shared pause, a frozen pool) is always asked."""

    class Frozen(ConcurrencyLimiter):
        def blocked_by(self, keys: tuple[tuple[str, str], ...]) -> tuple[str, str] | None:
            return ("*", "")

    class Paused(AdaptiveLimiter):
        def blocked_for(self, scope: str) -> float | None:
            return 1.0

    assert Frozen().try_acquire(()) == ("*", "")
    assert Paused(4).try_acquire("s") == 1.0
    assert ConcurrencyLimiter().try_acquire(()) is None
    assert AdaptiveLimiter(4).try_acquire("s") is None
