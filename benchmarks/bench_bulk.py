"""execute_many over N trivial jobs: wall time, jobs/s and peak RSS (a script, not a test).

    .venv/bin/python benchmarks/bench_bulk.py 10000
    .venv/bin/python benchmarks/bench_bulk.py 1000000

Each job is read lazily from a generator and executed by a trivial ``execute_one`` (one
``asyncio.sleep(0)``), so the figures measure the engine itself: scheduling, fairness, limiter
and outcome plumbing. Peak RSS should not grow with N (the look-ahead bounds what is buffered).
"""

from __future__ import annotations

import asyncio
import resource
import sys
import time
from collections.abc import Iterator
from typing import Any

from alloy_async._core import CallStats
from alloy_async.bulk import execute_many
from alloy_async.models.bulk import ExecuteJob


def jobs(n: int) -> Iterator[ExecuteJob]:
    for i in range(n):
        yield ExecuteJob("slack", "send", "cred", user_id=f"user-{i % 5000}", request_body={"n": i})


async def execute_one(job: ExecuteJob, stats: CallStats) -> Any:
    stats.attempts += 1
    await asyncio.sleep(0)
    return None


async def main(n: int) -> None:
    started = time.perf_counter()
    count = 0
    async with execute_many(execute_one, jobs(n), concurrency=64, per_user=4) as run:
        async for _ in run:
            count += 1
    elapsed = time.perf_counter() - started
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"jobs={count} wall={elapsed:.1f}s rate={count / elapsed:,.0f}/s peak_rss={rss_mib:.1f} MiB"
    )
    print(run.report.summary())


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000))
