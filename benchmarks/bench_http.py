"""SDK vs raw aiohttp vs httpx against the sandbox over loopback (benchmarks 1-3).

The sandbox runs in its own process, so the server's CPU is not charged to the client. On a
2-core machine the server is usually the bottleneck (one core each), which makes wall-clock
throughput ratios close to 1.0 whatever the client costs. So every client is measured two ways
in the same run, in interleaved rounds (A, B, A, B, ...):

* wall-clock throughput (requests / s), and
* client CPU per request (``time.process_time()`` of this process, which runs only the client):
  ``capacity = 1 / cpu_per_request`` is the throughput the client could sustain with a server
  that is never the bottleneck. The targets are judged on this capacity ratio; the wall ratio is
  printed beside it.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import httpx
import orjson

from alloy_async import AlloyClient
from alloy_async._core import user_agent
from alloy_async.client import DEFAULT_API_VERSION
from alloy_async.models.bulk import ExecuteJob

from ._common import EXECUTE_PATH, Sandbox, cpu_now, execute_body

Runner = Callable[[int], Awaitable[None]]


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
            f"{self.name:<28} {self.requests:>7} req  {self.rps:>8,.0f} req/s wall  "
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
    # The same pool settings as AiohttpTransport, so only the layers above differ.
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=0, keepalive_timeout=30.0)
    return aiohttp.ClientSession(connector=connector, skip_auto_headers=("User-Agent",))


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


async def run_all(sb: Sandbox, quick: bool) -> dict[str, Any]:
    rounds = 2 if quick else 4
    out: dict[str, Any] = {}

    # 1. actions.execute vs raw aiohttp, concurrency 64 --------------------------------------
    conc = 64
    alloy = AlloyClient(api_key=sb.api_key, base_url=sb.url, max_connections=100)
    raw = _session(100)
    try:
        n1 = 1500 if quick else 6000
        m = await _compare(
            sb,
            {"raw aiohttp (conc 64)": raw_runner(raw, sb, conc),
             "SDK execute (conc 64)": sdk_runner(alloy, sb, conc)},
            {"raw aiohttp (conc 64)": n1, "SDK execute (conc 64)": n1},
            rounds,
        )  # fmt: skip
        raw_m, sdk_m = m["raw aiohttp (conc 64)"], m["SDK execute (conc 64)"]
        out["execute_vs_raw"] = {
            "measures": [raw_m, sdk_m],
            "capacity_ratio": sdk_m.capacity / raw_m.capacity,
            "wall_ratio": sdk_m.rps / raw_m.rps,
        }

        # 3. SDK vs httpx, concurrency 64 ------------------------------------------------------
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
        hx_m, sdk_m = m["httpx (conc 64)"], m["SDK execute (conc 64) "]
        out["execute_vs_httpx"] = {
            "measures": [hx_m, sdk_m],
            "capacity_ratio": sdk_m.capacity / hx_m.capacity,
            "wall_ratio": sdk_m.rps / hx_m.rps,
        }
    finally:
        await alloy.aclose()
        await raw.close()

    # 2. execute_many vs gather + semaphore, concurrency 256 -----------------------------------
    conc = 256
    alloy = AlloyClient(api_key=sb.api_key, base_url=sb.url, max_connections=conc)
    raw = _session(conc)
    try:
        n2 = 4000 if quick else 20000
        m = await _compare(
            sb,
            {"gather+semaphore (conc 256)": gather_runner(raw, sb, conc),
             "SDK execute_many (conc 256)": sdk_many_runner(alloy, sb, conc)},
            {"gather+semaphore (conc 256)": n2, "SDK execute_many (conc 256)": n2},
            rounds,
        )  # fmt: skip
    finally:
        await alloy.aclose()
        await raw.close()
    g_m, e_m = m["gather+semaphore (conc 256)"], m["SDK execute_many (conc 256)"]
    out["many_vs_gather"] = {
        "measures": [g_m, e_m],
        "capacity_ratio": e_m.capacity / g_m.capacity,
        "wall_ratio": e_m.rps / g_m.rps,
    }
    return out
