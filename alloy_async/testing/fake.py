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
import copy
import hashlib
import random
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import attrs
import orjson

from .._http import Request, Response
from ..errors import APIConnectionError, OutcomeUnknownError
from ..transports.fake import FakeTransport
from .catalog import CONNECTORS

__all__ = [
    "DEFAULT_API_KEY",
    "ExecutionRecord",
    "FakeAlloy",
    "Fault",
    "FaultPlan",
    "FaultRecord",
    "RecordedRequest",
    "SimulatedDisconnect",
]

DEFAULT_API_KEY = "sk_test_fake_alloy_key"
_JSON = {"content-type": "application/json"}


class SimulatedDisconnect(Exception):
    """The simulated server drops the connection; ``processed`` tells whether it acted first."""

    def __init__(self, processed: bool) -> None:
        super().__init__("connection reset " + ("after" if processed else "before") + " processing")
        self.processed = processed


class _HTTPError(Exception):
    def __init__(
        self, status: int, code: str, message: str, *, source: str = "CONNECTIVITY_API"
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.source = status, code, message, source


@attrs.frozen
class Fault:
    """One injected fault: a status answer, a reset before/after processing, or a hang.

    Attributes:
        status: answer with this status (and the documented error body) instead of acting.
        retry_after: value of the ``Retry-After`` header for a status fault.
        reset: ``"before"`` (never processed) or ``"after"`` (processed, then no answer).
        hang: process nothing and never answer (until the client gives up).
        delay: a latency spike: wait this many seconds, then serve the request normally.
    """

    status: int | None = None
    retry_after: str | None = None
    reset: str | None = None
    hang: bool = False
    delay: float = 0.0


@attrs.define
class FaultPlan:
    """Random faults by rate, reproducible from ``seed``.

    ``rates`` maps a fault name to a probability: ``"429"``, ``"503"`` (any status code),
    ``"reset"``/``"reset_before"``, ``"reset_after"`` and ``"slow"`` (a latency spike of
    ``spike`` seconds, then a normal answer). ``retry_after`` is sent with 429/503 answers (None:
    no header), on the share ``retry_after_share`` of them (drawn from the seeded generator; the
    others carry no header). ``routes`` limits the plan to some route names (e.g.
    ``{"execute"}``).
    """

    rates: Mapping[str, float]
    seed: int = 0
    retry_after: str | None = "1"
    routes: frozenset[str] | None = None
    retry_after_share: float = 1.0
    spike: float = 0.05
    _rng: random.Random = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        for name, rate in self.rates.items():
            if not 0 <= rate <= 1:
                raise ValueError(f"fault rate for {name!r} must be within 0..1, got {rate}")
            if name not in ("reset", "reset_before", "reset_after", "slow") and not (
                name.isdigit() and 100 <= int(name) <= 599
            ):
                raise ValueError(f"unknown fault {name!r}: a status code, reset, ... or slow")
        if sum(self.rates.values()) > 1 + 1e-9:
            raise ValueError("fault rates add up to more than 1")
        if not 0 <= self.retry_after_share <= 1:
            raise ValueError(f"retry_after_share must be within 0..1, got {self.retry_after_share}")
        if self.spike < 0:
            raise ValueError(f"spike must be >= 0 seconds, got {self.spike}")

    def draw(self, route: str) -> Fault | None:
        """Pick at most one fault for a request to ``route``."""
        if self.routes is not None and route not in self.routes:
            return None
        x = self._rng.random()
        for name, rate in self.rates.items():
            if x < rate:
                if name in ("reset", "reset_before"):
                    return Fault(reset="before")
                if name == "reset_after":
                    return Fault(reset="after")
                if name == "slow":
                    return Fault(delay=self.spike)
                retry_after = self.retry_after
                if self.retry_after_share < 1 and self._rng.random() >= self.retry_after_share:
                    retry_after = None
                return Fault(status=int(name), retry_after=retry_after)
            x -= rate
        return None


@attrs.frozen
class RecordedRequest:
    """A request FakeAlloy received (``Authorization`` redacted)."""

    method: str
    path: str
    route: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    json: Any
    at: float


@attrs.frozen
class FaultRecord:
    """A fault FakeAlloy injected: the route, the fault's name (``"429"``, ``"reset_after"``,
    ``"slow"``...) and the decoded JSON body of the request it hit."""

    route: str
    fault: str
    json: Any


@attrs.frozen
class ExecutionRecord:
    """An action execution FakeAlloy actually performed (a side effect happened)."""

    user_id: str
    connector_id: str
    action_id: str
    credential_id: str
    request_body: Any
    query_parameters: Any
    path_params: Any


# (method, regex, route name). Files come before /connectors/{id} so "files" is not an id.
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (m, re.compile("^" + p + "$"), name)
    for m, p, name in [
        ("POST", r"/users", "users.create"),
        ("GET", r"/users", "users.list"),
        ("GET", r"/users/(?P<userId>[^/]+)/token", "users.token"),
        ("GET", r"/users/(?P<userId>[^/]+)", "users.get"),
        ("PUT", r"/users/(?P<userId>[^/]+)", "users.update"),
        ("DELETE", r"/users/(?P<userId>[^/]+)", "users.delete"),
        ("POST", r"/connectors/files/upload/request", "files.request_upload"),
        ("GET", r"/connectors/files/list", "files.list"),
        ("DELETE", r"/connectors/files/(?P<s3Key>[^/]+)", "files.delete"),
        ("GET", r"/connectors", "connectors.list"),
        ("GET", r"/connectors/(?P<connectorId>[^/]+)", "connectors.get"),
        ("GET", r"/connectors/(?P<connectorId>[^/]+)/resources", "connectors.resources"),
        ("GET", r"/connectors/(?P<connectorId>[^/]+)/actions/(?P<actionId>[^/]+)", "actions.get"),
        (
            "POST",
            r"/connectors/(?P<connectorId>[^/]+)/actions/(?P<actionId>[^/]+)/execute",
            "execute",
        ),
        (
            "GET",
            r"/connectors/(?P<connectorId>[^/]+)/credentials/metadata",
            "credentials.metadata",
        ),
        ("POST", r"/connectors/(?P<connectorId>[^/]+)/credentials", "credentials.create"),
        ("GET", r"/connectors/(?P<connectorId>[^/]+)/credentials", "credentials.list"),
        (
            "DELETE",
            r"/connectors/(?P<connectorId>[^/]+)/credentials/(?P<credentialId>[^/]+)",
            "credentials.delete",
        ),
    ]
]

