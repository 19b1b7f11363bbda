"""Scale-out on Redis (issue 12), all on 127.0.0.1, side by side in one run.

``python -m benchmarks.bench_redis [--quick] [--suite] [--json] [--parts 123]``

1. **Shared rate.** N processes (1, 2, 4) run ``execute_many(jobs, rate=R, concurrency=32,
   coordinator=RedisCoordinator(url, namespace=...))`` against one sandbox subprocess (2 ms)
   that stamps each execution with ``time.monotonic()`` (one clock for all local processes):
   its count over 10 s after 1 s of warm-up vs R, and its most in any 1 s of the whole run vs
   R + burst (ceil(R / 10)). Beside it, the limiters alone in plain loops in N processes,
   counting grants: ours (``RedisRate.acquire()``) and ``limits`` (``MovingWindowRateLimiter``
   on its async ``RedisStorage``, redis-py, sleeping until ``get_window_stats().reset_time``).
   Round trips per permit: counted in the clients, and as EVALSHA calls on the server.
2. **Jobs/s** of the in-process coordinator (no journal; a SQLite ``checkpoint``) and of
   ``RedisCoordinator``, with and without ``per_user``, no rate, latency 0, interleaved rounds.
3. **taskiq**: ``alloy-async bulk --redis`` with 1, 2, 4 ``alloy-async worker``s, latency 50 ms.

``--suite`` is what ``python -m benchmarks`` runs (part 1 with ``execute_many`` only). Redis
runs without persistence (``appendonly no``): the figures are the coordinator's, not a disk's.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import itertools
import json
import math
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alloy_async import AlloyClient
from alloy_async.distributed import RedisCoordinator
from alloy_async.sandbox import SandboxServer
from alloy_async.testing.fake import FakeAlloy
from alloy_async.testing.seed import seed_demo

ROOT = Path(__file__).parent.parent
WARM, TAIL = 1.0, 0.5  # seconds of a rate run before the window (the burst) and after it
CONCURRENCY = 32
TASKIQ_LATENCY_MS = 50.0
TASKIQ_CONCURRENCY = 16  # per worker: at most 320 jobs/s each at 50 ms; 4 can outgrow 2 cores
_MEDIANS = ("wall", "jobs_s", "exec_jobs_s", "busy_cores", "commands_per_job")
_KIND = {"alloy": "execute_many + RedisCoordinator", "loop": "RedisRate loop", "limits": "limits"}


class _Stamped(list):  # type: ignore[type-arg]
    """The sandbox's executions list, also keeping the ``time.monotonic()`` of each append."""

    def __init__(self) -> None:
        super().__init__()
        self.stamps: list[float] = []

    def append(self, item: Any) -> None:
        self.stamps.append(time.monotonic())
        super().append(item)


def _serve_sandbox(spec: dict[str, Any]) -> None:
    """The sandbox (as ``alloy-async sandbox``), whose ``/_sandbox/stats`` adds the stamps."""
    latency_ms, users = spec["serve"]
    fake = FakeAlloy(latency=latency_ms / 1000, record=False)
    fake.executions = stamped = _Stamped()
    seeded = seed_demo(fake, users)

    class StampedServer(SandboxServer):
        def stats(self) -> dict[str, Any]:
            return {**super().stats(), "stamps": stamped.stamps}

    async def serve() -> None:
        async with StampedServer(fake) as server:
            info = {"url": server.url, "api_key": fake.api_key, "users": seeded}
            info |= {"latency": latency_ms / 1000, "pid": os.getpid()}
            print(json.dumps(info), flush=True)
            stop = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
            await stop.wait()

    asyncio.run(serve())


def _spawn(*args: str, stdin: bool = False, **kw: Any) -> subprocess.Popen[str]:
    """``python -m <args>`` from the repository root (stdout piped, stderr dropped)."""
    kw = {"stdout": subprocess.PIPE, "stderr": subprocess.DEVNULL} | kw
    stdin_ = subprocess.PIPE if stdin else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-m", *args], stdin=stdin_, text=True, cwd=ROOT, **kw)


