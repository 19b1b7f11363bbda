"""Limiters for fan-out: concurrency (global and keyed), rate, and adaptive (AIMD per scope).

* :class:`ConcurrencyLimiter` — a global cap plus caps per key kind (``{"user": 4,
  "connector": 8}``); one acquisition takes several keys at once. Keyed state exists only while a
  key is held or waited on, so a million distinct users cost nothing once idle.
* :class:`RateLimiter` — requests per second with a burst: a moving window (at most ``burst``
  permits in any ``burst / rate`` seconds), on the event loop's clock, in a few lines of its
  own. Importing it changes no other package: no dependency is patched or subclassed.
* :class:`AdaptiveLimiter` — per scope: a 429 / ``Retry-After`` cools the whole scope and halves
  its concurrency; successes then raise it back step by step. ``on_throttle`` is a
  ``ThrottleListener`` for the request pipeline.

All three are single-loop objects (no thread safety) and offer ``statistics()`` snapshots. A
bad argument raises :class:`~alloy_async.errors.InvalidRequestError` (an ``AlloyError`` and a
``ValueError``) whose ``field`` names it.
"""

from __future__ import annotations

import asyncio
import math
import numbers
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from typing import Final

import attrs

from .errors import InvalidRequestError

__all__ = [
    "GLOBAL_KEY",
    "AdaptiveLimiter",
    "AdaptiveStatistics",
    "ConcurrencyLimiter",
    "ConcurrencyStatistics",
    "RateLimiter",
    "RateStatistics",
    "ScopeStatistics",
]

Key = tuple[str, str]
#: What :meth:`ConcurrencyLimiter.blocked_by` returns when the global cap is the obstacle.
GLOBAL_KEY: Final[Key] = ("*", "")


# ---------------------------------------------------------------------------------------------
# Concurrency


@attrs.frozen(slots=True)
class ConcurrencyStatistics:
    """A snapshot of a :class:`ConcurrencyLimiter`.

    Attributes:
        total: the global cap (None: unlimited).
        caps: key kind -> cap.
        in_flight: acquisitions currently held.
        waiting: tasks waiting in :meth:`ConcurrencyLimiter.acquire`.
        peak: the highest ``in_flight`` seen.
        peak_per_kind: key kind -> the most any single key of that kind held at once.
        held: key kind -> key -> count, for keys currently held.
        tracked_keys: keys with state (held or waited on); 0 when idle.
    """

    total: int | None
    caps: Mapping[str, int]
    in_flight: int
    waiting: int
    peak: int
    peak_per_kind: Mapping[str, int]
    held: Mapping[str, Mapping[str, int]]
    tracked_keys: int


def _check_cap(name: str, value: object, *, optional: bool, field: str | None = None) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        hint = " or None" if optional else ""
        raise InvalidRequestError(
            f"{name} must be an integer >= 1{hint}, got {value!r}", field=field or name
        )


def _check_number(
    name: str, value: object, *, low: float, strict: bool = False, finite: bool = True
) -> float:
    """``value`` as a float if it is a real number >= ``low`` (> when ``strict``), not NaN
    (nor infinite when ``finite``); else an :class:`InvalidRequestError` naming ``name``."""
    number = math.nan
    if not isinstance(value, bool) and isinstance(value, numbers.Real):
        number = float(value)
    if (
        math.isnan(number)
        or (finite and math.isinf(number))
        or number < low
        or (strict and number == low)
    ):
        bound = f"> {low:g}" if strict else f">= {low:g}"
        kind = "a finite number" if finite else "a number"
        raise InvalidRequestError(f"{name} must be {kind} {bound}, got {value!r}", field=name)
    return number


def _check_clock(clock: object) -> None:
    if clock is not None and not callable(clock):
        raise InvalidRequestError(
            f"clock must be a callable returning seconds, got {clock!r}", field="clock"
        )


