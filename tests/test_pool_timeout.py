"""Time spent waiting for a pooled connection, or connecting, is never "sent" (issue 9, item 11).

With ``max_connections=1`` a call that times out while it waits for the only connection never
reached the server: it must end as (or be retried after) ``APITimeoutError(sent=False)``, never
as :class:`OutcomeUnknownError`. Once the request is written, a timeout is still "sent".

Everything runs over real HTTP on 127.0.0.1 with the real aiohttp transport. Slow handlers wait
on an event with a time limit, so that the teardown can release them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket
import time
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from bounds import within
from net_helpers import serve

from alloy_async import (
    AlloyClient,
    APITimeoutError,
    ExecutionResult,
    OutcomeUnknownError,
    RetryPolicy,
)
from alloy_async._core import CallStats
from alloy_async._http import Request
from alloy_async.transports import AiohttpTransport

SLOW = 1.5  # seconds the slow handler takes: longer than the 1 s timeout
#: How far past its timeout a call may end before the test calls it stuck. Only a timeout that
#: is not enforced gets near it; the timing of a correct call is not judged.
SLACK = 30.0
#: A request with this ``x-hold`` holds its connection until ``release`` (this is only a cap).
HOLD = 2 * SLACK

T = TypeVar("T")


class Server:
    """Counts requests, remembers which call (``x-call``) each one came from, answers slowly
    (after ``x-hold`` seconds if given, else SLOW), or at once when ``release`` is set."""

    def __init__(self) -> None:
        self.hits = 0
        self.calls: list[str] = []
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()  # set at teardown: slow handlers end at once

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        self.calls.append(request.headers.get("x-call", "?"))
        self.arrived.set()
        await request.read()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.release.wait(), float(request.headers.get("x-hold", SLOW)))
        return web.json_response({"success": True, "result": {"ok": True}})


@pytest.fixture
async def server() -> AsyncIterator[tuple[Server, str]]:
    srv = Server()
    async with serve(srv.handle, srv.release) as base:
        yield srv, base


async def execute(alloy: AlloyClient, call: str, stats: CallStats | None = None) -> ExecutionResult:
    return await alloy.actions.execute(
        "sendgrid",
        "sendEmail",
        credential_id="c",
        user_id="u",
        extra_headers={"x-call": call},
        stats=stats,
    )


def check_outcomes(srv: Server, results: dict[str, Any]) -> None:
    """Judge each call by what the server saw, never by what the client believes."""
    unknown = [c for c, r in results.items() if isinstance(r, OutcomeUnknownError)]
    assert len(unknown) <= srv.hits, (results, srv.calls)
    for call, result in results.items():
        if call not in srv.calls:  # only pool waits: never sent, so never "unknown"
            assert not isinstance(result, OutcomeUnknownError), (call, result, srv.calls)
        if isinstance(result, APITimeoutError):  # a POST that was sent ends OutcomeUnknownError
            assert result.sent is False, (call, result)
        assert isinstance(result, (ExecutionResult, APITimeoutError, OutcomeUnknownError)), result


async def test_two_executes_on_one_connection_issue_9(server: tuple[Server, str]) -> None:
    """The reported case: max_connections=1, timeout=1, a 1.5 s server, two concurrent
    executes. Before the fix both ended OutcomeUnknownError but the server saw one request."""
    srv, base = server
    async with AlloyClient(
        api_key="k",
        base_url=base,
        max_connections=1,
        timeout=1,
        retry=RetryPolicy(max_retries=1, backoff_base=0.01),
    ) as alloy:
        outcomes = await asyncio.gather(
            execute(alloy, "a"), execute(alloy, "b"), return_exceptions=True
        )
    check_outcomes(srv, dict(zip("ab", outcomes, strict=True)))
    # The call that waited for the connection was retried: the server saw both calls.
    assert sorted(srv.calls) == ["a", "b"], srv.calls


async def test_two_executes_without_retries(server: tuple[Server, str]) -> None:
    """Same, with retries off: the call that only waited for the pool ends as a never-sent
    APITimeoutError, so there is never more OutcomeUnknownError than requests received."""
    srv, base = server
    async with AlloyClient(
        api_key="k", base_url=base, max_connections=1, timeout=1, max_retries=0
    ) as alloy:
        outcomes = await asyncio.gather(
            execute(alloy, "a"), execute(alloy, "b"), return_exceptions=True
        )
    check_outcomes(srv, dict(zip("ab", outcomes, strict=True)))


async def test_a_pool_wait_timeout_is_retried_even_for_a_post(server: tuple[Server, str]) -> None:
    """Deterministic: "a" holds the only connection (timeout 3 s, the server answers in 1.5 s)
    for the whole 1 s that "b" may wait, so "b"'s first attempt cannot have been sent; it is
    retried, gets the connection once "a" is done and is sent exactly once."""
    srv, base = server
    async with AlloyClient(
        api_key="k",
        base_url=base,
        max_connections=1,
        timeout=1,
        retry=RetryPolicy(max_retries=1, backoff_base=0.01),
    ) as alloy:
        first = asyncio.create_task(execute(alloy.with_options(timeout=3), "a"))
        await srv.arrived.wait()  # "a" now holds the only connection
        second = await asyncio.gather(execute(alloy, "b"), return_exceptions=True)
        a = await first
    assert a.success is True
    b = second[0]
    check_outcomes(srv, {"a": a, "b": b})
    # "b" was retried after its pool wait, and sent once, on the connection "a" gave back.
    assert srv.calls == ["a", "b"], srv.calls
    assert isinstance(b, (ExecutionResult, OutcomeUnknownError)), b


async def test_pool_wait_timeout_at_the_transport_is_not_sent(
    server: tuple[Server, str],
) -> None:
    """At the transport: a request that times out waiting for the pool raises
    APITimeoutError(sent=False) after its timeout, while the only connection is still held;
    one that was written raises sent=True.

    Catches: a timeout that does not cover the wait for a pooled connection."""
    srv, base = server
    transport = AiohttpTransport(max_connections=1)
    try:
        held = Request(
            method="POST",
            url=f"{base}/hold",
            headers={"x-hold": str(HOLD)},
            body=b"{}",
            timeout=2 * HOLD,
        )
        holder = asyncio.create_task(transport.send(held))
        await srv.arrived.wait()
        budget = 0.3
        waiting = Request(method="POST", url=f"{base}/wait", headers={}, body=b"{}", timeout=budget)
        start = time.monotonic()
        with pytest.raises(APITimeoutError) as info:
            await within(budget + SLACK, "a request waiting for the pool", transport.send(waiting))
        assert time.monotonic() - start >= budget - 0.01  # its whole budget, not less
        assert info.value.sent is False
        assert not holder.done()  # it ended while the only connection was still taken
        assert srv.hits == 1
        # The request that was written and then timed out is "sent".
        srv.arrived.clear()
        sent = Request(method="POST", url=f"{base}/sent", headers={}, body=b"{}", timeout=0.3)
        srv.release.set()
        await holder  # gives the connection back
        srv.release.clear()
        with pytest.raises(APITimeoutError) as info:
            await transport.send(sent)
        assert info.value.sent is True
        assert srv.hits == 2
    finally:
        srv.release.set()
        await transport.aclose()


async def test_pool_wait_with_a_callers_session_is_not_sent(server: tuple[Server, str]) -> None:
    """With a caller's own session (whose connector the transport cannot instrument), a pool
    wait still ends as never-sent: aiohttp's connect timeout is set to fire before the total."""
    srv, base = server
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
    transport = AiohttpTransport(session=session)
    try:
        held = Request(method="POST", url=f"{base}/hold", headers={}, body=b"{}", timeout=5.0)
        holder = asyncio.create_task(transport.send(held))
        await srv.arrived.wait()
        waiting = Request(method="POST", url=f"{base}/wait", headers={}, body=b"{}", timeout=0.3)
        with pytest.raises(APITimeoutError) as info:
            await transport.send(waiting)
        assert info.value.sent is False
        assert srv.hits == 1
        srv.release.set()
        await holder
    finally:
        srv.release.set()
        await transport.aclose()
        await session.close()


