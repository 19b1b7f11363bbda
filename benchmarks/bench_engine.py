"""The engine's own cost per job, in process: ``execute_many`` vs a pool of tasks (issue 13).

``python -m benchmarks.bench_engine [--jobs N] [--rounds R]``

Every variant runs the same ``ExecuteJob`` list through ``actions.execute`` over a
FakeTransport whose handler yields once (``sleep(0)``, so calls overlap as on a network) and
answers canned bytes. ``pool``: 256 tasks calling ``execute`` in a loop (no fairness, no
caps, no outcome stream: the floor). The others are ``execute_many(concurrency=256)`` with
its defaults, without the adaptive limiter, with ``per_user=4`` for a single user (a cap
that keeps 252 of the 256 workers idle: what a release costs when many workers wait), and
with ``per_user=4`` over 1,000 users, one of them with a fifth of the jobs (the makespan
schedule's ranking at work).
Rounds are interleaved; medians of microseconds per job.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from alloy_async import AlloyClient
from alloy_async._http import Request, Response
from alloy_async.models.bulk import ExecuteJob
from alloy_async.transports.fake import FakeTransport

from .bench_inproc import CANNED

CONCURRENCY = 256


async def _handler(request: Request) -> Response:
    await asyncio.sleep(0)
    return CANNED


async def run(n: int, rounds: int) -> dict[str, float]:
    """Median microseconds per job of each variant."""
    jobs = [
        ExecuteJob("sendgrid", "sendEmail", "cred_1", user_id="user_1",
                   request_body={"to": f"u{i}@x.io", "subject": "hi"})
        for i in range(n)
    ]  # fmt: skip
    alloy = AlloyClient(
        api_key="sk_bench",
        base_url="http://127.0.0.1:9",
        transport=FakeTransport(_handler, record=False),
    )

    # 1,000 users, one of them with a fifth of the jobs (cap-bound at per_user=4: the
    # makespan schedule ranks it ahead), shuffled the same way every run.
    owners = [0] * (n // 5) + [1 + i % 1000 for i in range(n - n // 5)]
    random.Random(7).shuffle(owners)
    spread = [attrs.evolve(j, user_id=f"user_{u}") for j, u in zip(jobs, owners, strict=True)]

    async def many(source: list[ExecuteJob] = jobs, **options: Any) -> None:
        ok = 0
        async with alloy.actions.execute_many(
            iter(source), concurrency=CONCURRENCY, **options
        ) as bulk:
            async for outcome in bulk:
                ok += outcome.ok
        assert ok == n, bulk.report.summary()

    async def pool() -> None:
        it = iter(jobs)
        execute = alloy.actions.execute

        async def worker() -> None:
            for j in it:
                await execute(j.connector_id, j.action_id, credential_id=j.credential_id,
                              user_id=j.user_id, request_body=j.request_body)  # fmt: skip

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))

    variants: dict[str, Callable[[], Awaitable[None]]] = {
        "pool of 256 tasks calling execute": pool,
        "execute_many, defaults": many,
        "execute_many, adaptive=False": lambda: many(adaptive=False),
        "execute_many, per_user=4, one user": lambda: many(per_user=4),
        "execute_many, per_user=4, 1,000 users": lambda: many(spread, per_user=4),
    }
    try:
        await many()  # warm-up
        got: dict[str, list[float]] = {name: [] for name in variants}
        for r in range(rounds):
            for name in list(variants) if r % 2 == 0 else list(variants)[::-1]:
                gc.collect()
                t0 = time.perf_counter()
                await variants[name]()
                got[name].append(1e6 * (time.perf_counter() - t0) / n)
    finally:
        await alloy.aclose()
    return {name: statistics.median(v) for name, v in got.items()}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_engine")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    for name, us in asyncio.run(run(args.jobs, args.rounds)).items():
        print(f"{name:40} {us:7.1f} us/job")


if __name__ == "__main__":
    main()