def _stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM, wait (SIGKILL after 15 s), close the pipes; returns what it wrote on stderr."""
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.communicate(timeout=15)[1] or ""
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[1] or ""


@contextlib.contextmanager
def sandbox(latency_ms: float, users: int) -> Iterator[dict[str, Any]]:
    """A stamped sandbox subprocess: ``{"url", "api_key", "users": [[user, credential]...]}``."""
    proc = _spawn("benchmarks.bench_redis", "--worker", json.dumps({"serve": [latency_ms, users]}))
    try:
        assert proc.stdout is not None
        yield json.loads(proc.stdout.readline())
    finally:
        _stop(proc)


def _stamps(sb: dict[str, Any], since: float) -> list[float]:
    """When the sandbox executed each action since ``since`` (sorted)."""
    with urllib.request.urlopen(sb["url"] + "/_sandbox/stats", timeout=30) as answer:
        return sorted(s for s in json.loads(answer.read())["stamps"] if s >= since)


def _jobs(sb: dict[str, Any], n: int, tag: str) -> list[dict[str, Any]]:
    """``n`` jobs spread over the sandbox's users, keyed ``<tag>-<i>``."""
    job = {"connectorId": "sendgrid", "actionId": "sendEmail"}
    users = sb["users"]
    return [
        {**job, "userId": users[i % len(users)][0], "credentialId": users[i % len(users)][1],
         "requestBody": {"to": f"u{i}@x.io", "subject": "hi"}, "key": f"{tag}-{i}"}
        for i in range(n)
    ]  # fmt: skip


def _count_calls(coord: Any) -> Counter[str]:
    """Count the coordinator's Redis round trips by operation (each ``Shared.call`` is one: a
    script, a command or a pipeline), by wrapping its private ``call``."""
    calls: Counter[str] = Counter()
    shared = coord._shared
    original = shared.call

    async def counted(what: str, fn: Any, *args: Any) -> Any:
        calls[what] += 1
        return await original(what, fn, *args)

    shared.call = counted
    return calls


def _commandstats(client: Any) -> Counter[str]:
    """Calls per command so far on the server (``INFO`` itself left out)."""
    got = client.info("commandstats").items()
    return Counter({k[8:]: v["calls"] for k, v in got if k != "cmdstat_info"})


def _cpu(pid: int | None) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _drain(run: Any) -> Any:
    async with run:
        async for _ in run:
            pass
    return run.report


def _worker(spec: dict[str, Any]) -> None:
    """One process of a rate case: ready, wait for the start time, run, print JSON."""
    print("ready", flush=True)
    go = float(sys.stdin.readline())
    kind, rate, end = spec["kind"], float(spec["rate"]), go + float(spec["seconds"])

    async def body() -> dict[str, Any]:
        await asyncio.sleep(max(0.0, go - time.monotonic()))
        if kind == "limits":
            return await _limits_loop(spec, end)
        async with RedisCoordinator(spec["redis"], namespace=spec["ns"]) as coord:
            calls = _count_calls(coord)
            if kind == "loop":
                budget = coord.configure(
                    concurrency=1, per_user=None, per_connector=None, rate=rate
                ).rate
                assert budget is not None
                stamps = []
                while True:
                    await budget.acquire()
                    if (now := time.monotonic()) >= end:
                        break
                    stamps.append(now)
                who = [coord._shared.id, budget._key, budget.burst, budget._window_us]
                return {"stamps": stamps, "calls": calls, "who": who}
            sb = spec["sandbox"]
            jobs = _jobs(sb, math.ceil(rate * (end - go) * 1.2) + 50, f"{spec['ns']}-{spec['i']}")
            async with AlloyClient(sb["api_key"], base_url=sb["url"]) as alloy:
                report = await _drain(alloy.actions.execute_many(
                    jobs, rate=rate, concurrency=CONCURRENCY, coordinator=coord,
                    deadline=end - time.monotonic(),
                ))  # fmt: skip
            return {"ok": report.succeeded, "failed": report.failed, "calls": calls}

    print(json.dumps(asyncio.run(body())), flush=True)


