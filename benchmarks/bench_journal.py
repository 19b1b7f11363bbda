"""The write-ahead journal's cost (issue 9): per job, on the event loop, and at a million keys.

``python -m benchmarks.bench_journal [--quick] [--json]``

1. Per-job cost: ``execute_many`` over an in-process transport (one canned answer, no network)
   without a checkpoint, with ``SqliteJournal`` (durability "process") and with "power" (one
   fsync per group commit). Rounds are interleaved; the difference of the medians is the cost
   of the journal per job.
2. Event-loop stalls: a 1 ms ticker runs beside the journaled run; its worst lateness is the
   longest the loop was blocked (journal writes happen on their own thread).
3. A million keys (in a fresh subprocess, so its peak RSS is its own): the journal is filled
   with 1,000,000 finished keys, then a run over the same 1,000,000 jobs resumes from it
   (every job skipped): the time to resume and the process's peak RSS, against the same
   process's RSS before the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from alloy_async import AlloyClient
from alloy_async._http import Request, Response
from alloy_async.journal import SqliteJournal
from alloy_async.models import ExecuteJob
from alloy_async.transports.fake import FakeTransport

from ._common import peak_rss_mib, run_json

CANNED = Response(
    200,
    {"content-type": "application/json", "x-request-id": "req_1"},
    orjson.dumps({"success": True, "result": {"id": "msg_1"}}),
)


async def _handler(request: Request) -> Response:
    await asyncio.sleep(0)  # one loop turn, like a response arriving
    return CANNED


def _jobs(n: int, tag: str) -> Iterator[ExecuteJob]:
    for i in range(n):
        yield ExecuteJob(
            "sendgrid",
            "sendEmail",
            "cred_1",
            f"user_{i % 500}",
            {"to": f"u{i}@x.io", "subject": "hi"},
            key=f"{tag}-{i}",
        )


async def _ticker(stop: asyncio.Event, lateness: list[float]) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        expected = loop.time() + 0.001
        await asyncio.sleep(0.001)
        lateness.append(loop.time() - expected)


async def _one(n: int, mode: str, tmp: Path, tag: str) -> tuple[float, list[float]]:
    """Seconds for ``n`` jobs, and the ticker's lateness samples during them."""
    checkpoint: Any = None
    if mode != "none":
        checkpoint = SqliteJournal(tmp / f"{tag}.db", durability=mode)  # type: ignore[arg-type]
    transport = FakeTransport(_handler)
    async with AlloyClient("k", base_url="http://127.0.0.1:9", transport=transport) as alloy:
        stop, lateness = asyncio.Event(), []  # type: ignore[var-annotated]
        ticker = asyncio.create_task(_ticker(stop, lateness))
        t0 = time.perf_counter()
        run = alloy.actions.execute_many(
            _jobs(n, tag), concurrency=64, checkpoint=checkpoint, adaptive=False
        )
        async with run:
            async for _ in run:
                pass
        elapsed = time.perf_counter() - t0
        stop.set()
        await ticker
    assert run.report.succeeded == n, run.report
    return elapsed, lateness


async def per_job(quick: bool) -> dict[str, Any]:
    n, rounds = (5_000, 3) if quick else (20_000, 5)
    times: dict[str, list[float]] = {"none": [], "process": [], "power": []}
    stalls: dict[str, list[float]] = {"none": [], "process": [], "power": []}
    p99: dict[str, list[float]] = {"none": [], "process": [], "power": []}
    with tempfile.TemporaryDirectory() as d:
        for r in range(rounds):
            order = ["none", "process", "power"] if r % 2 == 0 else ["power", "process", "none"]
            for mode in order:
                elapsed, lateness = await _one(n, mode, Path(d), f"{mode}-{r}")
                times[mode].append(elapsed / n * 1e6)
                lateness.sort()
                stalls[mode].append(lateness[-1] * 1e3)
                p99[mode].append(lateness[int(len(lateness) * 0.99)] * 1e3)
    med = {m: statistics.median(v) for m, v in times.items()}
    return {
        "jobs": n,
        "rounds": rounds,
        "us_per_job": med,
        "journal_cost_us": {m: med[m] - med["none"] for m in ("process", "power")},
        "loop_lateness_p99_ms": {m: statistics.median(v) for m, v in p99.items()},
        "loop_lateness_max_ms": {m: max(v) for m, v in stalls.items()},
    }


async def _million(n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "million.db"
        journal = SqliteJournal(path)
        t0 = time.perf_counter()
        await journal.open("filler")
        for i in range(n):
            journal.record(f"m-{i}", "succeeded")
            if i % 50_000 == 0:
                await journal.flush()  # bounded queue while filling
        await journal.aclose()
        fill = time.perf_counter() - t0
        rss_before = peak_rss_mib()
        async with AlloyClient(
            "k", base_url="http://127.0.0.1:9", transport=FakeTransport(_handler)
        ) as alloy:
            t0 = time.perf_counter()
            run = alloy.actions.execute_many(_jobs(n, "m"), checkpoint=path)
            async with run:
                async for _ in run:
                    raise AssertionError("a finished job ran again")
            resume = time.perf_counter() - t0
        assert run.report.skipped == n, run.report
        return {
            "keys": n,
            "fill_s": fill,
            "resume_s": resume,
            "rss_before_mib": rss_before,
            "rss_peak_mib": peak_rss_mib(),
            "file_mib": path.stat().st_size / 2**20,
        }


def million(n: int) -> dict[str, Any]:
    """Run the million-key resume in a fresh subprocess and return its figures."""
    return run_json("benchmarks.bench_journal", "--million-only", str(n))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_journal")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--million-only", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.million_only:
        print(json.dumps(asyncio.run(_million(args.million_only))))
        return
    result = {
        "per_job": asyncio.run(per_job(args.quick)),
        "million": million(100_000 if args.quick else 1_000_000),
    }
    print(json.dumps(result, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
