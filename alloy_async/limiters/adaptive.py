"""Adaptive: AIMD concurrency per scope.

A 429 / ``Retry-After`` cools the whole scope and halves its concurrency; successes then raise it
back step by step. ``on_throttle`` is a ``ThrottleListener`` for the request pipeline. A
single-loop object (no thread safety).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager, suppress

import attrs

from .._checks import check_clock, check_number
from ..errors import InvalidRequestError

__all__ = ["AdaptiveLimiter", "AdaptiveStatistics", "ScopeStatistics"]


@attrs.frozen(slots=True)
class ScopeStatistics:
    """One scope of an :class:`AdaptiveLimiter`.

    Attributes:
        limit: the scope's current concurrency limit (cut on a throttle, grown back on
            successes).
        in_flight: calls in flight in the scope.
        cooling_for: seconds left of the scope's cool-down (0.0 when not cooling).
        throttles: throttle signals the scope received.
    """

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
        check_number("max_limit", max_limit, low=1, integer=True)
        check_number("min_limit", min_limit, low=1, integer=True)
        if min_limit > max_limit:
            raise InvalidRequestError(
                f"min_limit must be <= max_limit ({max_limit}), got {min_limit!r}",
                field="min_limit",
            )
        check_number("decrease", decrease, low=0.0, strict=True)
        decrease = float(decrease)
        if decrease >= 1:
            raise InvalidRequestError(
                f"decrease must be a factor in (0, 1), got {decrease!r}", field="decrease"
            )
        check_number("increase", increase, low=0.0, strict=True)
        check_number("default_cooldown", default_cooldown, low=0.0)
        check_number("max_cooldown", max_cooldown, low=0.0, finite=False)
        increase = float(increase)
        default_cooldown = float(default_cooldown)
        max_cooldown = float(max_cooldown)
        check_clock(clock)
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
        # try_acquire's inline pre-check mirrors this class's blocked_for; a subclass that
        # overrides blocked_for is always asked.
        self._own_check = type(self).blocked_for is AdaptiveLimiter.blocked_for

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
        if state.cool_until:  # the clock is read only for a scope that was throttled
            wait = state.cool_until - self._now()
            if wait > 0:
                return wait
            state.cool_until = 0.0  # over: later calls need no clock
        cap = int(state.limit)  # no call to max(): this runs once per job
        if state.in_flight >= (cap if cap >= self.min_limit else self.min_limit):
            return math.inf
        return None

    def room(self, scope: str) -> int:
        """Slots ``scope`` could take right now (0 while it cools down or is full)."""
        state = self._scopes.get(scope)
        if state is None:
            return self.max_limit
        if state.cool_until and state.cool_until > self._now():
            return 0
        return max(0, max(self.min_limit, int(state.limit)) - state.in_flight)

    def try_acquire(self, scope: str) -> float | None:
        """Take a slot in ``scope`` if it has room (returns None); else what
        :meth:`blocked_for` says."""
        state = self._scopes.get(scope)
        # A cheap pre-check (int(limit) <= the real cap): only a scope cooling down or near
        # its limit pays for blocked_for.
        if not self._own_check or (
            state is not None and (state.cool_until or state.in_flight >= int(state.limit))
        ):
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
        # The calls are guarded here: this runs once per call of a bulk run.
        if state.waiters:
            self._wake_one(scope)
        if state.in_flight == 0:
            self._maybe_drop(scope, state)

    def _maybe_drop(self, scope: str, state: _Scope) -> None:
        if (
            state.in_flight == 0
            and not state.waiters
            and state.limit >= self.max_limit
            and (not state.cool_until or state.cool_until <= self._now())
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