class ConcurrencyLimiter:
    """A global concurrency cap plus caps per key kind.

    Args:
        total: at most this many holders at once (None: no global cap).
        per_key: key kind -> cap, e.g. ``{"user": 4, "connector": 8}``: at most 4 holders per
            user and 8 per connector. Kinds not listed are not limited.

    ``async with limiter.acquire({"user": "u1", "connector": "slack"}):`` waits until the global
    cap and every listed key have room, then holds one slot of each. A waiter blocked on one
    saturated key never blocks waiters for other keys (each waits on its own key's queue).
    """

    def __init__(self, total: int | None = None, *, per_key: Mapping[str, int] | None = None):
        _check_cap("total", total, optional=True)
        caps = dict(per_key or {})
        for kind, cap in caps.items():
            _check_cap(f"per_key[{kind!r}]", cap, optional=False, field="per_key")
        self._total = total
        self._caps = caps
        self._in_flight = 0
        self._peak = 0
        self._peak_per_kind = dict.fromkeys(caps, 0)
        self._held: dict[Key, int] = {}
        self._waiters: dict[Key, deque[asyncio.Future[None]]] = {}
        self._waiting = 0

    def keys_for(self, keys: Mapping[str, str | None] | None) -> tuple[Key, ...]:
        """The limited keys of ``keys``: kinds with a cap and a value that is not None."""
        if not keys or not self._caps:
            return ()
        return tuple((k, v) for k, v in keys.items() if v is not None and k in self._caps)

    def blocked_by(self, keys: tuple[Key, ...]) -> Key | None:
        """The first key without room (:data:`GLOBAL_KEY` for the global cap), or None."""
        if self._total is not None and self._in_flight >= self._total:
            return GLOBAL_KEY
        held = self._held
        caps = self._caps
        for key in keys:
            if held.get(key, 0) >= caps[key[0]]:
                return key
        return None

    def try_acquire(self, keys: tuple[Key, ...]) -> Key | None:
        """Take a slot of everything at once if all have room; else return the blocking key.

        ``keys`` comes from :meth:`keys_for`. Never waits.
        """
        blocker = self.blocked_by(keys)
        if blocker is not None:
            return blocker
        self._in_flight += 1
        if self._in_flight > self._peak:
            self._peak = self._in_flight
        held = self._held
        peaks = self._peak_per_kind
        for key in keys:
            count = held.get(key, 0) + 1
            held[key] = count
            if count > peaks[key[0]]:
                peaks[key[0]] = count
        return None

    def release(self, keys: tuple[Key, ...]) -> None:
        """Give back what :meth:`try_acquire` took; wakes one waiter per freed key."""
        self._in_flight -= 1
        held = self._held
        for key in keys:
            count = held[key] - 1
            if count:
                held[key] = count
            else:
                del held[key]  # idle keys cost no memory
            self._wake(key)
        self._wake(GLOBAL_KEY)

    def _wake(self, key: Key) -> None:
        waiters = self._waiters.get(key)
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                break
        if waiters is not None and not waiters:
            del self._waiters[key]

    @asynccontextmanager
    async def acquire(self, keys: Mapping[str, str | None] | None = None) -> AsyncIterator[None]:
        """Wait for room under the global cap and each key's cap, hold it for the block."""
        limited = self.keys_for(keys)
        blocker = self.try_acquire(limited)
        if blocker is not None:
            loop = asyncio.get_running_loop()
            self._waiting += 1
            try:
                while blocker is not None:
                    fut: asyncio.Future[None] = loop.create_future()
                    self._waiters.setdefault(blocker, deque()).append(fut)
                    try:
                        await fut
                    except BaseException:
                        if fut.done() and not fut.cancelled():
                            self._wake(blocker)  # pass the wake-up on, or it is lost
                        else:
                            self._drop_waiter(blocker, fut)
                        raise
                    blocker = self.try_acquire(limited)
            finally:
                self._waiting -= 1
        try:
            yield
        finally:
            self.release(limited)

    def _drop_waiter(self, key: Key, fut: asyncio.Future[None]) -> None:
        waiters = self._waiters.get(key)
        if waiters is None:
            return
        with suppress(ValueError):
            waiters.remove(fut)
        if not waiters:
            del self._waiters[key]

    def statistics(self) -> ConcurrencyStatistics:
        """A snapshot of the limiter's state."""
        held: dict[str, dict[str, int]] = {}
        for (kind, value), count in self._held.items():
            held.setdefault(kind, {})[value] = count
        return ConcurrencyStatistics(
            total=self._total,
            caps=dict(self._caps),
            in_flight=self._in_flight,
            waiting=self._waiting,
            peak=self._peak,
            peak_per_kind=dict(self._peak_per_kind),
            held=held,
            tracked_keys=len(self._held.keys() | self._waiters.keys()),
        )


