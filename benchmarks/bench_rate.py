"""RateLimiter precision: permits handed out over a real-time window vs the set rate.

``tasks`` coroutines call ``acquire()`` in a loop (demand far above the rate). The achieved
rate is the number of permits granted inside ``[t0, t0 + seconds]`` divided by ``seconds``,
including the initial burst (the limiter's default burst is a tenth of a second's worth).

``python -m benchmarks.bench_rate [--seconds S]`` prints the default-burst figures the suite
judges (target: within ±3 %), then ``burst=1`` for information: with one permit per window,
every late wake-up of the event loop (tens to hundreds of µs) is lost from the rate, so
``burst=1`` at high rates runs below the set rate; a burst of a tenth of a second absorbs it.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from alloy_async.limiters import RateLimiter


async def measure(
    rate: float, seconds: float, tasks: int = 16, burst: int | None = None
) -> dict[str, Any]:
    limiter = RateLimiter(rate, burst=burst)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    cases: list[tuple[float, int | None]] = [(200, None), (1000, None), (5000, None)]
    cases += [(200, 1), (1000, 1)]
    for rate, burst in cases:
        r = asyncio.run(measure(rate, args.seconds, burst=burst))
        note = "" if burst is None else "  (information only)"
        print(
            f"RateLimiter({rate:g}/s, burst {r['burst']}): {r['permits']} permits in "
            f"{args.seconds:g} s = {r['achieved']:.1f}/s, error {r['error_pct']:+.2f} %{note}"
        )


if __name__ == "__main__":
    main()