_ALLOWED_BODY_KEYS = {
    "users.create": {"username", "fullName"},
    "users.update": {"username", "fullName"},
    "execute": {
        "credentialId",
        "requestBody",
        "queryParameters",
        "pathParams",
        "additionalHeaders",
    },
    "credentials.create": {"userId", "authenticationType", "redirectUri", "authConfigId", "data"},
    "files.request_upload": {"filename", "mimeType", "md5"},
}

Handler = Callable[[Request], Any]


class FakeAlloy:
    """An in-memory Alloy Connectivity API.

    Args:
        seed: makes ids, timestamps and random faults reproducible.
        api_key: the only key the fake accepts (401 otherwise).
        strict: reject unknown body fields with 400, to catch a wrong wire shape.
        latency: seconds each request takes (virtual under ``VirtualTimeLoop``).
        faults: a :class:`FaultPlan` of random faults.
        execute_shape: the key execution output is returned under: ``"result"`` (the
            reference's example), ``"responseData"`` or ``"data"``.
        record: keep every request in :attr:`requests` and every injected fault in
            :attr:`fault_log` (turn off for very long runs).
        dataset_size: records a paged action (``listContacts``...) pages through.
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
        self.api_key = api_key
        self.dataset_size = dataset_size
        self.strict = strict
        self.latency = latency
        self.faults = faults
        self.execute_shape = execute_shape
        self.record = record
        self._rng = random.Random(seed)
        self._clock = 1_754_000_000.0  # 2025-07-31: deterministic timestamps
        self.connectors: dict[str, dict[str, Any]] = {c["id"]: copy.deepcopy(c) for c in CONNECTORS}
        self.users: dict[str, dict[str, Any]] = {}
        self.credentials: dict[str, dict[str, Any]] = {}
        self.files: dict[str, dict[str, dict[str, Any]]] = collections.defaultdict(dict)
        self.requests: list[RecordedRequest] = []
        self.executions: list[ExecutionRecord] = []
        self.fault_counts: collections.Counter[str] = collections.Counter()
        self.fault_log: list[FaultRecord] = []
        self._scripted: dict[str, collections.deque[Fault | Response]] = collections.defaultdict(
            collections.deque
        )
        self.in_flight = 0
        self.peak_in_flight = 0
        self._in_flight_by: collections.Counter[str] = collections.Counter()
        self.peak_by_user: dict[str, int] = {}
        self.peak_by_connector: dict[str, int] = {}
        self.route_hooks: dict[str, Handler] = {}
        self._pending_oauth: set[str] = set()
        self._served = 0

    # -- wiring -----------------------------------------------------------------------------

    def transport(self, *, record: bool = True) -> FakeTransport:
        """A :class:`FakeTransport` that sends to this fake; resets become transport errors."""
        return FakeTransport(self.handle, record=record)

    def client(self, **kwargs: Any) -> Any:
        """An :class:`~alloy_async.AlloyClient` wired to this fake (same keyword arguments)."""
        from ..client import AlloyClient

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

        Each answer is used once, in order; a :class:`Response` is returned as is, a
        :class:`Fault` is applied.
        """
        self._scripted[route].extend(answers)

    def fail(
        self, route: str, status: int, *, times: int = 1, retry_after: str | None = None
    ) -> None:
        """Answer the next ``times`` requests to ``route`` with ``status``."""
        self.script(route, *([Fault(status=status, retry_after=retry_after)] * times))

    # -- test helpers -----------------------------------------------------------------------

    def add_user(self, username: str, full_name: str | None = None) -> str:
        """Create a user directly; returns its id."""
        user_id = self._new_id()
        self.users[user_id] = {"userId": user_id, "username": username, "fullName": full_name}
        return user_id

    def add_credential(self, user_id: str, connector_id: str, *, name: str | None = None) -> str:
        """Create a working credential directly (as if consent was given); returns its id."""
        if user_id not in self.users:
            raise KeyError(f"no user {user_id!r}")
        if connector_id not in self.connectors:
            raise KeyError(f"no connector {connector_id!r}")
        auth = self.connectors[connector_id]["auth"][0]["authenticationType"]
        cred_id = self._new_id()
        now = self._now()
        user = self.users[user_id]
        self.credentials[cred_id] = {
            "credentialId": cred_id,
            "name": name or f"{user.get('fullName') or user['username']}'s {connector_id}",
            "type": f"{connector_id}-{auth}",
            "connectorId": connector_id,
            "userId": user_id,
            "createdAt": now,
            "updatedAt": now,
        }
        return cred_id

    def complete_oauth(self, oauth_url: str) -> str:
        """Finish the consent behind an ``oauthUrl`` the fake issued; returns the credential id."""
        query = dict(parse_qsl(urlsplit(oauth_url).query))
        match = re.search(r"/connector/([^/]+)/authorize", oauth_url)
        if not match or "userId" not in query or query.get("token") not in self._pending_oauth:
            raise ValueError("not an oauthUrl issued by this FakeAlloy (or already completed)")
        self._pending_oauth.discard(query["token"])
        return self.add_credential(query["userId"], match.group(1))

    def executions_of(self, **match: Any) -> list[ExecutionRecord]:
        """Processed executions whose fields equal the given values."""
        return [e for e in self.executions if all(getattr(e, k) == v for k, v in match.items())]

    def stats(self) -> dict[str, Any]:
        """Peaks in flight and counts, as the sandbox's ``/_sandbox/stats`` reports them."""
        return {
            "requests": len(self.requests),
            "executions": len(self.executions),
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
            "peak_in_flight_per_user": max(self.peak_by_user.values(), default=0),
            "peak_in_flight_per_connector": max(self.peak_by_connector.values(), default=0),
            "faults": dict(self.fault_counts),
        }

    # -- the server -------------------------------------------------------------------------

    async def process(self, request: Request) -> Response:
        """Serve one request; raises :class:`SimulatedDisconnect` for a reset fault.

        Every answer carries an ``x-request-id`` header.
        """
        response = await self._process(request)
        self._served += 1
        headers = dict(response.headers)
        headers.setdefault("x-request-id", f"req_{self._served:08d}")
        return Response(response.status, headers, response.body)

    async def _process(self, request: Request) -> Response:
        parts = urlsplit(request.url)
        raw_path = parts.path
        route, params = self._route(request.method, raw_path)
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
                name = _fault_name(fault)
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
                    hdrs = dict(_JSON)
                    if fault.retry_after is not None:
                        hdrs["retry-after"] = fault.retry_after
                    code = "RATE_LIMITED" if fault.status == 429 else "INTERNAL_ERROR"
                    return _error_response(fault.status, code, "injected fault", hdrs)
            try:
                response = self._dispatch(route, params, request, body_json, parts.query)
            except _HTTPError as err:
                response = _error_response(err.status, err.code, err.message, source=err.source)
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

    def _route(self, method: str, path: str) -> tuple[str, dict[str, str]]:
        for m, pattern, name in _ROUTES:
            match = pattern.match(path)
            if match and m == method:
                return name, {k: unquote(v) for k, v in match.groupdict().items()}
        for _, pattern, _ in _ROUTES:
            if pattern.match(path):
                return "method_not_allowed", {}
        return "not_found", {}

    def _dispatch(
        self, route: str, params: dict[str, str], request: Request, body: Any, query: str
    ) -> Response:
        if route == "not_found":
            raise _HTTPError(
                404, "NOT_FOUND", f"no route for {request.method} {urlsplit(request.url).path}"
            )
        if route == "method_not_allowed":
            raise _HTTPError(405, "METHOD_NOT_ALLOWED", f"{request.method} is not allowed here")
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            raise _HTTPError(401, "UNAUTHORIZED", "Invalid or missing API key")
        if not request.headers.get("x-api-version"):
            raise _HTTPError(400, "MISSING_API_VERSION", "x-api-version header is required")
        if body is _INVALID:
            raise _HTTPError(400, "INVALID_JSON", "request body is not valid JSON")
        if request.method in ("POST", "PUT") and body is not None and not isinstance(body, dict):
            raise _HTTPError(400, "INVALID_INPUT", "request body must be a JSON object")
        allowed = _ALLOWED_BODY_KEYS.get(route)
        if self.strict and allowed is not None and isinstance(body, dict):
            unknown = sorted(set(body) - allowed)
            if unknown:
                raise _HTTPError(400, "INVALID_INPUT", f"unknown body fields: {', '.join(unknown)}")
        hook = self.route_hooks.get(route)
        if hook is not None:
            answer = hook(request)
            if isinstance(answer, Response):
                return answer
        from . import _routes

        q = dict(parse_qsl(query, keep_blank_values=True))
        result = getattr(_routes, route.replace(".", "_"))(self, params, request, body or {}, q)
        if isinstance(result, Response):
            return result
        return Response(200, dict(_JSON), orjson.dumps(result))

    # -- helpers for _routes ------------------------------------------------------------------

    def _new_id(self) -> str:
        return f"{self._rng.getrandbits(96):024x}"

    def _now(self) -> str:
        import datetime

        self._clock += 1.0
        return (
            datetime.datetime.fromtimestamp(self._clock, datetime.UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )

    def _user(self, key: str) -> dict[str, Any]:
        user = self.users.get(key)
        if user is None:
            user = next((u for u in self.users.values() if u["username"] == key), None)
        if user is None:
            raise _HTTPError(404, "USER_NOT_FOUND", "User not found")
        return user

    def _connector(self, connector_id: str) -> dict[str, Any]:
        connector = self.connectors.get(connector_id)
        if connector is None:
            raise _HTTPError(404, "CONNECTOR_NOT_FOUND", "Connector not found")
        return connector

    def _action(self, connector_id: str, action_id: str) -> dict[str, Any]:
        for resource in self._connector(connector_id)["resources"]:
            for action in resource["actions"]:
                if action["id"] == action_id:
                    return action  # type: ignore[no-any-return]
        raise _HTTPError(404, "ACTION_NOT_FOUND", "Action not found")

    def _digest(self, *parts: str) -> str:
        return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


_INVALID = object()


def _fault_name(fault: Fault) -> str:
    if fault.reset:
        return f"reset_{fault.reset}"
    if fault.hang:
        return "hang"
    if fault.status is None and fault.delay:
        return "slow"
    return str(fault.status)


def _loop_time() -> float:
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return 0.0


def error_body(status: int, code: str, message: str, *, source: str = "CONNECTIVITY_API") -> bytes:
    """The JSON body of every error FakeAlloy and the sandbox answer: the documented shape
    ``{"error": {"source", "code", "message", "details": {"httpStatusCode"}}}``."""
    error = {"source": source, "code": code, "message": message}
    return orjson.dumps({"error": {**error, "details": {"httpStatusCode": status}}})


def _error_response(
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    *,
    source: str = "CONNECTIVITY_API",
) -> Response:
    body = error_body(status, code, message, source=source)
    return Response(status, headers or dict(_JSON), body)