# ---------------------------------------------------------------------------------------------
# Rate

#: How early a timer may fire on the default clock: asyncio runs a timer once ``loop.time()`` is
#: within the clock's resolution of it. A permit that comes due that close is given at once
#: (and booked at its due time), rather than waited for with ever smaller sleeps.
_CLOCK_RESOLUTION: Final = time.get_clock_info("monotonic").resolution


@attrs.frozen(slots=True)
class RateStatistics:
    """A snapshot of a :class:`RateLimiter`.

    Attributes:
        rate: permits per second.
        burst: permits available at once.
        acquired: permits handed out.
        waiting: tasks waiting for a permit.
        waited_seconds: total seconds tasks spent waiting.
    """

    rate: float
    burst: int
    acquired: int
    waiting: int
    waited_seconds: float


class RateLimiter:
    """At most ``rate`` permits per second, with up to ``burst`` at once.

    Args:
        rate: permits per second (> 0, fractions allowed).
        burst: permits in any window of ``burst / rate`` seconds. Default: a tenth of a
            second's worth (at least 1), which absorbs scheduling jitter without big bursts.
        clock: seconds, monotonic; default ``asyncio.get_running_loop().time``.

    A moving window: no window of ``burst / rate`` seconds ever holds more than ``burst``
    permits, so no window of ``k * burst / rate`` seconds holds more than ``k * burst`` (a
    server counting ``rate`` per second never sees more). The limiter keeps the times of the
    last ``burst`` permits: the next one is due ``burst / rate`` seconds after the oldest of
    them. Waiters are served first come, first served; a waiter cancelled while it waits (a
    stopped ``execute_many``) takes no permit and leaves nothing behind.
    """

    def __init__(
        self, rate: float, *, burst: int | None = None, clock: Callable[[], float] | None = None
    ) -> None:
        rate = _check_number("rate", rate, low=0.0, strict=True)
        if burst is None:
            burst = max(1, math.ceil(rate / 10))
        _check_cap("burst", burst, optional=False)
        _check_clock(clock)
        self.rate = rate
        self.burst = burst
        self._window = burst / rate
        self._clock = clock
        self._granted: deque[float] = deque(maxlen=burst)  # the last `burst` permits' times
        self._lock: asyncio.Lock | None = None
        self._acquired = 0
        self._waiting = 0
        self._waited = 0.0

    def _now(self) -> float:
        if self._clock is not None:
            return self._clock()
        return asyncio.get_running_loop().time()

    async def acquire(self) -> float:
        """Wait for a permit; returns the seconds waited."""
        lock = self._lock
        if lock is None:
            lock = self._lock = asyncio.Lock()
        granted = self._granted
        started = now = self._now()
        self._waiting += 1
        try:
            async with lock:  # FIFO: no waiter is overtaken by a later one
                while True:
                    now = self._now()
                    if len(granted) < self.burst:
                        granted.append(now)
                        break
                    due = granted[0] + self._window
                    if now + _CLOCK_RESOLUTION + 4 * math.ulp(due) >= due:
                        granted.append(max(now, due))  # the oldest drops out (maxlen)
                        break
                    await asyncio.sleep(due - now)
        finally:
            self._waiting -= 1
        waited = max(0.0, now - started)
        self._acquired += 1
        self._waited += waited
        return waited

    async def __aenter__(self) -> RateLimiter:
        await self.acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def statistics(self) -> RateStatistics:
        """A snapshot of the limiter's state."""
        return RateStatistics(
            rate=self.rate,
            burst=self.burst,
            acquired=self._acquired,
            waiting=self._waiting,
            waited_seconds=self._waited,
        )