class HangingResolver(AbstractResolver):
    """A DNS resolver that never answers: the attempt stays in its connecting phase."""

    def __init__(self) -> None:
        self.started = 0

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.started += 1
        await asyncio.Event().wait()  # until the attempt's timeout cancels it
        raise AssertionError("unreachable")

    async def close(self) -> None:
        return None


@pytest.mark.parametrize("budget", [0.2, 0.5])
async def test_timeout_while_connecting_is_not_sent(budget: float) -> None:
    """A timeout while the connection is being made (here: name resolution that never ends)
    is APITimeoutError(sent=False), so even an execute is retried, and never "unknown".

    Catches: a timeout that does not cover connecting (the call then never ends)."""
    resolver = HangingResolver()
    transport = AiohttpTransport(connector_kwargs={"resolver": resolver})
    stats = CallStats()
    try:
        async with AlloyClient(
            api_key="k",
            base_url="http://localhost:9",
            transport=transport,
            timeout=budget,
            retry=RetryPolicy(max_retries=1, backoff_base=0.01),
        ) as alloy:
            start = time.monotonic()
            with pytest.raises(APITimeoutError) as info:
                await within(
                    2 * budget + SLACK, "an execute while connecting", execute(alloy, "a", stats)
                )
            elapsed = time.monotonic() - start
    finally:
        await transport.aclose()
    assert info.value.sent is False
    assert resolver.started >= 1
    assert stats.attempts == 2  # retried once: never sent, so safe even for a POST
    assert elapsed >= 2 * budget - 0.01, elapsed  # each attempt had its whole budget


