"""Skewed runs: one heavy user with 10 %, 20 %, 50 % of the jobs, bound by its own cap (issue 26).

``python -m benchmarks.bench_skew [--jobs N] [--lights L] [--lookahead W] [--workers X]
[--issue] [--json]``

Each mix runs twice through ``alloy.actions.execute_many`` against an in-process FakeAlloy on
a virtual clock (deterministic; a run of 20,000 jobs takes a few CPU seconds): with
``schedule="round_robin"`` (the scheduler before issue 26) and ``schedule="makespan"`` (the
default now). The jobs of the heavy user and of ``L`` light users are shuffled together (seed
7). Every call takes ``latency`` seconds at the server; ``per_user`` caps each user,
``rate`` the run, and ``concurrency`` is ``rate * latency`` (what the rate needs), or
``--workers`` times that (jobs then wait for their rate permit holding their user's slot,
which slows a capped user: see the README).

Everything is judged by the server's record: the wall time is from the first call to the
last execution FakeAlloy performed, the light users' finish is the last (and the median) of
their last executions, and the peak per user is FakeAlloy's own ``peak_in_flight_per_user``.
``ideal = max(jobs / rate, heavy_jobs / (per_user / latency))``; the heavy user is cap-bound
when the second term is the larger.

``--issue`` runs the issue's own example instead: 100,000 jobs for 500 users, one with 20 %,
``per_user=20``, ``rate=800``, 50 ms calls, concurrency 40 (the rate's ``rate * latency``;
the heavy user is not cap-bound there: the ideal is ``jobs / rate``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
from typing import Any

import attrs

from alloy_async.engine import Schedule
from alloy_async.models.bulk import ExecuteJob
from alloy_async.testing import FakeAlloy
from alloy_async.testing.clock import run_virtual

SHARES = (0.10, 0.20, 0.50)
SCHEDULES: tuple[Schedule, ...] = ("round_robin", "makespan")


@attrs.frozen
class Mix:
    """One skewed run's shape."""

    jobs: int
    share: float
    lights: int
    latency: float = 0.1
    per_user: int = 5
    rate: float = 1000.0
    lookahead: int | None = None
    #: Workers per unit of ``rate * latency`` (above 1, jobs wait for their rate permit).
    workers: float = 1.0


async def one_run(mix: Mix, schedule: Schedule) -> dict[str, Any]:
    """One skewed run; its figures from FakeAlloy's record."""
    n, share, lights = mix.jobs, mix.share, mix.lights
    fake = FakeAlloy(latency=mix.latency, record=False)
    users = [fake.add_user(f"user{i}@example.com") for i in range(lights + 1)]
    creds = {user: fake.add_credential(user, "slack") for user in users}
    heavy = users[0]
    heavy_jobs = round(n * share)
    owners = [heavy] * heavy_jobs + [users[1 + i % lights] for i in range(n - heavy_jobs)]
    random.Random(7).shuffle(owners)
    jobs = [
        ExecuteJob("slack", "chat_postMessage", creds[u], u, {"channel": "C", "text": str(i)})
        for i, u in enumerate(owners)
    ]
    loop = asyncio.get_running_loop()
    async with fake.client() as alloy:
        t0 = loop.time()
        run = alloy.actions.execute_many(
            jobs,
            concurrency=round(mix.workers * mix.rate * mix.latency),
            per_user=mix.per_user,
            rate=mix.rate,
            adaptive=False,
            lookahead=mix.lookahead,
            schedule=schedule,
        )
        async with run:
            failed = sum([not outcome.ok async for outcome in run])
    assert failed == 0 and len(fake.executions) == n, (failed, len(fake.executions))
    last: dict[str, float] = {}
    for execution in fake.executions:
        last[execution.user_id] = max(last.get(execution.user_id, 0.0), execution.at - t0)
    light_ends = [at for user, at in last.items() if user != heavy]
    ideal = max(n / mix.rate, heavy_jobs / (mix.per_user / mix.latency))
    wall = max(last.values())
    return {
        "share": share,
        "schedule": schedule,
        "wall": wall,
        "ideal": ideal,
        "wall_over_ideal": wall / ideal,
        "lights_last": max(light_ends),
        "lights_median": statistics.median(light_ends),
        "peak_per_user": fake.stats()["peak_in_flight_per_user"],
    }


def run(mixes: list[Mix]) -> list[dict[str, Any]]:
    """Every mix under both schedules (each on a fresh virtual clock)."""
    return [
        run_virtual(one_run(mix, schedule), debug=False) for mix in mixes for schedule in SCHEDULES
    ]


def table(rows: list[dict[str, Any]]) -> str:
    """The rows side by side: round-robin, makespan, and the light users' ratio."""
    lines = [
        "| heavy share | ideal (s) | wall / ideal: round-robin | makespan "
        "| light users done, last (median), s: round-robin | makespan | ratio | peak/user |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for old, new in zip(rows[::2], rows[1::2], strict=True):
        share = new["share"]
        lines.append(
            f"| {share:.0%} | {new['ideal']:.1f} "
            f"| {old['wall_over_ideal']:.3f} ({old['wall']:.1f} s) "
            f"| {new['wall_over_ideal']:.3f} ({new['wall']:.1f} s) "
            f"| {old['lights_last']:.1f} ({old['lights_median']:.1f}) "
            f"| {new['lights_last']:.1f} ({new['lights_median']:.1f}) "
            f"| {new['lights_last'] / old['lights_last']:.3f} "
            f"| {old['peak_per_user']} / {new['peak_per_user']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_skew")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--lights", type=int, default=100, help="light users")
    parser.add_argument("--lookahead", type=int, default=None, help="default: the engine's")
    parser.add_argument("--workers", type=float, default=1.0, help="x rate * latency")
    parser.add_argument("--issue", action="store_true", help="the issue's own example")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.issue:
        mixes = [Mix(100_000, 0.2, 499, latency=0.05, per_user=20, rate=800.0)]
    else:
        mixes = [
            Mix(args.jobs, share, args.lights, lookahead=args.lookahead, workers=args.workers)
            for share in SHARES
        ]
    rows = run(mixes)
    print(json.dumps(rows, indent=1) if args.json else table(rows))


if __name__ == "__main__":
    main()
