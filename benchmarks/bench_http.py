"""SDK vs raw aiohttp vs httpx over loopback (benchmarks 1-3), against two servers.

Each server runs in its own process, so the server's CPU is not charged to the client:

* the sandbox (``python -m alloy_async.cli sandbox``: aiohttp.web + the simulator). On a 2-core
  machine it is usually the bottleneck (one core each), which makes wall-clock throughput ratios
  close to 1.0 whatever the client costs;
* the light server (``python -m benchmarks.light_server``: the same answer bytes, canned, no
  simulator), so that more of the wall clock is the client's own. Issue 13's targets for P1
  (execute vs raw aiohttp) and P2 (execute_many vs gather) are judged on wall throughput
  against it.

Every client is measured two ways in the same run, in interleaved rounds (A, B, A, B, ...):

* wall-clock throughput (requests / s), and
* client CPU per request (``time.process_time()`` of this process, which runs only the client):
  ``capacity = 1 / cpu_per_request`` is the throughput the client could sustain with a server
  that is never the bottleneck. The sandbox rows are judged on this capacity ratio; the wall
  ratio is printed beside it.

``python -m benchmarks.bench_http [--quick] [--server light|sandbox|both] [--rounds N]`` runs
P1 and P2 (and the httpx comparison against the sandbox) and prints the rows and ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Literal

import aiohttp
import httpx
import orjson

from alloy_async import AlloyClient
from alloy_async._core import user_agent
from alloy_async.client import DEFAULT_API_VERSION
from alloy_async.models.bulk import ExecuteJob

from ._common import EXECUTE_PATH, Sandbox, cpu_now, execute_body, light_process, sandbox_process

Runner = Callable[[int], Awaitable[None]]
ServerKind = Literal["light", "sandbox"]

#: Which server process each kind runs in.
SERVERS: dict[ServerKind, Callable[[], contextlib.AbstractContextManager[Sandbox]]] = {
    "light": light_process,
    "sandbox": sandbox_process,
}
#: Issue 13: (result key, title, ratio judged, minimum, target text), against the light server.
LIGHT_TARGETS = (
    ("execute_vs_raw", "1L. execute vs raw aiohttp (conc 64), light server", "wall_ratio",
     0.95, ">= 0.95x"),
    ("many_vs_gather", "2L. execute_many vs gather+semaphore (conc 256), light server",
     "wall_ratio", 1.25, ">= 1.25x"),
)  # fmt: skip
#: The older targets against the sandbox, judged on client-CPU capacity (``python -m
#: benchmarks`` also shows the wall ratio against the same minimum).
SANDBOX_TARGETS = (
    ("execute_vs_raw", "1. execute vs raw aiohttp (conc 64)", "capacity_ratio", 0.90, ">= 0.90x"),
    ("many_vs_gather", "2. execute_many vs gather+semaphore (conc 256)", "capacity_ratio",
     1.15, ">= 1.15x"),
    ("execute_vs_httpx", "3. SDK vs httpx.AsyncClient (conc 64)", "capacity_ratio", 10.0,
     ">= 10x"),
)  # fmt: skip


def raw_headers(sb: Sandbox) -> dict[str, str]:
    """Exactly the headers the SDK sends for an execute call."""
    return {
        "authorization": f"Bearer {sb.api_key}",
        "x-api-version": DEFAULT_API_VERSION,
        "user-agent": user_agent(),
        "accept": "application/json",
        "x-alloy-userid": sb.user_id,
        "content-type": "application/json",
    }


class Measure:
    """Accumulates requests, wall seconds, client CPU and server CPU over rounds."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.requests = 0
        self.wall = 0.0
        self.cpu = 0.0
        self.server_cpu = 0.0

    async def round(self, sb: Sandbox, run: Runner, n: int) -> None:
        gc.collect()
        s0, c0, t0 = sb.cpu_seconds(), cpu_now(), time.perf_counter()
        await run(n)
        t1, c1, s1 = time.perf_counter(), cpu_now(), sb.cpu_seconds()
        self.requests += n
        self.wall += t1 - t0
        self.cpu += c1 - c0
        self.server_cpu += s1 - s0

    @property
    def rps(self) -> float:
        return self.requests / self.wall

    @property
    def cpu_us(self) -> float:
        return 1e6 * self.cpu / self.requests

    @property
    def capacity(self) -> float:
        """Requests per client CPU second."""
        return self.requests / self.cpu

    def row(self) -> str:
        return (
            f"{self.name:<36} {self.requests:>7} req  {self.rps:>8,.0f} req/s wall  "
            f"client {self.cpu_us:>6.0f} us/req (capacity {self.capacity:>7,.0f}/s)  "
            f"server {1e6 * self.server_cpu / self.requests:>5.0f} us/req"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "rps_wall": round(self.rps, 1),
            "client_cpu_us": round(self.cpu_us, 1),
            "capacity": round(self.capacity, 1),
            "server_cpu_us": round(1e6 * self.server_cpu / self.requests, 1),
        }