async def _limits_loop(spec: dict[str, Any], end: float) -> dict[str, Any]:
    from limits import parse
    from limits.aio.storage import RedisStorage
    from limits.aio.strategies import MovingWindowRateLimiter

    storage = RedisStorage("async+" + spec["redis"], implementation="redispy")
    limiter = MovingWindowRateLimiter(storage)
    item = parse(f"{round(spec['rate'])}/second")
    stamps: list[float] = []
    calls: Counter[str] = Counter()
    try:
        while True:
            calls["hit"] += 1
            if await limiter.hit(item, spec["ns"]):
                if (now := time.monotonic()) >= end:
                    break
                stamps.append(now)
            else:  # refused: sleep until the oldest hit leaves the window (limits' clock)
                calls["get_window_stats"] += 1
                window = await limiter.get_window_stats(item, spec["ns"])
                await asyncio.sleep(max(0.0, window.reset_time - time.time()))
    finally:
        await storage.bridge.storage.aclose()  # the async storage has no close of its own
    return {"stamps": stamps, "calls": calls}


def rate_case(
    kind: str, n: int, rate: float, window: float, redis: Any, sb: dict[str, Any]
) -> dict[str, Any]:
    """N processes of ``kind`` ("alloy": execute_many; "loop": our budget; "limits")."""
    ns = f"bench-{kind}-{n}-{rate:g}-{os.urandom(3).hex()}"
    spec = {"kind": kind, "rate": rate, "seconds": WARM + window + TAIL, "ns": ns}
    spec |= {"redis": redis.url, "sandbox": sb}
    procs: list[subprocess.Popen[str]] = []
    try:
        for i in range(n):
            arg = json.dumps({**spec, "i": i})
            procs.append(_spawn("benchmarks.bench_redis", "--worker", arg, stdin=True))
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        with redis.client() as client:
            before = _commandstats(client)
            go = time.monotonic() + 0.3
            for p in procs:  # one start time for all, on the machine's monotonic clock
                p.stdin.write(f"{go!r}\n")  # type: ignore[union-attr]
                p.stdin.flush()  # type: ignore[union-attr]
            outs = [json.loads(p.communicate(timeout=60)[0].splitlines()[-1]) for p in procs]
            evalsha = (_commandstats(client) - before)["evalsha"]
    finally:
        for p in procs:
            _stop(p)
    own = sorted(s for out in outs for s in out.get("stamps", ()))
    stamps = _stamps(sb, go) if kind == "alloy" else own
    calls = sum((Counter(out["calls"]) for out in outs), Counter())
    trips = calls["hit"] + calls["get_window_stats"] + calls["taking a rate permit"]
    lo, hi = go + WARM, go + WARM + window
    achieved = (bisect.bisect_left(stamps, hi) - bisect.bisect_left(stamps, lo)) / window
    # The most in any closed 1 s interval of the whole run, the warm-up's burst included.
    peak = max((bisect.bisect_right(stamps, s + 1.0) - i for i, s in enumerate(stamps)), default=0)
    return {
        "kind": kind, "n": n, "rate": rate, "window": window, "achieved": achieved,
        "error_pct": 100 * (achieved - rate) / rate, "peak_1s": peak,
        "bound_1s": round(rate) + max(1, math.ceil(rate / 10)), "permits": len(stamps),
        "rate_trips_per_permit": trips / max(1, len(stamps)),
        "evalsha_per_permit": evalsha / max(1, len(stamps)),
        "failed": sum(out.get("failed", 0) for out in outs),
        "per_process": [len(out["stamps"]) if "stamps" in out else out["ok"] for out in outs],
        # A check of the set-up: one key and one window for all, a distinct id per process.
        "who": [out["who"] for out in outs if "who" in out],
    }  # fmt: skip


