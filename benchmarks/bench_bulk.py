"""execute_many over N jobs: wall time, jobs/s and peak RSS (a script, not a test).

    .venv/bin/python benchmarks/bench_bulk.py 10000
    .venv/bin/python benchmarks/bench_bulk.py 1000000
    .venv/bin/python -m benchmarks.bench_bulk 1000000 --sdk --json  # as python -m benchmarks

By default each job is read lazily from a generator and executed by a trivial ``execute_one``
(one ``asyncio.sleep(0)``), so the figures measure the engine itself: scheduling, fairness,
limiter and outcome plumbing. With ``--sdk`` the jobs go through the whole SDK instead
(``alloy.actions.execute_many`` -> ``actions.execute`` -> pipeline -> a FakeTransport answering a
canned response). Peak RSS should not grow with N (the look-ahead bounds what is buffered); run
each size in its own process so the peaks do not mix.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from collections.abc import Iterator
from typing import Any

import orjson

from alloy_async import AlloyClient
from alloy_async._core import CallStats
from alloy_async._http import Request, Response
from alloy_async.bulk import execute_many
from alloy_async.models.bulk import ExecuteJob
from alloy_async.transports.fake import FakeTransport

_CANNED = Response(
    200,
    {"content-type": "application/json", "x-request-id": "req_1"},
    orjson.dumps({"success": True, "result": {"id": "msg_1"}}),
)


def peak_rss_mib() -> float:
    """This process's own peak RSS. ``ru_maxrss`` survives fork + exec on Linux (a child
    started by a big parent reports the parent's peak), so read ``VmHWM``, which belongs to the
    address space and starts afresh at exec."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def jobs(n: int) -> Iterator[ExecuteJob]:
    for i in range(n):
        yield ExecuteJob("slack", "send", "cred", user_id=f"user-{i % 5000}", request_body={"n": i})


async def execute_one(job: ExecuteJob, stats: CallStats) -> Any:
    stats.attempts += 1
    await asyncio.sleep(0)
    return None


async def _answer(request: Request) -> Response:
    await asyncio.sleep(0)
    return _CANNED


async def main(n: int, sdk: bool, as_json: bool) -> None:
    started = time.perf_counter()
    count = ok = 0
    alloy = None
    if sdk:
        alloy = AlloyClient(
            api_key="sk_bench",
            base_url="http://127.0.0.1:9",
            transport=FakeTransport(_answer, record=False),
        )
        run = alloy.actions.execute_many(jobs(n), concurrency=64, per_user=4)
    else:
        run = execute_many(execute_one, jobs(n), concurrency=64, per_user=4)
    async with run:
        async for outcome in run:
            count += 1
            ok += outcome.ok
    if alloy is not None:
        await alloy.aclose()
    elapsed = time.perf_counter() - started
    rss_mib = peak_rss_mib()
    if as_json:
        figures = {"jobs": count, "ok": ok, "wall": elapsed, "peak_rss_mib": rss_mib}
        print(json.dumps(figures))
        return
    print(
        f"jobs={count} wall={elapsed:.1f}s rate={count / elapsed:,.0f}/s peak_rss={rss_mib:.1f} MiB"
    )
    print(run.report.summary())


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    asyncio.run(main(int(args[0]) if args else 100_000, "--sdk" in sys.argv, "--json" in sys.argv))
