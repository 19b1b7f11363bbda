"""The shared limits on Redis: the rate budget, the leased caps, the cool-down per scope.

Each is one of the engine's coordinator protocols (``alloy_async.engine.coordinator``), kept
cheap on the event loop: whatever can be answered locally is (this process's own count of a
user's calls, a scope's cool-down), and Redis is asked only for what other processes change.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

from .._checks import check_number
from ..limiters import GLOBAL_KEY, AdaptiveLimiter, ConcurrencyLimiter, Key
from ._redis import Shared
from ._scripts import LEASE, RATE
from ._writes import LeaseBook

__all__ = ["LocalCount", "RedisCoolDown", "RedisRate", "RedisSlots"]


class RedisRate:
    """``rate`` permits per second for every process on a namespace (a moving window).

    At most ``burst`` permits in any ``burst / rate`` seconds, counted by one Lua script on
    Redis's clock: one round trip per permit granted. Within a process one task at a time asks
    Redis (the others queue behind it on a lock), so a refused permit costs one round trip per
    process, not one per waiting task. A call cancelled while waiting takes no permit; one
    cancelled during its round trip may have taken one it never uses (a budget never
    overspent, at worst one permit short).
    """

    def __init__(self, shared: Shared, key: str, rate: float, burst: int | None = None) -> None:
        check_number("rate", rate, low=0.0, strict=True)
        self.rate = float(rate)
        self.burst = burst if burst is not None else max(1, math.ceil(self.rate / 10))
        check_number("burst", self.burst, low=1, integer=True)
        self._window_us = max(1, round(self.burst / self.rate * 1_000_000))
        self._shared = shared
        self._key = key
        self._lock = asyncio.Lock()
        self.acquired = 0

    async def acquire(self) -> None:
        """Wait for a permit of the shared budget and take it."""
        script = self._shared.script(RATE)
        async with self._lock:
            while True:
                member = self._shared.new_member()
                wait_us = await self._shared.call(
                    "taking a rate permit",
                    script,
                    [self._key],
                    [self.burst, self._window_us, member],
                )
                if int(wait_us) <= 0:
                    self.acquired += 1
                    return
                await asyncio.sleep(int(wait_us) / 1_000_000)


class LocalCount:
    """Calls in flight in this process, across every run sharing a coordinator."""

    def __init__(self, total: int | None) -> None:
        self.total = total
        self.in_flight = 0


class RedisSlots:
    """Per-user and per-connector caps over every process on a namespace: leases on Redis.

    :meth:`try_acquire` counts this process's calls (its own caps and the process total),
    without a round trip; :meth:`lease` then takes one lease per capped key, atomically, from
    a sorted set per key whose scores are the leases' expiry times. The coordinator renews the
    leases it holds; a process that dies stops renewing, and its leases lapse after
    ``lease_ttl`` seconds.
    """

    def __init__(
        self,
        shared: Shared,
        prefix: str,
        caps: dict[str, int],
        local: LocalCount,
        *,
        lease_ttl: float,
        leases: LeaseBook,
    ) -> None:
        self._shared = shared
        self._prefix = prefix
        self._leases = leases
        self._caps = caps
        self._own = ConcurrencyLimiter(None, per_key=caps)
        self._local = local
        self._ttl_ms = max(1, round(lease_ttl * 1000))
        # The members this run leased, per set of keys: a release gives back one of them.
        self._members: dict[tuple[Key, ...], list[str]] = {}
        self.retry_after = min(0.25, lease_ttl / 10)

    def keys_for(self, keys: Any) -> tuple[Key, ...]:
        """The capped keys of a job."""
        return self._own.keys_for(keys)

    def try_acquire(self, keys: tuple[Key, ...]) -> Key | None:
        """This process's share: its total and its own count per key (no round trip)."""
        local = self._local
        if local.total is not None and local.in_flight >= local.total:
            return GLOBAL_KEY
        blocker = self._own.try_acquire(keys)
        if blocker is None:
            local.in_flight += 1
        return blocker

    def release(self, keys: tuple[Key, ...]) -> None:
        """Give back this process's share."""
        self._own.release(keys)
        self._local.in_flight -= 1

    async def lease(self, keys: tuple[Key, ...]) -> Key | None:
        """Lease every key across processes, or none: the first full key."""
        names = [self._name(key) for key in keys]
        member = self._shared.new_member()
        script = self._shared.script(LEASE)
        caps = [self._caps[key[0]] for key in keys]
        while True:
            full = int(
                await self._shared.call(
                    "leasing a slot", script, names, [self._ttl_ms, member, *caps]
                )
            )
            if not full:
                break
            # Full, but perhaps only until this process's own queued release is written.
            if not await self._leases.until_released(names[full - 1]):
                return keys[full - 1]
        self._leases.took(member, names)
        self._members.setdefault(keys, []).append(member)
        return None

    def unlease(self, keys: tuple[Key, ...]) -> None:
        """Give the leases back (queued: the coordinator's writer sends them in batches)."""
        members = self._members.get(keys)
        if not members:
            return
        member = members.pop()
        if not members:
            del self._members[keys]
        self._leases.give_back(member, [self._name(key) for key in keys])

    def statistics(self) -> Any:
        """This process's counts (``ConcurrencyLimiter.statistics``)."""
        return self._own.statistics()

    def _name(self, key: Key) -> str:
        return f"{self._prefix}slot:{key[0]}:{key[1]}"


class RedisCoolDown:
    """The adaptive limit per scope, with throttles shared by every process on a namespace.

    A local :class:`~alloy_async.limiters.AdaptiveLimiter` answers the engine at once; a 429
    seen here is applied locally and published on the namespace's channel, and the
    coordinator applies every other process's throttles to this one as they arrive.
    """

    def __init__(
        self, limiter: AdaptiveLimiter, publish: Callable[[str, float | None], None]
    ) -> None:
        self.local = limiter
        self._publish = publish

    def blocked_for(self, scope: str) -> float | None:
        """Seconds ``scope`` must wait, or None."""
        return self.local.blocked_for(scope)

    def room(self, scope: str) -> int:
        """Calls ``scope`` may start now (-1: unlimited)."""
        return self.local.room(scope)

    def try_acquire(self, scope: str) -> float | None:
        """Count a call in ``scope``."""
        return self.local.try_acquire(scope)

    def release(self, scope: str, *, success: bool | None = True) -> None:
        """A call in ``scope`` ended."""
        self.local.release(scope, success=success)

    def on_throttle(self, scope: str, retry_after: float | None) -> None:
        """Cool ``scope`` here and in every process on the namespace."""
        self.local.on_throttle(scope, retry_after)
        self._publish(scope, retry_after)

    def heard(self, scope: str, retry_after: float | None) -> None:
        """Another process was throttled in ``scope``."""
        self.local.on_throttle(scope, retry_after)