async def _workers(concurrency: int, n: int, one: Callable[[int], Awaitable[None]]) -> None:
    """``concurrency`` long-lived tasks sharing ``n`` calls (no task per call)."""
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            await one(i)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


# -- the clients under test --------------------------------------------------------------------


def sdk_runner(alloy: AlloyClient, sb: Sandbox, concurrency: int) -> Runner:
    async def one(i: int) -> None:
        result = await alloy.actions.execute(
            "sendgrid",
            "sendEmail",
            credential_id=sb.credential_id,
            user_id=sb.user_id,
            request_body={"to": f"u{i}@x.io", "subject": "hi"},
        )
        assert result.success

    return lambda n: _workers(concurrency, n, one)


def raw_runner(session: aiohttp.ClientSession, sb: Sandbox, concurrency: int) -> Runner:
    url = sb.url + EXECUTE_PATH
    headers = raw_headers(sb)

    async def one(i: int) -> None:
        async with session.post(url, data=orjson.dumps(execute_body(sb, i)), headers=headers) as r:
            body = orjson.loads(await r.read())
            assert r.status == 200 and body["success"]

    return lambda n: _workers(concurrency, n, one)


def httpx_runner(client: httpx.AsyncClient, sb: Sandbox, concurrency: int) -> Runner:
    url = sb.url + EXECUTE_PATH
    headers = raw_headers(sb)

    async def one(i: int) -> None:
        r = await client.post(url, content=orjson.dumps(execute_body(sb, i)), headers=headers)
        body = orjson.loads(r.content)
        assert r.status_code == 200 and body["success"]

    return lambda n: _workers(concurrency, n, one)


def sdk_many_runner(alloy: AlloyClient, sb: Sandbox, concurrency: int) -> Runner:
    def jobs(n: int) -> Iterator[ExecuteJob]:
        for i in range(n):
            yield ExecuteJob(
                "sendgrid",
                "sendEmail",
                sb.credential_id,
                user_id=sb.user_id,
                request_body={"to": f"u{i}@x.io", "subject": "hi"},
            )

    async def run(n: int) -> None:
        ok = 0
        async with alloy.actions.execute_many(jobs(n), concurrency=concurrency) as bulk:
            async for outcome in bulk:
                ok += outcome.ok
        assert ok == n, bulk.report.summary()

    return run


def gather_runner(session: aiohttp.ClientSession, sb: Sandbox, concurrency: int) -> Runner:
    url = sb.url + EXECUTE_PATH
    headers = raw_headers(sb)

    async def run(n: int) -> None:
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> bool:
            async with (
                sem,
                session.post(url, data=orjson.dumps(execute_body(sb, i)), headers=headers) as r,
            ):
                body = orjson.loads(await r.read())
                return r.status == 200 and bool(body["success"])

        results = await asyncio.gather(*(one(i) for i in range(n)))
        assert all(results)

    return run


def _session(limit: int) -> aiohttp.ClientSession:
    # The same pool and session settings as AiohttpTransport (no skipped auto headers:
    # raw_headers carries a User-Agent), so only the layers above differ.
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=0, keepalive_timeout=30.0)
    return aiohttp.ClientSession(connector=connector)


# -- the benchmarks ----------------------------------------------------------------------------


async def _compare(
    sb: Sandbox, runners: dict[str, Runner], n: dict[str, int], rounds: int
) -> dict[str, Measure]:
    measures = {name: Measure(name) for name in runners}
    for name, run in runners.items():  # warm-up: connections, caches, first-call imports
        await run(min(n[name], 500))
    names = list(runners)
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            await measures[name].round(sb, runners[name], n[name])
    return measures


def _ratios(base: Measure, sdk: Measure) -> dict[str, Any]:
    return {
        "measures": [base, sdk],
        "capacity_ratio": sdk.capacity / base.capacity,
        "wall_ratio": sdk.rps / base.rps,
    }


