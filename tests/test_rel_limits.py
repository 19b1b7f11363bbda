"""Limits under load: oversized answers are refused without buffering them, and a stuck
server cannot hold a call, or an ``execute_many`` worker, past its deadline.

Everything runs over real HTTP on 127.0.0.1 with the real aiohttp transport.
"""

from __future__ import annotations

import asyncio
import gzip
import math
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import RawTestServer
from bounds import within

from alloy_async import (
    AlloyClient,
    APITimeoutError,
    OutcomeUnknownError,
    ResponseTooLargeError,
    RetryPolicy,
)
from alloy_async.models import ExecuteJob
from alloy_async.transports import AiohttpTransport

KEY = "sk_test_limits_0123456789"
CAP = 256 * 1024
CHUNK = b"x" * 65536
#: How far past its deadline a call may end before the test calls it stuck. Only a hang (a
#: deadline not enforced: the stuck server never answers) gets anywhere near it, so a slow,
#: busy machine never does; the timing of a correct call is not judged.
SLACK = 30.0


class Server:
    """One loopback server; the path picks the behaviour."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.streamed: Counter[str] = Counter()  # bytes actually written per path kind
        self.release = asyncio.Event()

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        kinds = ("small", "sized", "endless", "gzip", "stuck", "trickle")
        kind = next((k for k in request.path.split("/") if k in kinds), "other")
        self.hits[kind] += 1
        await request.read()
        if kind == "small":
            return web.json_response({"ok": True, "pad": "y" * 1000})
        if kind == "sized":  # Content-Length says it is too big
            return web.Response(body=b"z" * (CAP + 1), content_type="application/json")
        if kind == "endless":  # chunked, never ends: only a cap stops it
            resp = web.StreamResponse()
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            try:
                while True:
                    await resp.write(CHUNK)
                    self.streamed[kind] += len(CHUNK)
            except (ConnectionError, RuntimeError):
                return resp
        if kind == "gzip":  # 40 KB on the wire, 40 MB once decompressed
            body = gzip.compress(b"0" * (40 * 1024 * 1024), 9)
            return web.Response(
                body=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
            )
        if kind == "stuck":
            await self.release.wait()
            return web.json_response({})
        if kind == "trickle":
            resp = web.StreamResponse()
            await resp.prepare(request)
            for _ in range(10_000):
                await resp.write(b" ")
                await asyncio.sleep(0.05)
            return resp
        return web.json_response({}, status=404)


@pytest.fixture
async def server() -> AsyncIterator[tuple[Server, str]]:
    srv = Server()
    raw = RawTestServer(srv.handle, host="127.0.0.1")
    await raw.start_server()
    try:
        yield srv, f"http://127.0.0.1:{raw.port}"
    finally:
        srv.release.set()
        await raw.close()


async def test_oversized_answers_are_refused_under_load(
    server: tuple[Server, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """300 concurrent calls mixing small, sized-too-big and endless chunked answers: the small
    ones succeed, the others raise ResponseTooLargeError after reading at most about the cap.

    Catches: a streamed answer read without counting it against the cap (endless answers then
    end by the 30 s default timeout, as APITimeoutError, after megabytes)."""
    srv, base = server
    transport = AiohttpTransport(max_response_bytes=CAP, max_connections=32)
    kinds = ["small", "sized", "endless"] * 100
    try:
        async with AlloyClient(KEY, base_url=base, transport=transport, max_retries=0) as alloy:
            start = time.monotonic()
            results = await asyncio.gather(
                *(alloy.request("GET", f"/{k}/{i}") for i, k in enumerate(kinds)),
                return_exceptions=True,
            )
            elapsed = time.monotonic() - start
    finally:
        await transport.aclose()
    by_kind: dict[str, Counter[str]] = {}
    for kind, result in zip(kinds, results, strict=True):
        by_kind.setdefault(kind, Counter())[type(result).__name__] += 1
    assert by_kind == {
        "small": Counter(dict=100),
        "sized": Counter(ResponseTooLargeError=100),
        "endless": Counter(ResponseTooLargeError=100),
    }
    # An endless answer is cut soon after the cap (socket buffers hold a few chunks more).
    assert srv.streamed["endless"] / 100 < 40 * CAP
    with capsys.disabled():
        print(
            f"\n[reliability] limits: 300 concurrent answers under a {CAP} B cap in "
            f"{elapsed:.1f} s, endless answers cut after {srv.streamed['endless'] // 100} B each"
        )


async def test_oversized_answer_to_a_post_is_not_resent(server: tuple[Server, str]) -> None:
    """A POST whose answer is too large raises ResponseTooLargeError once: it is never re-sent
    (the action ran; the answer was refused)."""
    srv, base = server
    transport = AiohttpTransport(max_response_bytes=CAP)
    try:
        async with AlloyClient(KEY, base_url=base, transport=transport, max_retries=3) as alloy:
            for kind in ("sized", "endless"):
                with pytest.raises(ResponseTooLargeError, match="max_response_bytes"):
                    await alloy.request("POST", f"/{kind}/x", json={"a": 1})
    finally:
        await transport.aclose()
    assert (srv.hits["sized"], srv.hits["endless"]) == (1, 1)


async def test_compressed_answer_is_capped_after_decompression(
    server: tuple[Server, str],
) -> None:
    """The cap counts the bytes the SDK would hold, i.e. after Content-Encoding is undone."""
    _, base = server
    transport = AiohttpTransport(max_response_bytes=CAP)
    try:
        async with AlloyClient(KEY, base_url=base, transport=transport, max_retries=0) as alloy:
            with pytest.raises(ResponseTooLargeError):
                await alloy.request("GET", "/gzip/x")
    finally:
        await transport.aclose()


@pytest.mark.parametrize(
    ("method", "kind", "error"),
    [
        ("GET", "stuck", APITimeoutError),
        ("GET", "trickle", APITimeoutError),
        ("POST", "stuck", OutcomeUnknownError),
        ("POST", "trickle", OutcomeUnknownError),
    ],
)
async def test_deadline_bounds_a_call_against_a_stuck_server(
    server: tuple[Server, str], method: str, kind: str, error: type[Exception]
) -> None:
    """No per-attempt timeout at all, retries allowed: the call's deadline still ends it, not
    before it, as APITimeoutError for a GET and OutcomeUnknownError for a POST (sent once).

    Catches: an attempt sent without the call's deadline (without it the call never ends)."""
    srv, base = server
    deadline = 0.6
    async with AlloyClient(KEY, base_url=base, timeout=None, max_retries=5) as alloy:
        bounded = alloy.with_options(deadline=deadline)
        start = time.monotonic()
        with pytest.raises(error):
            await within(
                deadline + SLACK,
                f"a {method} with a {deadline} s deadline against a {kind} server",
                bounded.request(method, f"/{kind}/x", json={} if method == "POST" else None),
            )
        elapsed = time.monotonic() - start
    assert elapsed >= deadline - 0.01, elapsed  # ended by its deadline, not before
    assert srv.hits[kind] == 1


