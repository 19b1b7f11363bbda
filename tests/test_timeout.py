"""``timeout=`` on every service call, and ``alloy_async.Timeout`` phase by phase (issue 24).

Over real HTTP on 127.0.0.1 with the SDK's own aiohttp transport. What was sent is judged by
the server's own count of the requests it received. Stalled handlers wait on an event that
only the teardown sets (or for a fixed ``x-hold`` when a test needs a slow answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import math
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import web
from bounds import within
from net_helpers import serve

from alloy_async import (
    AlloyClient,
    APITimeoutError,
    ConfigurationError,
    InvalidRequestError,
    OutcomeUnknownError,
    RetryPolicy,
    Timeout,
)
from alloy_async.services import Actions, Connectors, Credentials, Files, Users
from alloy_async.transports.aiohttp import _client_timeout

#: A call that ignored its timeout would run until the server's teardown: fail long before.
STUCK = 10.0


class Server:
    """Counts the requests it receives; holds each one until ``release`` (teardown), or for
    ``x-hold`` seconds when given."""

    def __init__(self) -> None:
        self.hits = 0
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        self.arrived.set()
        await request.read()
        hold = request.headers.get("x-hold")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.release.wait(), None if hold is None else float(hold))
        return web.json_response({"success": True, "userId": "u1", "responseData": {}})


@pytest.fixture
async def server() -> AsyncIterator[tuple[Server, str]]:
    srv = Server()
    async with serve(srv.handle, srv.release) as base:
        yield srv, base


def client(base: str, **kwargs: Any) -> AlloyClient:
    kwargs.setdefault("retry", RetryPolicy(max_retries=0))
    return AlloyClient(api_key="k", base_url=base, **kwargs)


async def execute(alloy: AlloyClient, **kwargs: Any) -> Any:
    return await alloy.actions.execute("slack", "send", credential_id="c", user_id="u", **kwargs)


async def test_read_timeout_on_a_get_is_retried_per_policy(server: tuple[Server, str]) -> None:
    """A GET whose answer stalls ends at its call's ``Timeout(read=)`` (the client's own
    timeout is 30 s) as a sent APITimeoutError, retried as any idempotent call.

    Catches: ``timeout=`` not handed to the request (the call runs until STUCK), or ``read``
    not mapped to aiohttp's ``sock_read``."""
    srv, base = server
    async with client(base, retry=RetryPolicy(max_retries=1, backoff_base=0.01)) as alloy:
        with pytest.raises(APITimeoutError) as info:
            await within(STUCK, "a stalled GET", alloy.users.get("u1", timeout=Timeout(read=0.2)))
    assert info.value.sent is True
    assert srv.hits == 2  # the first attempt and its one retry


@pytest.mark.parametrize("budget", [0.3, Timeout(read=0.3)])
async def test_a_stalled_execute_is_never_retried(
    server: tuple[Server, str], budget: float | Timeout
) -> None:
    """An execute that was sent and got no answer within its ``timeout=`` ends as "maybe
    acted" and is never sent again, whatever the retry budget.

    Catches: a read timeout classified as never sent (the server would count 4)."""
    srv, base = server
    async with client(base, retry=RetryPolicy(max_retries=3, backoff_base=0.01)) as alloy:
        with pytest.raises((APITimeoutError, OutcomeUnknownError)) as info:
            await within(STUCK, "a stalled execute", execute(alloy, timeout=budget))
    assert not isinstance(info.value, APITimeoutError) or info.value.sent is True
    assert srv.hits == 1


async def test_execute_many_gives_each_jobs_call_its_timeout(
    server: tuple[Server, str],
) -> None:
    """``execute_many(timeout=)`` bounds each job's call as ``execute``'s does: the stalled
    jobs end "maybe acted" within it, each sent once.

    Catches: ``timeout=`` not handed to the jobs' requests (the run waits until STUCK), or
    a timed-out job re-sent (the server would count more than 3)."""
    srv, base = server
    jobs = [
        {"connectorId": "slack", "actionId": "send", "credentialId": "c", "userId": f"u{i}"}
        for i in range(3)
    ]
    async with client(base, retry=RetryPolicy(max_retries=3, backoff_base=0.01)) as alloy:
        run = alloy.actions.execute_many(jobs, timeout=Timeout(read=0.3))

        async def collect() -> list[Any]:
            async with run:
                return [outcome async for outcome in run]

        outcomes = await within(STUCK, "execute_many with a timeout", collect())
    assert len(outcomes) == 3
    for outcome in outcomes:
        assert isinstance(outcome.error, (APITimeoutError, OutcomeUnknownError))
        assert not isinstance(outcome.error, APITimeoutError) or outcome.error.sent is True
    assert srv.hits == 3


async def test_execute_many_refuses_a_bad_timeout_naming_it() -> None:
    """Catches: a bad ``timeout=`` accepted by execute_many and failing every job instead."""
    async with AlloyClient(api_key="k", base_url="http://127.0.0.1:9") as alloy:
        with pytest.raises(InvalidRequestError) as info:
            alloy.actions.execute_many([], timeout=0)
    assert info.value.field == "timeout"


