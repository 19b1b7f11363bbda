"""AiohttpTransport against a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from net_helpers import serve

from alloy_async import (
    AlloyClient,
    APIConnectionError,
    APITimeoutError,
    NotFoundError,
    OutcomeUnknownError,
    ResponseTooLargeError,
)
from alloy_async.transports import AiohttpTransport

KEY = "sk_test_aiohttp_0123456789"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Server:
    """A loopback server whose single route runs a swappable handler and counts hits."""

    def __init__(self) -> None:
        self.hits = 0
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self.handler: Handler = self.ok
        self.release = asyncio.Event()

    async def ok(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"ok": True, "path": request.path}, headers={"x-request-id": "r1"})

    async def route(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        self.headers.append(dict(request.headers))
        return await self.handler(request)


@pytest.fixture
async def server() -> AsyncIterator[tuple[Server, str]]:
    srv = Server()
    async with serve(srv.route, srv.release) as base:
        yield srv, base


def make_client(base: str, **kwargs: object) -> AlloyClient:
    kwargs.setdefault("max_retries", 0)
    return AlloyClient(KEY, base_url=base, **kwargs)  # type: ignore[arg-type]


async def test_success_round_trip(server: tuple[Server, str]) -> None:
    """A GET reaches the server with our headers and returns the JSON body."""
    srv, base = server
    async with make_client(base) as alloy:
        body = await alloy.request("GET", "/users/{id}", path_params={"id": "a/b"})
    assert body == {"ok": True, "path": "/users/a/b"}  # the server decodes %2F in request.path
    seen = srv.headers[0]
    assert seen["Authorization"] == f"Bearer {KEY}"
    assert seen["x-api-version"] == "2025-09"
    assert seen["User-Agent"].startswith("alloy-async/")


async def test_status_errors_are_typed(server: tuple[Server, str]) -> None:
    """A 404 JSON answer becomes NotFoundError with the request id."""
    srv, base = server

    async def not_found(request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {"error": {"code": "ACTION_NOT_FOUND", "message": "Action not found"}},
            status=404,
            headers={"x-request-id": "req_9"},
        )

    srv.handler = not_found
    async with make_client(base) as alloy:
        with pytest.raises(NotFoundError) as info:
            await alloy.request("GET", "/connectors/slack/actions/x")
    assert info.value.code == "ACTION_NOT_FOUND"
    assert info.value.request_id == "req_9"


async def drop_before_body(request: web.Request) -> web.StreamResponse:
    assert request.transport is not None
    request.transport.close()
    raise asyncio.CancelledError


async def drop_after_body(request: web.Request) -> web.StreamResponse:
    await request.read()
    assert request.transport is not None
    request.transport.close()
    raise asyncio.CancelledError


@pytest.mark.parametrize("dropper", [drop_before_body, drop_after_body])
async def test_dropped_post_is_outcome_unknown_and_not_resent(
    server: tuple[Server, str], dropper: Handler
) -> None:
    """A POST whose connection drops after it was written ends OutcomeUnknownError, sent once."""
    srv, base = server
    srv.handler = dropper
    async with make_client(base, max_retries=3) as alloy:
        with pytest.raises(OutcomeUnknownError):
            await alloy.request(
                "POST", "/connectors/s/actions/a/execute", json={"credentialId": "c"}
            )
    assert srv.hits == 1


async def test_dropped_get_is_retried(server: tuple[Server, str]) -> None:
    """A GET whose connection drops is retried and then succeeds."""
    srv, base = server
    calls = 0

    async def flaky(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        if calls == 1:
            return await drop_after_body(request)
        return await srv.ok(request)

    srv.handler = flaky
    policy_client = make_client(base, max_retries=2)
    async with policy_client as alloy:
        assert (await alloy.request("GET", "/connectors"))["ok"] is True
    assert srv.hits == 2


async def test_slow_server_times_out(server: tuple[Server, str]) -> None:
    """A read timeout: GET raises APITimeoutError, POST raises OutcomeUnknownError."""
    srv, base = server

    async def slow(request: web.Request) -> web.StreamResponse:
        await srv.release.wait()
        return await srv.ok(request)

    srv.handler = slow
    async with make_client(base, timeout=0.2) as alloy:
        with pytest.raises(APITimeoutError) as info:
            await alloy.request("GET", "/connectors")
        assert info.value.sent is True
        with pytest.raises(OutcomeUnknownError):
            await alloy.request("POST", "/connectors/s/actions/a/execute", json={})
    assert srv.hits == 2


async def test_trickling_server_is_cut_by_the_timeout(server: tuple[Server, str]) -> None:
    """A server sending one byte at a time cannot hold a call past its timeout."""
    srv, base = server

    async def trickle(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        for _ in range(1000):
            await resp.write(b" ")
            await asyncio.sleep(0.05)
        return resp

    srv.handler = trickle
    loop = asyncio.get_running_loop()
    async with make_client(base, timeout=0.5) as alloy:
        start = loop.time()
        with pytest.raises(APITimeoutError):
            await alloy.request("GET", "/slow")
        assert loop.time() - start < 5


async def test_connection_refused_is_not_outcome_unknown() -> None:
    """Nobody listening: APIConnectionError (never sent), retried, never OutcomeUnknownError."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with make_client(f"http://127.0.0.1:{port}", max_retries=1) as alloy:
        alloy_fast = alloy.with_options(retry=alloy.retry.__class__(max_retries=1, backoff_base=0))
        with pytest.raises(APIConnectionError) as info:
            await alloy_fast.request("POST", "/x", json={})
    assert not isinstance(info.value, OutcomeUnknownError)