# ---------------------------------------------------------------------------------------------
# Adaptive (AIMD per scope)


@attrs.frozen(slots=True)
class ScopeStatistics:
    """One scope of an :class:`AdaptiveLimiter`."""

    limit: float
    in_flight: int
    cooling_for: float
    throttles: int


@attrs.frozen(slots=True)
class AdaptiveStatistics:
    """A snapshot of an :class:`AdaptiveLimiter`.

    Attributes:
        max_limit: the ceiling of every scope's limit.
        scopes: scope -> its state, for scopes with state (in use, cooling or recovering).
        throttles: throttle signals received.
        decreases: multiplicative decreases applied.
        waiting: tasks waiting in :meth:`AdaptiveLimiter.acquire`.
    """

    max_limit: int
    scopes: Mapping[str, ScopeStatistics]
    throttles: int
    decreases: int
    waiting: int


@attrs.define(slots=True)
class _Scope:
    limit: float
    in_flight: int = 0
    cool_until: float = 0.0
    no_cut_until: float = 0.0
    throttles: int = 0
    waiters: deque[asyncio.Future[None]] = attrs.field(factory=deque)


class AdaptiveLimiter:
    """AIMD concurrency per scope (a connector, an account, an endpoint: the caller decides).

    Args:
        max_limit: each scope starts at, and recovers up to, this concurrency.
        min_limit: the floor of a scope's concurrency.
        decrease: factor applied to the limit on a throttle (at most once per cool-down).
        increase: added to the limit over ``limit`` successes (+``increase / limit`` each).
        default_cooldown: seconds a scope cools after a throttle without ``Retry-After``.
        max_cooldown: the longest cool-down honoured.
        clock: seconds, monotonic; default the running loop's clock.

    A throttle (:meth:`on_throttle`) stops the whole scope until the cool-down ends: every task
    of that scope waits, not only the one that was told to. A scope's state is dropped once it is
    idle and fully recovered.
    """

    def __init__(
        self,
        max_limit: int = 32,
        *,
        min_limit: int = 1,
        decrease: float = 0.5,
        increase: float = 1.0,
        default_cooldown: float = 1.0,
        max_cooldown: float = 60.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        _check_cap("max_limit", max_limit, optional=False)
        _check_cap("min_limit", min_limit, optional=False)
        if min_limit > max_limit:
            raise InvalidRequestError(
                f"min_limit must be <= max_limit ({max_limit}), got {min_limit!r}",
                field="min_limit",
            )
        decrease = _check_number("decrease", decrease, low=0.0, strict=True)
        if decrease >= 1:
            raise InvalidRequestError(
                f"decrease must be a factor in (0, 1), got {decrease!r}", field="decrease"
            )
        increase = _check_number("increase", increase, low=0.0, strict=True)
        default_cooldown = _check_number("default_cooldown", default_cooldown, low=0.0)
        max_cooldown = _check_number("max_cooldown", max_cooldown, low=0.0, finite=False)
        _check_clock(clock)
        self.max_limit = max_limit
        self.min_limit = min_limit
        self.decrease = decrease
        self.increase = increase
        self.default_cooldown = default_cooldown
        self.max_cooldown = max_cooldown
        self._clock = clock
        self._scopes: dict[str, _Scope] = {}
        self._throttles = 0
        self._decreases = 0
        self._waiting = 0

    def _now(self) -> float:
        if self._clock is not None:
            return self._clock()
        return asyncio.get_running_loop().time()

    def on_throttle(self, scope: str, retry_after: float | None) -> None:
        """A 429/503 in ``scope``: cool it down and cut its limit (a ``ThrottleListener``)."""
        now = self._now()
        state = self._scopes.get(scope)
        if state is None:
            state = self._scopes[scope] = _Scope(limit=float(self.max_limit))
        cool = self.default_cooldown if retry_after is None else retry_after
        cool = min(max(cool, 0.0), self.max_cooldown)
        state.cool_until = max(state.cool_until, now + cool)
        state.throttles += 1
        self._throttles += 1
        # The answers of requests already in flight report the same congestion: cut once.
        if now >= state.no_cut_until:
            state.limit = max(float(self.min_limit), state.limit * self.decrease)
            state.no_cut_until = state.cool_until
            self._decreases += 1

    def blocked_for(self, scope: str) -> float | None:
        """None when ``scope`` has room now; else seconds of cool-down left, or ``inf`` when
        it is at its concurrency limit (room comes with a release)."""
        state = self._scopes.get(scope)
        if state is None:
            return None
        wait = state.cool_until - self._now()
        if wait > 0:
            return wait
        if state.in_flight >= max(self.min_limit, int(state.limit)):
            return math.inf
        return None

    def room(self, scope: str) -> int:
        """Slots ``scope`` could take right now (0 while it cools down or is full)."""
        state = self._scopes.get(scope)
        if state is None:
            return self.max_limit
        if state.cool_until > self._now():
            return 0
        return max(0, max(self.min_limit, int(state.limit)) - state.in_flight)

    def try_acquire(self, scope: str) -> float | None:
        """Take a slot in ``scope`` if it has room (returns None); else what
        :meth:`blocked_for` says."""
        blocked = self.blocked_for(scope)
        if blocked is not None:
            return blocked
        state = self._scopes.get(scope)
        if state is None:
            state = self._scopes[scope] = _Scope(limit=float(self.max_limit))
        state.in_flight += 1
        return None

    def release(self, scope: str, *, success: bool | None = True) -> None:
        """Give back a slot. ``success=True`` grows the limit additively; False/None do not."""
        state = self._scopes[scope]
        state.in_flight -= 1
        if success and state.limit < self.max_limit:
            state.limit = min(float(self.max_limit), state.limit + self.increase / state.limit)
        self._wake_one(scope)
        self._maybe_drop(scope, state)

    def _maybe_drop(self, scope: str, state: _Scope) -> None:
        if (
            state.in_flight == 0
            and not state.waiters
            and state.limit >= self.max_limit
            and state.cool_until <= self._now()
        ):
            del self._scopes[scope]

    @asynccontextmanager
    async def acquire(self, scope: str) -> AsyncIterator[None]:
        """Wait for room in ``scope`` (cool-down over, under its limit); hold it for the block.

        Leaving the block normally counts as a success; an exception counts as neither.
        """
        blocked = self.try_acquire(scope)
        if blocked is not None:
            self._waiting += 1
            try:
                while blocked is not None:
                    if math.isinf(blocked):
                        await self._park(scope)
                    else:
                        await asyncio.sleep(blocked)
                    blocked = self.try_acquire(scope)
            finally:
                self._waiting -= 1
        ok = False
        try:
            yield
            ok = True
        finally:
            self.release(scope, success=ok or None)

    async def _park(self, scope: str) -> None:
        state = self._scopes[scope]
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        state.waiters.append(fut)
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                self._wake_one(scope)  # pass the wake-up on, or it is lost
            else:
                with suppress(ValueError):
                    state.waiters.remove(fut)
            raise

    def _wake_one(self, scope: str) -> None:
        state = self._scopes.get(scope)
        if state is None:
            return
        while state.waiters:
            fut = state.waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                break

    def statistics(self) -> AdaptiveStatistics:
        """A snapshot of the limiter's state."""
        now = self._now()
        return AdaptiveStatistics(
            max_limit=self.max_limit,
            scopes={
                name: ScopeStatistics(
                    limit=s.limit,
                    in_flight=s.in_flight,
                    cooling_for=max(0.0, s.cool_until - now),
                    throttles=s.throttles,
                )
                for name, s in self._scopes.items()
            },
            throttles=self._throttles,
            decreases=self._decreases,
            waiting=self._waiting,
        )
