"""Concurrency: a global cap plus caps per key kind (``{"user": 4, "connector": 8}``).

One acquisition takes several keys at once. Keyed state exists only while a key is held or waited
on, so a million distinct users cost nothing once idle. A single-loop object (no thread safety).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from typing import Final

import attrs

from .._checks import check_number

__all__ = ["GLOBAL_KEY", "ConcurrencyLimiter", "ConcurrencyStatistics", "Key"]

#: A limited key: (kind, value), e.g. ``("user", "u1")``.
Key = tuple[str, str]
#: What :meth:`ConcurrencyLimiter.blocked_by` returns when the global cap is the obstacle.
GLOBAL_KEY: Final[Key] = ("*", "")


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
        check_number("total", total, low=1, integer=True, optional=True)
        caps = dict(per_key or {})
        for kind, cap in caps.items():
            check_number(f"per_key[{kind!r}]", cap, low=1, integer=True, field="per_key")
        self._total = total
        self._caps = caps
        self._in_flight = 0
        self._peak = 0
        self._peak_per_kind = dict.fromkeys(caps, 0)
        self._held: dict[Key, int] = {}
        self._waiters: dict[Key, deque[asyncio.Future[None]]] = {}
        self._waiting = 0
        # try_acquire skips blocked_by when nothing can block; a subclass that overrides
        # blocked_by is always asked.
        self._own_check = type(self).blocked_by is ConcurrencyLimiter.blocked_by

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
        if (
            keys
            or not self._own_check
            or (self._total is not None and self._in_flight >= self._total)
        ):
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
        waiters = self._waiters
        for key in keys:
            count = held[key] - 1
            if count:
                held[key] = count
            else:
                del held[key]  # idle keys cost no memory
            if waiters:
                self._wake(key)
        if waiters:  # most releases have nobody waiting: no call then
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