async def throughput(
    sb: dict[str, Any], redis: Any, n: int, rounds: int, caps: tuple[int | None, ...]
) -> dict[str, Any]:
    """Jobs/s and CPU per job of each coordinator (interleaved rounds, medians; Redis's own
    CPU read from /proc), Redis round trips per job, and redis / in-process per round."""
    modes = ["in-process", "in-process + sqlite", "redis"]
    got: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    trips: dict[str, Counter[str]] = defaultdict(Counter)
    commands: dict[str, Counter[str]] = defaultdict(Counter)
    bad = 0
    with tempfile.TemporaryDirectory() as tmp, redis.client() as client:
        async with AlloyClient(sb["api_key"], base_url=sb["url"]) as alloy:
            await _drain(alloy.actions.execute_many(_jobs(sb, 300, "warm")))
            for r, cap in itertools.product(range(rounds), caps):
                for mode in modes if r % 2 == 0 else modes[::-1]:
                    name, tag = f"{mode}|{cap}", f"tp-{r}-{cap}-{mode[:6]}-{os.urandom(3).hex()}"
                    options: dict[str, Any] = {"concurrency": CONCURRENCY, "per_user": cap}
                    coord = None
                    if mode == "redis":
                        coord = options["coordinator"] = RedisCoordinator(redis.url, namespace=tag)
                        calls = _count_calls(coord)
                    elif mode.endswith("sqlite"):
                        options["checkpoint"] = Path(tmp) / f"{tag}.db"
                    before, redis_cpu = _commandstats(client), _cpu(redis.pid)
                    cpu, t0 = time.process_time(), time.perf_counter()
                    report = await _drain(alloy.actions.execute_many(_jobs(sb, n, tag), **options))
                    got[name]["jobs_s"].append(n / (time.perf_counter() - t0))
                    got[name]["cpu_us"].append((time.process_time() - cpu) / n * 1e6)
                    bad += n - report.succeeded
                    if coord is not None:
                        await coord.aclose()
                        got[name]["redis_cpu_us"].append((_cpu(redis.pid) - redis_cpu) / n * 1e6)
                        trips[name] += calls
                        commands[name] += _commandstats(client) - before
    out: dict[str, Any] = {"jobs": n, "rounds": rounds, "not_succeeded": bad, "rows": []}
    for name, values in got.items():
        mode, cap = name.split("|")
        row: dict[str, Any] = {"mode": mode, "per_user": cap, "runs": values}
        row |= {k: statistics.median(v) for k, v in values.items()}
        if name in trips:
            base = got[f"in-process|{cap}"]["jobs_s"]
            ratios = [x / y for x, y in zip(values["jobs_s"], base, strict=True)]
            row["vs_in_process"] = statistics.median(ratios)
            row["trips_per_job"] = {k: v / (n * rounds) for k, v in sorted(trips[name].items())}
            row["commands_per_job"] = sum(commands[name].values()) / (n * rounds)
        out["rows"].append(row)
    return out


def taskiq_case(n: int, jobs_n: int, redis: Any, sb: dict[str, Any], tmp: Path) -> dict[str, Any]:
    """``alloy-async bulk --redis`` over ``jobs_n`` jobs with ``n`` ``alloy-async worker``s."""
    tag = f"tq-{n}-{os.urandom(3).hex()}"
    jobs_path, out_path = tmp / f"{tag}.jsonl", tmp / f"{tag}.out.jsonl"
    jobs_path.write_text("".join(json.dumps(job) + "\n" for job in _jobs(sb, jobs_n, tag)))
    where = ["--base-url", sb["url"], "--api-key", sb["api_key"], "--redis", redis.url]
    where += ["--queue", tag, "--concurrency", str(TASKIQ_CONCURRENCY)]
    workers: list[subprocess.Popen[str]] = []
    driver: subprocess.Popen[str] | None = None
    try:
        for _ in range(n):
            workers.append(_spawn("alloy_async.cli", "worker", *where, stderr=subprocess.PIPE))
        for w in workers:
            assert w.stdout is not None
            if "worker ready" not in (line := w.stdout.readline()):
                raise RuntimeError(f"a worker did not start: {line!r}")
        pids = [*(w.pid for w in workers), sb["pid"], redis.pid]
        with redis.client() as client:
            before, cpu = _commandstats(client), sum(map(_cpu, pids))
            kids = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.monotonic()
            args = ["bulk", str(jobs_path), "--out", str(out_path), "--namespace", tag, *where]
            driver = _spawn("alloy_async.cli", *args, stderr=subprocess.PIPE)
            _, err = driver.communicate(timeout=600)
            wall = time.monotonic() - t0
            commands = _commandstats(client) - before
            cpu = sum(map(_cpu, pids)) - cpu  # the workers, the sandbox, Redis ...
            done = resource.getrusage(resource.RUSAGE_CHILDREN)  # ... and the driver
            cpu += done.ru_utime + done.ru_stime - kids.ru_utime - kids.ru_stime
        if driver.returncode != 0:
            raise RuntimeError(f"bulk --redis exited {driver.returncode}: {err[-2000:]}")
    finally:
        # Each worker's last line: "worker: C chunk(s), J job(s): ..." (its share of the run).
        ends = ["".join(_stop(w).strip().splitlines()[-1:]) for w in workers]
        if driver is not None:
            _stop(driver)
    rows = [json.loads(line) for line in out_path.read_text().splitlines()]
    stamps = _stamps(sb, t0)
    return {
        "workers": n, "jobs": jobs_n, "wall": wall, "jobs_s": jobs_n / wall,
        "exec_jobs_s": len(stamps) / (stamps[-1] - stamps[0]),
        "ideal_jobs_s": n * TASKIQ_CONCURRENCY / sb["latency"],
        "rows_ok": sum(1 for r in rows if r.get("ok")), "executed": len(stamps),
        "distinct_keys": len({r.get("key") for r in rows}),
        "per_worker": [int(m.group(1)) for e in ends if (m := re.search(r"(\d+) job", e))],
        "commands_per_job": sum(commands.values()) / jobs_n, "busy_cores": cpu / wall,
    }  # fmt: skip


