"""RateLimiter precision: permits handed out over a real-time window vs the set rate.

``tasks`` coroutines call ``acquire()`` in a loop (demand far above the rate). The achieved
rate is the number of permits granted inside ``[t0, t0 + seconds]`` divided by ``seconds``,
including the initial burst (the limiter's default burst is a tenth of a second's worth).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from alloy_async.limits import RateLimiter


async def measure(rate: float, seconds: float, tasks: int = 16) -> dict[str, Any]:
    limiter = RateLimiter(rate)
    granted: list[float] = []
    t0 = time.perf_counter()
    end = t0 + seconds

    async def worker() -> None:
        while True:
            await limiter.acquire()
            now = time.perf_counter()
            if now > end:
                return
            granted.append(now)

    await asyncio.gather(*(worker() for _ in range(tasks)))
    achieved = len(granted) / seconds
    return {
        "rate": rate,
        "burst": limiter.burst,
        "seconds": seconds,
        "permits": len(granted),
        "achieved": achieved,
        "error_pct": 100 * (achieved - rate) / rate,
    }


if __name__ == "__main__":
    print(asyncio.run(measure(200, 2.0)))