@pytest.mark.parametrize("deadline", [None, 30.0])
async def test_a_pool_wait_timeout_is_never_sent(
    server: tuple[Server, str], deadline: float | None
) -> None:
    """``max_connections=1`` and the connection held: an execute with ``Timeout(pool=)`` ends
    as a never-sent APITimeoutError at the pool timeout, and the server never saw it. Under a
    (long) deadline too: the pool's own timeout is raised, not the deadline's.

    Catches: ``pool`` not mapped (the call waits until STUCK); a pool timeout reported as
    sent; the deadline code dropping the phases or reporting the pool timer as the deadline."""
    srv, base = server
    async with client(base, max_connections=1) as alloy:
        view = alloy.with_options(deadline=deadline)
        holder = asyncio.create_task(alloy.users.get("u1", timeout=60))
        try:
            await srv.arrived.wait()  # the only connection is taken
            with pytest.raises(APITimeoutError) as info:
                await within(STUCK, "a pool wait", execute(view, timeout=Timeout(pool=0.3)))
            assert srv.hits == 1  # the execute never reached the server
        finally:
            srv.release.set()
            await asyncio.gather(holder, return_exceptions=True)
    assert info.value.sent is False
    assert "deadline" not in str(info.value)


@pytest.fixture
def stalled_listener() -> Iterator[int]:
    """A port on 127.0.0.1 whose connects stall: a listener that never accepts, its backlog
    (0: one pending connection) filled, so the kernel drops further SYNs."""
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        yield port
    finally:
        for s in fillers:
            s.close()
        listener.close()


async def test_a_connect_timeout_is_never_sent(stalled_listener: int) -> None:
    """``Timeout(connect=)`` bounds making the connection: an execute to a listener whose
    backlog is full ends as a never-sent APITimeoutError (it has no ``total`` to fall back on).

    Catches: ``connect`` not mapped to ``sock_connect`` (the call waits until STUCK), or a
    connect timeout reported as sent (a read timeout would say sent=True)."""
    base = f"http://127.0.0.1:{stalled_listener}"
    async with client(base, timeout=None) as alloy:
        with pytest.raises(APITimeoutError) as info:
            await within(
                STUCK, "a stalled connect", execute(alloy, timeout=Timeout(connect=0.3, read=5))
            )
    assert info.value.sent is False


async def test_a_calls_timeout_replaces_the_clients(server: tuple[Server, str]) -> None:
    """A call's ``timeout=`` replaces the client's whole (httpx's rule): the client's
    ``Timeout(read=0.2)`` does not cut a call given ``timeout=30`` whose answer takes 0.6 s;
    without it the client's own ends the same call.

    Catches: a per-call timeout ignored, or merged with the client's phases."""
    srv, base = server
    async with client(base, timeout=Timeout(read=0.2)) as alloy:
        slow = {"x-hold": "0.6"}
        user = await within(
            STUCK, "a slow GET", alloy.users.get("u1", timeout=30, extra_headers=slow)
        )
        assert user.user_id == "u1"
        with pytest.raises(APITimeoutError):
            await within(STUCK, "a slow GET", alloy.users.get("u1", extra_headers=slow))
        assert alloy.timeout == Timeout(read=0.2)
        assert alloy.with_options(timeout=Timeout(pool=1)).timeout == Timeout(pool=1)
    assert srv.hits == 2


@pytest.mark.parametrize("field", ["total", "connect", "pool", "read"])
@pytest.mark.parametrize("value", [0, -1, math.nan, math.inf, "1", True])
def test_a_bad_timeout_value_names_its_field(field: str, value: object) -> None:
    """Catches: a phase accepting 0, a negative, NaN or a non-number (it would never fire, or
    fire at once)."""
    with pytest.raises(InvalidRequestError) as info:
        Timeout(**{field: value})
    assert info.value.field == field
    assert field in str(info.value)


async def test_a_bad_timeout_argument_is_refused_where_given() -> None:
    """Catches: a bad ``timeout=`` accepted by the client, a view or a call (a paginator
    refuses it when made, not while iterating)."""
    for bad in (0, -1, "5", math.nan):
        with pytest.raises(ConfigurationError, match="timeout"):
            AlloyClient(api_key="k", timeout=bad)  # type: ignore[arg-type]
    async with AlloyClient(api_key="k", base_url="http://127.0.0.1:9") as alloy:
        with pytest.raises(ConfigurationError, match="timeout"):
            alloy.with_options(timeout=-1)
        with pytest.raises(InvalidRequestError) as info:
            await alloy.users.get("u1", timeout=0)
        assert info.value.field == "timeout"
        with pytest.raises(InvalidRequestError) as info:
            alloy.users.list(timeout=-2)
        assert info.value.field == "timeout"


def _public_request_methods() -> list[tuple[str, Any]]:
    methods = []
    for service in (Users, Connectors, Credentials, Files, Actions):
        for name, fn in inspect.getmembers(service, inspect.isfunction):
            if not name.startswith("_"):
                methods.append((f"{service.__name__}.{name}", fn))
    return methods


@pytest.mark.parametrize(("name", "method"), _public_request_methods())
def test_every_service_method_takes_timeout(name: str, method: Any) -> None:
    """Catches: a service method (a new one included) without a keyword-only ``timeout``
    defaulting to None (the client's)."""
    parameter = inspect.signature(method).parameters.get("timeout")
    assert parameter is not None, name
    assert parameter.kind is inspect.Parameter.KEYWORD_ONLY, name
    assert parameter.default is None, name
    assert "Timeout" in str(parameter.annotation), name


def test_the_mapping_to_aiohttp_timers() -> None:
    """The documented mapping (aiohttp has one timer for the pool wait and connecting).

    Catches: a phase dropped or mapped to the wrong timer."""
    t = _client_timeout(Timeout(total=9, connect=2, pool=3, read=4), True)
    assert (t.total, t.connect, t.sock_connect, t.sock_read) == (9, 5, 2, 4)
    assert t.ceil_threshold == math.inf
    pool_only = _client_timeout(Timeout(pool=3), True)
    assert (pool_only.total, pool_only.connect, pool_only.sock_connect) == (None, 3, None)
    assert _client_timeout(Timeout(total=5), True) == _client_timeout(5, True)