async def test_deadline_in_the_retry_policy_bounds_retries_and_waits(
    server: tuple[Server, str],
) -> None:
    """RetryPolicy.deadline: per-attempt timeouts and backoff waits together stay within it,
    judged by the attempts the server received: each takes its whole 0.2 s timeout, so no
    more than deadline / timeout of them fit (50 retries would be allowed without it).

    Catches: retries (and their waits) scheduled past the policy's deadline."""
    srv, base = server
    timeout = 0.2
    policy = RetryPolicy(max_retries=50, backoff_base=0.05, deadline=1.0)
    assert policy.deadline is not None
    async with AlloyClient(KEY, base_url=base, timeout=timeout, retry=policy) as alloy:
        with pytest.raises(APITimeoutError):
            await within(
                policy.deadline + SLACK,
                "a GET with a 1 s deadline",
                alloy.request("GET", "/stuck/x"),
            )
    fit = math.ceil(policy.deadline / timeout)  # attempts that can start before the deadline
    assert 2 <= srv.hits["stuck"] <= fit + 1, srv.hits  # several attempts, only as many as fit


async def test_stuck_server_cannot_hold_execute_many_workers(
    server: tuple[Server, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """execute_many against a server that never answers: with a per-call deadline and a run
    deadline, the run ends on time; dispatched jobs are OutcomeUnknownError (sent, maybe
    acted on), the rest are reported not dispatched; no worker is left behind.

    Catches: a call sent without its deadline (the run never ends), and a run deadline that
    does not stop dispatch (all 200 jobs are sent)."""
    srv, base = server
    before = asyncio.all_tasks()
    call_deadline, run_deadline, concurrency = 0.4, 1.0, 8
    jobs = [
        ExecuteJob("stuck", "a", "c", user_id=f"u{i % 3}", request_body={"i": i})
        for i in range(200)
    ]

    async def consume(run: Any) -> list[Any]:
        return [o async for o in run]

    async with AlloyClient(KEY, base_url=base, timeout=None, max_retries=3) as alloy:
        bounded = alloy.with_options(deadline=call_deadline)
        start = time.monotonic()
        run = bounded.actions.execute_many(
            jobs, concurrency=concurrency, deadline=run_deadline, adaptive=False
        )
        outcomes: list[Any] = await within(
            run_deadline + call_deadline + SLACK,
            "execute_many against a stuck server",
            consume(run),
        )
        elapsed = time.monotonic() - start
    report = run.report
    # Stopped by its deadline, not before: the calls in flight then end by theirs.
    assert elapsed >= run_deadline - 0.01, elapsed
    # Each job holds its worker for its whole call deadline (the server never answers), so a
    # worker starts at most ceil(run_deadline / call_deadline) jobs before the run's deadline.
    assert len(outcomes) <= concurrency * math.ceil(run_deadline / call_deadline), len(outcomes)
    assert outcomes and all(isinstance(o.error, OutcomeUnknownError) for o in outcomes)
    assert report.outcome_unknown == len(outcomes) == srv.hits["stuck"]
    assert report.not_dispatched == 200 - len(outcomes)
    assert report.stopped_early and "deadline" in (report.stop_reason or "")
    assert asyncio.all_tasks() <= before | {asyncio.current_task()}
    with capsys.disabled():
        print(
            f"\n[reliability] limits: stuck server, {len(outcomes)} jobs dispatched and ended "
            f"OutcomeUnknown, {report.not_dispatched} not dispatched, run ended in {elapsed:.2f} s"
        )
