"""FakeAlloy: an in-memory, deterministic simulator of the Alloy Connectivity API.

It serves every documented endpoint from in-memory state (users, a demo connector catalog,
credentials, files), answers errors in the documented shape, and can inject faults: a status
(with optional ``Retry-After``), a connection reset before or after the request is processed,
and latency. It records every request and every processed execution, and the peak number of
requests in flight (globally, per user and per connector), so tests can judge the SDK.

Use it in-process through :meth:`FakeAlloy.transport` / :meth:`FakeAlloy.client`, or over real
HTTP through :mod:`alloy_async.sandbox`.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from .._http import Request, Response
from ..client import AlloyClient
from ..errors import APIConnectionError, OutcomeUnknownError
from ..transports.fake import FakeTransport
from ._routes import METHOD_NOT_ALLOWED, Route, resolve
from ._state import FakeState
from .faults import (
    JSON_HEADERS,
    Fault,
    FaultPlan,
    HTTPError,
    SimulatedDisconnect,
    error_body,
    error_response,
    fault_name,
)
from .records import ExecutionRecord, FaultRecord, RecordedRequest

__all__ = [
    "DEFAULT_API_KEY",
    "ExecutionRecord",
    "FakeAlloy",
    "Fault",
    "FaultPlan",
    "FaultRecord",
    "RecordedRequest",
    "SimulatedDisconnect",
    "error_body",
]

DEFAULT_API_KEY = "sk_test_fake_alloy_key"
_INVALID = object()  # the recorded body of a request whose body is not JSON

Handler = Callable[[Request], Any]


class FakeAlloy(FakeState):
    """An in-memory Alloy Connectivity API.

    Args:
        seed: makes ids, timestamps and random faults reproducible.
        api_key: the only key the fake accepts (401 otherwise).
        strict: reject unknown body fields with 400, to catch a wrong wire shape, and
            execute calls whose arguments the action's published JSON Schema refuses (the
            schema ``actions.get`` serves; needs the ``validate`` extra), as production would.
        latency: seconds each request takes (virtual under ``VirtualTimeLoop``).
        faults: a :class:`FaultPlan` of random faults.
        execute_shape: the key execution output is returned under: ``"result"`` (the
            reference's example), ``"responseData"`` or ``"data"``.
        record: keep every request in :attr:`requests` and every injected fault in
            :attr:`fault_log` (turn off for very long runs).
        dataset_size: records a paged action (``listContacts``...) pages through.

    Seed data and judge what happened with the test helpers below (:meth:`add_user`,
    :meth:`add_credential`, :meth:`complete_oauth`, :meth:`executions_of`) and the
    attributes (:attr:`executions`, :attr:`requests`, the peaks in flight).
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        api_key: str = DEFAULT_API_KEY,
        strict: bool = False,
        latency: float = 0.0,
        faults: FaultPlan | None = None,
        execute_shape: str = "result",
        record: bool = True,
        dataset_size: int = 120,
    ) -> None:
        super().__init__(seed=seed, execute_shape=execute_shape, dataset_size=dataset_size)
        self.api_key = api_key
        self.strict = strict
        self.latency = latency
        self.faults = faults
        self.record = record
        #: Every request received, in order (``Authorization`` redacted); empty with
        #: ``record=False``.
        self.requests: list[RecordedRequest] = []
        #: Faults injected so far, by name (``"429"``, ``"reset_after"``...).
        self.fault_counts: collections.Counter[str] = collections.Counter()
        #: Every fault injected, in order; empty with ``record=False``.
        self.fault_log: list[FaultRecord] = []
        self._scripted: dict[str, collections.deque[Fault | Response]] = collections.defaultdict(
            collections.deque
        )
        #: Requests being served now.
        self.in_flight = 0
        #: The most requests ever served at once.
        self.peak_in_flight = 0
        self._in_flight_by: collections.Counter[str] = collections.Counter()
        #: User id -> the most requests of that user served at once.
        self.peak_by_user: dict[str, int] = {}
        #: Connector id -> the most requests to that connector served at once.
        self.peak_by_connector: dict[str, int] = {}
        self.route_hooks: dict[str, Handler] = {}
        #: Requests received, recorded or not (``record=False`` keeps no list of them).
        self.received = 0

    # -- wiring -----------------------------------------------------------------------------

    def transport(self, *, record: bool = True) -> FakeTransport:
        """A :class:`~alloy_async.transports.FakeTransport` that sends to this fake; resets
        become transport errors."""
        return FakeTransport(self.handle, record=record)

    def client(self, **kwargs: Any) -> AlloyClient:
        """An :class:`~alloy_async.AlloyClient` wired to this fake (same keyword arguments)."""
        kwargs.setdefault("api_key", self.api_key)
        kwargs.setdefault("transport", self.transport())
        return AlloyClient(**kwargs)

    async def handle(self, request: Request) -> Response:
        """Serve one request as the transport sees it (resets raise transport errors)."""
        try:
            return await self.process(request)
        except SimulatedDisconnect as exc:
            if exc.processed:
                raise OutcomeUnknownError(
                    "connection reset after sending", method=request.method, path=request.path
                ) from None
            raise APIConnectionError(
                "connection reset before sending", method=request.method, path=request.path
            ) from None

    # -- fault scripting --------------------------------------------------------------------

    def script(self, route: str, *answers: Fault | Response) -> None:
        """Queue answers for the next requests to ``route`` (e.g. ``"execute"``, ``"users.get"``).

        Each answer is used once, in order; a :class:`~alloy_async.transports.Response` is
        returned as is, a :class:`Fault` is applied.
        """
        self._scripted[route].extend(answers)

    def fail(
        self, route: str, status: int, *, times: int = 1, retry_after: str | None = None
    ) -> None:
        """Answer the next ``times`` requests to ``route`` with ``status``."""
        self.script(route, *([Fault(status=status, retry_after=retry_after)] * times))

    def stats(self) -> dict[str, Any]:
        """Peaks in flight and counts, as the sandbox's ``/_sandbox/stats`` reports them."""
        return {
            "requests": self.received,
            "executions": len(self.executions),
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
            "peak_in_flight_per_user": max(self.peak_by_user.values(), default=0),
            "peak_in_flight_per_connector": max(self.peak_by_connector.values(), default=0),
            "faults": dict(self.fault_counts),
            "revoked_requests": dict(self.revoked_requests),
        }

    # -- the server -------------------------------------------------------------------------

    async def process(self, request: Request) -> Response:
        """Serve one request; raises :class:`SimulatedDisconnect` for a reset fault.

        Every answer carries an ``x-request-id`` header.
        """
        self.received += 1
        number = self.received  # in the order received: one id per request
        response = await self._process(request)
        headers = dict(response.headers)
        headers.setdefault("x-request-id", f"req_{number:08d}")
        return Response(response.status, headers, response.body)

    async def _process(self, request: Request) -> Response:
        parts = urlsplit(request.url)
        raw_path = parts.path
        route, table_row, params = resolve(request.method, raw_path)
        headers = request.headers
        user_key = headers.get("x-alloy-userid") or "-"
        conn_key = params.get("connectorId", "-")
        self._enter(user_key, conn_key)
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            body_json = self._record(request, route, raw_path, parts.query)
            scripted = self._scripted.get(route)
            answer = scripted.popleft() if scripted else None
            if isinstance(answer, Response):
                return answer
            fault = answer if answer is not None else self._random_fault(route)
            if fault is not None:
                name = fault_name(fault)
                self.fault_counts[name] += 1
                if self.record:
                    self.fault_log.append(FaultRecord(route, name, body_json))
                if fault.hang:
                    await asyncio.Event().wait()
                if fault.delay:
                    await asyncio.sleep(fault.delay)
                if fault.reset == "before":
                    raise SimulatedDisconnect(processed=False)
                if fault.status is not None:
                    hdrs = dict(JSON_HEADERS)
                    if fault.retry_after is not None:
                        hdrs["retry-after"] = fault.retry_after
                    code = "RATE_LIMITED" if fault.status == 429 else "INTERNAL_ERROR"
                    return error_response(fault.status, code, "injected fault", hdrs)
            try:
                response = self._dispatch(route, table_row, params, request, body_json, parts.query)
            except HTTPError as err:
                response = error_response(err.status, err.code, err.message, source=err.source)
            if fault is not None and fault.reset == "after":
                raise SimulatedDisconnect(processed=True)
            return response
        finally:
            self._leave(user_key, conn_key)

    def _random_fault(self, route: str) -> Fault | None:
        return self.faults.draw(route) if self.faults is not None else None

    def _enter(self, user: str, connector: str) -> None:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        by = self._in_flight_by
        by["u:" + user] += 1
        by["c:" + connector] += 1
        if user != "-":
            self.peak_by_user[user] = max(self.peak_by_user.get(user, 0), by["u:" + user])
        if connector != "-":
            self.peak_by_connector[connector] = max(
                self.peak_by_connector.get(connector, 0), by["c:" + connector]
            )

    def _leave(self, user: str, connector: str) -> None:
        self.in_flight -= 1
        for key in ("u:" + user, "c:" + connector):
            self._in_flight_by[key] -= 1
            if not self._in_flight_by[key]:
                del self._in_flight_by[key]

    def _record(self, request: Request, route: str, path: str, query: str) -> Any:
        body_json: Any = None
        if request.body:
            try:
                body_json = orjson.loads(request.body)
            except orjson.JSONDecodeError:
                body_json = _INVALID
        if self.record:
            headers = {
                k: ("[REDACTED]" if k == "authorization" else v) for k, v in request.headers.items()
            }
            self.requests.append(
                RecordedRequest(
                    method=request.method,
                    path=path,
                    route=route,
                    query=dict(parse_qsl(query, keep_blank_values=True)),
                    headers=headers,
                    json=body_json,
                    at=_loop_time(),
                )
            )
        return body_json

    def _dispatch(
        self,
        route: str,
        row: Route | None,
        params: dict[str, str],
        request: Request,
        body: Any,
        query: str,
    ) -> Response:
        if row is None:
            if route == METHOD_NOT_ALLOWED:
                raise HTTPError(405, "METHOD_NOT_ALLOWED", f"{request.method} is not allowed here")
            raise HTTPError(
                404, "NOT_FOUND", f"no route for {request.method} {urlsplit(request.url).path}"
            )
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            raise HTTPError(401, "UNAUTHORIZED", "Invalid or missing API key")
        if not request.headers.get("x-api-version"):
            raise HTTPError(400, "MISSING_API_VERSION", "x-api-version header is required")
        if body is _INVALID:
            raise HTTPError(400, "INVALID_JSON", "request body is not valid JSON")
        if request.method in ("POST", "PUT") and body is not None and not isinstance(body, dict):
            raise HTTPError(400, "INVALID_INPUT", "request body must be a JSON object")
        allowed = row.body_keys
        if self.strict and allowed is not None and isinstance(body, dict):
            unknown = sorted(set(body) - allowed)
            if unknown:
                raise HTTPError(400, "INVALID_INPUT", f"unknown body fields: {', '.join(unknown)}")
        hook = self.route_hooks.get(route)
        if hook is not None:
            answer = hook(request)
            if isinstance(answer, Response):
                return answer
        q = dict(parse_qsl(query, keep_blank_values=True))
        result = row.handler(self, params, request, body or {}, q)
        if isinstance(result, Response):
            return result
        return Response(200, dict(JSON_HEADERS), orjson.dumps(result))


def _loop_time() -> float:
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return 0.0
