"""Rate: requests per second with a burst, as a moving window on the event loop's clock.

At most ``burst`` permits in any ``burst / rate`` seconds, in a few lines of its own. Importing it
changes no other package: no dependency is patched or subclassed. A single-loop object.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Final

import attrs

from .._checks import check_clock, check_number

__all__ = ["RateLimiter", "RateStatistics"]

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
        check_number("rate", rate, low=0.0, strict=True)
        rate = float(rate)
        if burst is None:
            burst = max(1, math.ceil(rate / 10))
        check_number("burst", burst, low=1, integer=True)
        check_clock(clock)
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