def test_default_keepalive_is_below_common_server_idle_timeouts() -> None:
    """An idle pooled connection is dropped before servers usually close theirs."""
    default = inspect.signature(AiohttpTransport).parameters["keepalive_timeout"].default
    assert 0 < default <= 5


def test_translation_tells_connecting_from_sent() -> None:
    """Unit: a timeout whose cancellation came out of the connector's connect() (as aiohttp
    raises it: ``from`` the cancellation, or ``from None`` in older versions) is never sent;
    the same timeout without the connector's mark is "maybe sent"."""
    from alloy_async.transports import aiohttp as module

    request = Request(method="POST", url="http://127.0.0.1:1/x", path="/x", timeout=1.0)

    def timeout_from(cancel: BaseException, *, keep_cause: bool) -> TimeoutError:
        try:
            try:
                raise cancel
            except asyncio.CancelledError as exc:
                if keep_cause:
                    raise TimeoutError from exc
                raise TimeoutError from None
        except TimeoutError as timeout:
            return timeout

    marked = asyncio.CancelledError()
    setattr(marked, module._BEFORE_SENDING, True)
    for keep_cause in (True, False):
        exc = timeout_from(marked, keep_cause=keep_cause)
        error = module._translate(exc, request, module._raised_before_sending(exc))
        assert isinstance(error, APITimeoutError) and error.sent is False
        exc = timeout_from(asyncio.CancelledError(), keep_cause=keep_cause)
        error = module._translate(exc, request, module._raised_before_sending(exc))
        assert isinstance(error, APITimeoutError) and error.sent is True


async def test_a_deadline_spent_waiting_for_the_pool_is_not_sent(
    server: tuple[Server, str],
) -> None:
    """The same with a call deadline instead of a timeout: the deadline runs out while "b"
    waits for the only connection, so "b" never reached the server and is not "unknown"."""
    srv, base = server
    async with AlloyClient(
        api_key="k",
        base_url=base,
        max_connections=1,
        timeout=30,
        retry=RetryPolicy(max_retries=0, deadline=1.0),
    ) as alloy:
        outcomes = await asyncio.gather(
            execute(alloy, "a"), execute(alloy, "b"), return_exceptions=True
        )
    results = dict(zip("ab", outcomes, strict=True))
    check_outcomes(srv, results)
    assert srv.calls == ["a"], srv.calls
    assert isinstance(results["a"], OutcomeUnknownError)  # sent, then the deadline
    assert isinstance(results["b"], APITimeoutError) and results["b"].sent is False