async def run_all(
    sb: Sandbox, quick: bool, server: ServerKind = "sandbox", rounds: int | None = None
) -> dict[str, Any]:
    """P1 and P2 against ``sb``, plus the httpx comparison when ``server`` is the sandbox.

    Measures against the light server are named with a ``[light]`` suffix (the sandbox's keep
    their old names, so RESULTS.md rows stay comparable across runs).
    """
    if rounds is None:
        rounds = 2 if quick else 4
    light = server == "light"
    tag = " [light]" if light else ""
    # The light-server ratios are the judged ones and the client is its bottleneck: twice the
    # requests a round for steadier wall figures.
    n1 = (1500 if quick else 6000) * (2 if light else 1)
    n2 = (4000 if quick else 20000) * (2 if light else 1)
    out: dict[str, Any] = {}

    # 1. actions.execute vs raw aiohttp, concurrency 64 --------------------------------------
    conc = 64
    alloy = AlloyClient(api_key=sb.api_key, base_url=sb.url, max_connections=100)
    raw = _session(100)
    raw_name, sdk_name = f"raw aiohttp (conc 64){tag}", f"SDK execute (conc 64){tag}"
    try:
        m = await _compare(
            sb,
            {raw_name: raw_runner(raw, sb, conc), sdk_name: sdk_runner(alloy, sb, conc)},
            {raw_name: n1, sdk_name: n1},
            rounds,
        )
        out["execute_vs_raw"] = _ratios(m[raw_name], m[sdk_name])

        # 3. SDK vs httpx, concurrency 64 (the sandbox only: httpx is far behind either way) ----
        if not light:
            hx = httpx.AsyncClient(
                limits=httpx.Limits(max_connections=conc, max_keepalive_connections=conc),
                timeout=30.0,
            )
            try:
                nh = 300 if quick else 1200
                m = await _compare(
                    sb,
                    {"httpx (conc 64)": httpx_runner(hx, sb, conc),
                     "SDK execute (conc 64) ": sdk_runner(alloy, sb, conc)},
                    {"httpx (conc 64)": nh, "SDK execute (conc 64) ": n1},
                    max(2, rounds // 2),
                )  # fmt: skip
            finally:
                await hx.aclose()
            out["execute_vs_httpx"] = _ratios(m["httpx (conc 64)"], m["SDK execute (conc 64) "])
    finally:
        await alloy.aclose()
        await raw.close()

    # 2. execute_many vs gather + semaphore, concurrency 256 -----------------------------------
    conc = 256
    alloy = AlloyClient(api_key=sb.api_key, base_url=sb.url, max_connections=conc)
    raw = _session(conc)
    g_name, e_name = f"gather+semaphore (conc 256){tag}", f"SDK execute_many (conc 256){tag}"
    # The ceiling of P2: 256 long-lived tasks sending the same POSTs with raw aiohttp (no
    # fairness, caps, limiter, journal or outcome stream). execute_many cannot beat gather by
    # more than this pool does.
    p_name = f"raw aiohttp pool (conc 256){tag}"
    try:
        m = await _compare(
            sb,
            {g_name: gather_runner(raw, sb, conc), e_name: sdk_many_runner(alloy, sb, conc),
             p_name: raw_runner(raw, sb, conc)},
            {g_name: n2, e_name: n2, p_name: n2},
            rounds,
        )  # fmt: skip
    finally:
        await alloy.aclose()
        await raw.close()
    out["many_vs_gather"] = _ratios(m[g_name], m[e_name])
    out["pool_vs_gather"] = _ratios(m[g_name], m[p_name])
    out["many_vs_pool"] = _ratios(m[p_name], m[e_name])
    return out


def run_servers(
    quick: bool, servers: tuple[ServerKind, ...] = ("light", "sandbox"), rounds: int | None = None
) -> dict[ServerKind, dict[str, Any]]:
    """:func:`run_all` against each server in turn, each in its own process (started and
    stopped here, so only one server is up while measuring)."""
    out: dict[ServerKind, dict[str, Any]] = {}
    for kind in servers:
        with SERVERS[kind]() as sb:
            out[kind] = asyncio.run(run_all(sb, quick, kind, rounds))
    return out


def ratio_lines(server: ServerKind, res: dict[str, Any]) -> list[tuple[str, float, str, bool]]:
    """(title, ratio, target, met) for each target of ``server``, from :func:`run_all`'s
    result."""
    targets = LIGHT_TARGETS if server == "light" else SANDBOX_TARGETS
    lines: list[tuple[str, float, str, bool]] = []
    for key, title, judged, good, target in targets:
        if key in res:
            value = res[key][judged]
            what = "wall throughput" if judged == "wall_ratio" else "client-CPU capacity"
            lines.append((f"{title}, {what}", value, target, value >= good))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_http")
    parser.add_argument("--quick", action="store_true", help="fewer requests and rounds")
    parser.add_argument("--server", choices=("light", "sandbox", "both"), default="both")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds per client")
    args = parser.parse_args()
    servers: tuple[ServerKind, ...] = (
        ("light", "sandbox") if args.server == "both" else (args.server,)
    )
    started = time.perf_counter()
    results = run_servers(args.quick, servers, args.rounds)
    for kind, res in results.items():
        print(f"[{kind} server]")
        for key, r in res.items():
            for m in r["measures"]:
                print("  " + m.row())
            base, sdk = r["measures"]
            print(
                f"  -> {key}: wall {r['wall_ratio']:.2f}x, client-CPU capacity "
                f"{r['capacity_ratio']:.2f}x (client {sdk.cpu_us:.0f} vs {base.cpu_us:.0f} us/req)"
            )
        for title, value, target, ok in ratio_lines(kind, res):
            print(f"  {title}: {value:.2f}x (target {target}) {'PASS' if ok else 'MISS'}")
    print(f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