async def test_response_size_cap(server: tuple[Server, str]) -> None:
    """Answers over max_response_bytes raise ResponseTooLargeError, with or without a length."""
    srv, base = server
    big = b"x" * 300_000

    async def large(request: web.Request) -> web.StreamResponse:
        if request.path == "/chunked":
            resp = web.StreamResponse()
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            for i in range(0, len(big), 10_000):
                await resp.write(big[i : i + 10_000])
            await resp.write_eof()
            return resp
        return web.Response(body=big)

    srv.handler = large
    transport = AiohttpTransport(max_response_bytes=100_000)
    async with AlloyClient(KEY, base_url=base, transport=transport, max_retries=0) as alloy:
        for path in ("/sized", "/chunked"):
            with pytest.raises(ResponseTooLargeError):
                await alloy.request("GET", path)
    await transport.aclose()


async def test_lifecycle_leaves_nothing_behind(server: tuple[Server, str]) -> None:
    """After aclose: session closed, no extra tasks; the caller's own session stays open."""
    _srv, base = server
    before = {t for t in asyncio.all_tasks() if not t.done()}
    alloy = make_client(base)
    await asyncio.gather(*(alloy.request("GET", f"/n/{i}") for i in range(20)))
    transport = alloy.transport
    assert isinstance(transport, AiohttpTransport)
    session = transport._session
    assert session is not None
    await alloy.aclose()
    assert session.closed
    await asyncio.sleep(0)
    after = {t for t in asyncio.all_tasks() if not t.done()}
    assert after <= before

    async with aiohttp.ClientSession() as own:
        t = AiohttpTransport(session=own)
        async with AlloyClient(KEY, base_url=base, transport=t) as alloy2:
            await alloy2.request("GET", "/x")
        await t.aclose()
        assert not own.closed


async def test_answer_headers_read_in_any_case_and_list_in_lower_case(
    server: tuple[Server, str],
) -> None:
    """The transport wraps the answer's headers instead of copying them: lookups in any case,
    names in lower case (as Response documents), equal to the plain dict they stand for."""
    from alloy_async._http import Request

    srv, url = server

    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"{}", headers={"X-Request-Id": "r9", "X-Custom-Thing": "v"})

    srv.handler = answer
    transport = AiohttpTransport()
    try:
        response = await transport.send(Request("GET", url + "/h", {}, None, None, "/h"))
    finally:
        await transport.aclose()
    headers = response.headers
    assert response.request_id == "r9"
    assert headers["x-custom-thing"] == headers["X-CUSTOM-THING"] == "v"
    assert "x-request-id" in headers and "nope" not in headers
    assert headers.get("nope", "default") == "default"
    names = list(headers)
    assert "x-custom-thing" in names and all(name == name.lower() for name in names)
    assert len(names) == len(headers) == len(set(names))
    assert dict(headers) == {name: headers[name] for name in names}
    assert headers == dict(headers)
