"""Where the SDK's client CPU goes over HTTP, layer by layer (issue 13).

``python -m benchmarks.bench_layers [--requests N] [--rounds R]``

Against the light server (its own process), every variant sends the same POSTs; each one adds
one SDK layer to the one before, so the differences between rows are what each layer costs
per request over a real socket (which is about three times its in-process cost on a small
shared machine: the same Python runs with the caches full of aiohttp, asyncio and the kernel).

Concurrency 64 (P1's setting), 64 long-lived tasks:

1. ``raw``: aiohttp ``session.post`` + ``orjson`` by hand (P1's baseline);
2. ``+ build``: the SDK builds the request (``Actions._execute_request``), aiohttp sends it;
3. ``+ transport``: the SDK's :class:`AiohttpTransport` sends it;
4. ``+ result``: the answer decoded and the :class:`ExecutionResult` built as ``execute`` does;
5. ``execute``: ``actions.execute`` itself (the retry pipeline, the call's own frame).

Concurrency 256 (P2's setting): a raw aiohttp pool of 256 tasks, a pool of 256 tasks calling
``execute`` (the SDK without the engine), and ``execute_many`` with its defaults and without the
adaptive limiter: the engine's cost is ``execute_many`` minus the pool calling ``execute``.

Rounds are interleaved (A, B, C, ..., then reversed); client CPU per request is
``time.process_time()`` of this process, which runs only the client.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import orjson

from alloy_async import AlloyClient
from alloy_async._convert import execution_result
from alloy_async._wire import decode_json
from alloy_async.models.bulk import ExecuteJob

from ._common import EXECUTE_PATH, Sandbox, execute_body, light_process
from .bench_http import _session, _workers, raw_headers, raw_runner, sdk_runner

Runner = Callable[[int], Awaitable[None]]


def _p1_runners(alloy: AlloyClient, session: Any, sb: Sandbox, conc: int) -> dict[str, Runner]:
    actions = alloy.actions
    transport = alloy._requester.transport
    url = sb.url + EXECUTE_PATH
    headers = raw_headers(sb)

    def build(i: int) -> Any:
        return actions._execute_request(
            "sendgrid", "sendEmail", sb.credential_id, sb.user_id,
            {"to": f"u{i}@x.io", "subject": "hi"}, None, None, None,
        )  # fmt: skip

    async def raw(i: int) -> None:
        async with session.post(url, data=orjson.dumps(execute_body(sb, i)), headers=headers) as r:
            body = orjson.loads(await r.read())
            assert r.status == 200 and body["success"]

    async def plus_build(i: int) -> None:
        request = build(i)
        async with session.post(request.url, data=request.body, headers=dict(request.headers)) as r:
            body = orjson.loads(await r.read())
            assert r.status == 200 and body["success"]

    async def plus_transport(i: int) -> None:
        response = await transport.send(build(i))
        assert response.status == 200 and orjson.loads(response.body)["success"]

    async def plus_result(i: int) -> None:
        request = build(i)
        response = await transport.send(request)
        result = execution_result(
            decode_json(response, request),
            status_code=response.status,
            request_id=response.request_id,
        )
        assert result.success

    def pool(one: Callable[[int], Awaitable[None]]) -> Runner:
        return lambda n: _workers(conc, n, one)

    return {
        "1. raw aiohttp": pool(raw),
        "2. + SDK request build": pool(plus_build),
        "3. + SDK transport": pool(plus_transport),
        "4. + decode and result": pool(plus_result),
        "5. actions.execute": sdk_runner(alloy, sb, conc),
    }


def _p2_runners(alloy: AlloyClient, session: Any, sb: Sandbox, conc: int) -> dict[str, Runner]:
    def jobs(n: int) -> Iterator[ExecuteJob]:
        for i in range(n):
            yield ExecuteJob(
                "sendgrid", "sendEmail", sb.credential_id, user_id=sb.user_id,
                request_body={"to": f"u{i}@x.io", "subject": "hi"},
            )  # fmt: skip

    def many(**options: Any) -> Runner:
        async def run(n: int) -> None:
            ok = 0
            async with alloy.actions.execute_many(jobs(n), concurrency=conc, **options) as bulk:
                async for outcome in bulk:
                    ok += outcome.ok
            assert ok == n, bulk.report.summary()

        return run

    return {
        "a. raw aiohttp pool": raw_runner(session, sb, conc),
        "b. pool calling execute": sdk_runner(alloy, sb, conc),
        "c. execute_many, defaults": many(),
        "d. execute_many, adaptive=False": many(adaptive=False),
    }


async def _measure(runners: dict[str, Runner], n: int, rounds: int) -> dict[str, float]:
    cpu = dict.fromkeys(runners, 0.0)
    for run in runners.values():  # warm-up: connections, caches
        await run(500)
    names = list(runners)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            gc.collect()
            c0 = time.process_time()
            await runners[name](n)
            cpu[name] += time.process_time() - c0
    return {name: 1e6 * seconds / (n * rounds) for name, seconds in cpu.items()}


def _print(title: str, us: dict[str, float]) -> None:
    print(title)
    previous = None
    for name, value in us.items():
        step = "" if previous is None else f"  ({value - previous:+5.1f})"
        print(f"  {name:36} {value:6.1f} us/req{step}")
        previous = value


async def run(n: int, rounds: int) -> dict[str, dict[str, float]]:
    """Client CPU per request of every variant, in microseconds."""
    out: dict[str, dict[str, float]] = {}
    with light_process() as sb:
        for part, conc, make in (("p1", 64, _p1_runners), ("p2", 256, _p2_runners)):
            alloy = AlloyClient(api_key=sb.api_key, base_url=sb.url, max_connections=conc)
            session = _session(conc)
            try:
                out[part] = await _measure(make(alloy, session, sb, conc), n, rounds)
            finally:
                await alloy.aclose()
                await session.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_layers")
    parser.add_argument("--requests", type=int, default=24_000, help="per variant and round")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    got = asyncio.run(run(args.requests, args.rounds))
    _print("concurrency 64 (P1), client CPU per request, each row adding one layer:", got["p1"])
    _print("concurrency 256 (P2):", got["p2"])


if __name__ == "__main__":
    main()
