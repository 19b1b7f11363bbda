"""In-process ``actions.execute`` through FakeTransport vs a bare round trip (benchmark 4).

The handler returns one canned :class:`Response`, so no network and no server is involved. The
bare round trip is what any client has to do for the same call without the SDK: build the body
dict, ``orjson.dumps`` it, await the same handler, ``orjson.loads`` the answer and build the
result with ``_convert.execution_result``. Rounds are interleaved (bare, SDK, SDK, bare, ...).
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import orjson

from alloy_async import AlloyClient
from alloy_async._convert import execution_result
from alloy_async._http import Request, Response
from alloy_async.transports.fake import FakeTransport

CANNED = Response(
    200,
    {"content-type": "application/json", "x-request-id": "req_00000001"},
    orjson.dumps({"success": True, "result": {"id": "msg_1", "status": "sent"}}),
)


async def handler(request: Request) -> Response:
    return CANNED


async def _sdk(alloy: AlloyClient, n: int) -> None:
    execute = alloy.actions.execute
    for i in range(n):
        await execute(
            "sendgrid",
            "sendEmail",
            credential_id="cred_1",
            user_id="user_1",
            request_body={"to": f"u{i}@x.io", "subject": "hi"},
        )


async def _bare(n: int) -> None:
    for i in range(n):
        body = orjson.dumps(
            {"credentialId": "cred_1", "requestBody": {"to": f"u{i}@x.io", "subject": "hi"}}
        )
        response = await handler(body)  # type: ignore[arg-type]
        execution_result(
            orjson.loads(response.body),
            status_code=response.status,
            request_id=response.request_id,
        )


async def run(quick: bool) -> dict[str, Any]:
    n, rounds = (20_000, 4) if quick else (100_000, 6)
    alloy = AlloyClient(
        api_key="sk_bench",
        base_url="http://127.0.0.1:9",
        transport=FakeTransport(handler, record=False),
    )
    await _sdk(alloy, 2000)
    await _bare(2000)
    totals = {"sdk": 0.0, "bare": 0.0}
    for r in range(rounds):
        order = ("bare", "sdk") if r % 2 == 0 else ("sdk", "bare")
        for name in order:
            gc.collect()
            t0 = time.perf_counter()
            await (_sdk(alloy, n) if name == "sdk" else _bare(n))
            totals[name] += time.perf_counter() - t0
    await alloy.aclose()
    calls = n * rounds
    sdk_us, bare_us = 1e6 * totals["sdk"] / calls, 1e6 * totals["bare"] / calls
    return {"calls": calls, "sdk_us": sdk_us, "bare_us": bare_us, "ratio": sdk_us / bare_us}


if __name__ == "__main__":
    print(asyncio.run(run(quick=True)))