def _taskiq(args: argparse.Namespace, redis: Any, tmp: Path) -> dict[str, Any]:
    """Rounds of 1, 2, 4 workers (the order reversed every other round), medians per count."""
    jobs_n, counts, rounds = (600, (1, 2), 1) if args.quick else (2000, (1, 2, 4), 2)
    rounds = 1 if args.suite else rounds
    cases = []
    with sandbox(TASKIQ_LATENCY_MS, 32) as sb:
        for r in range(rounds):
            for n in counts if r % 2 == 0 else counts[::-1]:
                print(f"[taskiq] {n} worker(s), {jobs_n:,} jobs", file=sys.stderr, flush=True)
                cases.append(taskiq_case(n, jobs_n, redis, sb, tmp))
    rows = []
    for n in counts:
        mine = [c for c in cases if c["workers"] == n]
        row = {k: statistics.median(c[k] for c in mine) for k in _MEDIANS}
        row |= {k: sum(c[k] for c in mine) for k in ("jobs", "rows_ok", "executed")}
        rows.append(row | {"workers": n, "ideal_jobs_s": mine[0]["ideal_jobs_s"], "runs": mine})
    for row in rows:
        row["scaling"] = row["exec_jobs_s"] / rows[0]["exec_jobs_s"]
    return {"jobs": jobs_n, "rounds": rounds, "rows": rows}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every part asked for, on one throwaway redis-server."""
    from tests.redis_server import running_redis

    window = 3.0 if args.quick else 10.0
    kinds = ["alloy"] if args.suite or args.quick else list(_KIND)
    kinds = args.kinds.split(",") if args.kinds else kinds
    cases = [(kind, n, 200.0) for kind in kinds for n in (1, 2, 4)]
    cases += [] if args.suite or args.quick else [(kind, 4, 50.0) for kind in kinds]
    result: dict[str, Any] = {"window": window, "rate": [], "throughput": None, "taskiq": None}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, running_redis(tmp, appendonly=False) as redis:
        if "1" in args.parts:
            with sandbox(2.0, 1) as sb:
                for kind, n, rate in cases:
                    print(f"[rate] {kind} x{n} at {rate:g}/s", file=sys.stderr, flush=True)
                    result["rate"].append(rate_case(kind, n, rate, window, redis, sb))
        if "2" in args.parts:
            print("[jobs/s] coordinators", file=sys.stderr, flush=True)
            n, rounds = (500, 1) if args.quick else (1000, 3 if args.suite else 5)
            with sandbox(0.0, 32) as sb:
                result["throughput"] = asyncio.run(throughput(sb, redis, n, rounds, (None, 2)))
        if "3" in args.parts:
            result["taskiq"] = _taskiq(args, redis, Path(tmp))
    result["seconds"] = time.perf_counter() - t0
    return result


def _table(head: str, rows: list[list[Any]]) -> list[str]:
    """A Markdown table; ``head`` is its header cells joined by " | "."""
    rule = "|" + "---|" * (head.count(" | ") + 1)
    return ["", f"| {head} |", rule, *(f"| {' | '.join(map(str, r))} |" for r in rows)]


def markdown(result: dict[str, Any]) -> list[str]:
    """The figures as Markdown tables (what RESULTS.md shows)."""
    lines: list[str] = []
    if result["rate"]:
        lines += _table(
            f"limiter | processes | R | achieved over {result['window']:g} s | error | max in "
            "any 1 s (bound R + burst) | rate round trips / permit | EVALSHA / permit (server) "
            "| permits per process",
            [[_KIND[r["kind"]], r["n"], f"{r['rate']:g}", f"{r['achieved']:.1f}/s",
              f"{r['error_pct']:+.2f} %", f"{r['peak_1s']} ({r['bound_1s']})",
              f"{r['rate_trips_per_permit']:.2f}", f"{r['evalsha_per_permit']:.2f}",
              ", ".join(map(str, r["per_process"]))] for r in result["rate"]],
        )  # fmt: skip
    if tp := result["throughput"]:
        rows = []
        for row in tp["rows"]:
            cells = [row["mode"], row["per_user"], f"{row['jobs_s']:,.0f}"]
            if not (trips := row.get("trips_per_job")):
                rows.append([*cells, "—", f"{row['cpu_us']:.0f} us", "—", "—", "—"])
                continue
            detail = ", ".join(f"{k} {v:.2f}" for k, v in trips.items() if v >= 0.005)
            rows.append([*cells, f"{row['vs_in_process']:.2f}x", f"{row['cpu_us']:.0f} us",
                         f"{row['redis_cpu_us']:.0f} us", f"{sum(trips.values()):.2f} ({detail})",
                         f"{row['commands_per_job']:.1f}"])  # fmt: skip
        lines += _table(
            f"coordinator ({tp['jobs']:,} jobs a run, medians of {tp['rounds']} rounds) | "
            "per_user | jobs/s | / in-process (per round) | client CPU / job | Redis CPU / job "
            "| Redis round trips / job | Redis commands / job",
            rows,
        )
    if tq := result["taskiq"]:
        lines += _table(
            f"workers ({tq['jobs']:,} jobs a run, medians of {tq['rounds']} rounds) | jobs/s, "
            "driver wall | jobs/s, first to last execution (each run) | ideal N x concurrency "
            f"/ latency | scaling vs 1 | busy cores (of {os.cpu_count()}) | rows ok / jobs "
            "| executed | Redis commands / job",
            [[row["workers"], f"{row['jobs_s']:,.0f}", f"{row['exec_jobs_s']:,.0f} ("
              + ", ".join(f"{c['exec_jobs_s']:,.0f}" for c in row["runs"]) + ")",
              f"{row['ideal_jobs_s']:,.0f}", f"{row['scaling']:.2f}x", f"{row['busy_cores']:.2f}",
              f"{row['rows_ok']:,} / {row['jobs']:,}", f"{row['executed']:,}",
              f"{row['commands_per_job']:.1f}"] for row in tq["rows"]],
        )  # fmt: skip
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_redis")
    parser.add_argument("--quick", action="store_true", help="short windows, fewer cases")
    parser.add_argument("--suite", action="store_true", help="the subset python -m benchmarks runs")
    parser.add_argument("--json", action="store_true", help="print one JSON line at the end")
    parser.add_argument("--parts", default="123", help="which parts to run (e.g. 12)")
    parser.add_argument("--kinds", help="rate limiters of part 1: alloy,loop,limits")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # a sandbox or a rate worker
    args = parser.parse_args()
    if args.worker:
        spec = json.loads(args.worker)
        (_serve_sandbox if "serve" in spec else _worker)(spec)
    elif args.json:
        print(json.dumps(run(args)))
    else:
        result = run(args)
        print("\n".join(markdown(result)) + f"\n\n({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
