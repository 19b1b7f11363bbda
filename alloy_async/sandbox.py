"""The sandbox: FakeAlloy served over real HTTP on 127.0.0.1 (aiohttp.web).

The same simulator as the tests, reachable by any HTTP client, with fault injection
(``--faults 429=0.05,503=0.02,reset=0.01 --latency 5ms``), an optional server-side rate limit
answering 429 with ``Retry-After``, ``GET /_sandbox/stats`` reporting peaks in flight, and
``GET /_sandbox/executions`` listing every action it really executed (the judge of "was
anything done twice").
It only ever binds loopback addresses. Requests are routed on their path and query alone (never
on the ``Host`` header), and every answer, the server's own errors included (unknown route,
malformed request, body too large), is JSON in the API's error shape.
"""

from __future__ import annotations

import asyncio
import math
import re
import ssl as _ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

import attrs
import orjson
from aiohttp import web

from ._http import Request, is_loopback
from .errors import ConfigurationError
from .testing._tls_front import TLSFront
from .testing.fake import FakeAlloy
from .testing.faults import FaultPlan, SimulatedDisconnect, error_body

__all__ = ["SandboxServer", "parse_duration", "parse_faults"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|us)?\s*$")
_ABSOLUTE_FORM = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_MAX_BODY = 16 * 1024 * 1024
_HANDLER_ARGS: dict[str, Any] = {"access_log": None}  # no access log
#: Error codes for the answers the server gives itself (FakeAlloy answers the rest).
_CODES = {
    400: "BAD_REQUEST",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    429: "RATE_LIMITED",
}


def parse_duration(text: str) -> float:
    """``"5ms"`` -> 0.005, ``"2s"``/``"2"`` -> 2.0, ``"250us"`` -> 0.00025."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 5ms, 0.2s)")
    value, unit = float(match.group(1)), match.group(2) or "s"
    return value / {"s": 1.0, "ms": 1e3, "us": 1e6}[unit]


def parse_faults(text: str) -> dict[str, float]:
    """``"429=0.05,503=0.02,reset=0.01"`` -> ``{"429": 0.05, ...}``, checked."""
    rates: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep:
            raise ValueError(f"fault {part!r} needs a rate, e.g. {part}=0.05")
        if not (name.isdigit() or name in ("reset", "reset_before", "reset_after", "slow")):
            raise ValueError(
                f"unknown fault {name!r}: use a status code, reset, reset_after or slow"
            )
        try:
            rate = float(value)
        except ValueError:
            raise ValueError(f"fault rate for {name!r} is not a number: {value!r}") from None
        if not 0 <= rate <= 1:
            raise ValueError(f"fault rate for {name!r} must be within 0..1")
        rates[name] = rate
    if sum(rates.values()) > 1:
        raise ValueError("fault rates add up to more than 1")
    return rates


class _RateLimit:
    """A server-side token bucket: ``rate`` per second, ``burst`` at once."""

    def __init__(self, rate: float, burst: int | None) -> None:
        self.rate = rate
        self.capacity = float(burst if burst is not None else max(1, math.ceil(rate)))
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def take(self) -> float | None:
        """None if allowed, else seconds until a token is free."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return None
        return (1 - self.tokens) / self.rate


class SandboxServer:
    """Serve a :class:`FakeAlloy` on a loopback address.

    Args:
        fake: the simulator to serve (a new one when None).
        host: a loopback address (127.0.0.1 by default); anything else is refused.
        port: 0 picks any free port.
        rate_limit: requests per second the server accepts before answering 429.
        burst: requests allowed at once under ``rate_limit``.
        ssl: a server-side :class:`ssl.SSLContext`: serve ``https://`` (a context that
            requires client certificates makes it a mutual-TLS server). The handshake fails
            as production servers fail it, with a TLS alert; ``handshakes`` counts them. See
            :mod:`alloy_async.testing.tls` for a throwaway CA and certificates.

    Use ``async with SandboxServer() as server:`` then ``server.url``.
    """

    def __init__(
        self,
        fake: FakeAlloy | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rate_limit: float | None = None,
        burst: int | None = None,
        ssl: _ssl.SSLContext | None = None,
    ) -> None:
        if not is_loopback(host):
            raise ConfigurationError(f"the sandbox only binds loopback addresses, not {host!r}")
        if rate_limit is not None and rate_limit <= 0:
            raise ConfigurationError("rate_limit must be > 0")
        self.fake = fake if fake is not None else FakeAlloy()
        self.host = host
        self.port = port
        self.rate_limited = 0
        self._limit = _RateLimit(rate_limit, burst) if rate_limit else None
        if ssl is not None and not isinstance(ssl, _ssl.SSLContext):
            raise ConfigurationError("ssl must be a server-side ssl.SSLContext or None")
        self._ssl = ssl
        self._front: TLSFront | None = None
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        self._origin = ""

    @property
    def url(self) -> str:
        """The base URL to give :class:`~alloy_async.AlloyClient` (``base_url=``)."""
        if self._runner is None:
            raise RuntimeError("the sandbox is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self._ssl else 'http'}://{host}:{self.port}"

    @property
    def handshakes(self) -> int:
        """TLS connections accepted, each one handshake (0 without ``ssl``): a client that
        retried a certificate failure would show more than one."""
        return self._front.handshakes if self._front is not None else 0

    async def start(self) -> str:
        """Start serving; returns the base URL."""
        app = web.Application(client_max_size=_MAX_BODY, middlewares=[_json_errors])
        app.router.add_get("/_sandbox/stats", self._stats)
        app.router.add_get("/_sandbox/executions", self._executions)
        revoke = "/_sandbox/credentials/{credential_id}/revoked"
        app.router.add_put(revoke, self._revoke)
        app.router.add_delete(revoke, self._revoke)
        # [\s\S]: a decoded path may hold a newline (%0A), which "." would not match.
        app.router.add_route("*", r"/{tail:[\s\S]*}", self._handle)
        runner = web.AppRunner(app, handle_signals=False)
        await runner.setup()
        server = runner.server
        if server is None:  # pragma: no cover - setup() sets it
            raise RuntimeError("aiohttp's runner did not set up a server")
        loop = asyncio.get_running_loop()
        try:
            # Not a TCPSite: connections get the handler that answers aiohttp's own errors in JSON.
            # With TLS, this plain listener takes any free port behind the TLS front.
            self._server = await loop.create_server(
                lambda: _JSONErrorsHandler(server, loop=loop, **_HANDLER_ARGS),
                self.host,
                0 if self._ssl else self.port,
                backlog=1024,
            )
            plain_port = self._server.sockets[0].getsockname()[1]
            if self._ssl is not None:
                self._front = TLSFront(self._ssl, (self.host, plain_port))
                self.port = await self._front.start(self.host, self.port)
            else:
                self.port = plain_port
        except BaseException:
            if self._server is not None:
                self._server.close()
                self._server = None
            await runner.cleanup()
            raise
        self._runner = runner
        self._origin = self.url
        return self.url

    async def close(self) -> None:
        """Stop serving and close every connection."""
        runner, self._runner = self._runner, None
        listener, self._server = self._server, None
        if self._front is not None:
            await self._front.close()  # kept: its counts stay readable
        if listener is not None:
            listener.close()
        if runner is not None:
            await runner.cleanup()
        if listener is not None:
            await listener.wait_closed()

    async def __aenter__(self) -> SandboxServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def stats(self) -> dict[str, Any]:
        """The simulator's counters plus the server's own (rate-limited answers)."""
        return {**self.fake.stats(), "rate_limited": self.rate_limited}

    async def _stats(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.stats())

    async def _executions(self, request: web.Request) -> web.StreamResponse:
        rows = [attrs.asdict(e) for e in self.fake.executions]
        return web.Response(body=orjson.dumps(rows), content_type="application/json")

    async def _revoke(self, request: web.Request) -> web.StreamResponse:
        """``PUT``: the end user revoked the credential at the third party (every execute with
        it answers 401, ``source: THIRD_PARTY``); ``DELETE``: the user reconnected it."""
        credential_id = request.match_info["credential_id"]
        if credential_id not in self.fake.credentials:
            return _json_error(404, f"no credential {credential_id!r}", code="NOT_FOUND")
        if request.method == "PUT":
            self.fake.revoke_credential(credential_id)
        else:
            self.fake.revoked.discard(credential_id)
        revoked = credential_id in self.fake.revoked
        return web.json_response({"credentialId": credential_id, "revoked": revoked})

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self._limit is not None:
            wait = self._limit.take()
            if wait is not None:
                self.rate_limited += 1
                return _json_error(
                    429,
                    "Too many requests",
                    headers={"Retry-After": str(max(1, math.ceil(wait)))},
                )
        try:
            path, query = _split_target(request.raw_path)
        except ValueError as exc:
            return _json_error(400, str(exc), code="INVALID_PATH")
        body = await request.read()
        # The URL is the server's own address plus the path: the Host header plays no part.
        sdk_request = Request(
            method=request.method,
            url=self._origin + path + (f"?{query}" if query else ""),
            headers=_lower(request.headers),
            body=body or None,
            path=path,
        )
        try:
            response = await self.fake.process(sdk_request)
        except SimulatedDisconnect:
            # Drop the connection without an answer, as a reset would.
            if request.transport is not None:
                request.transport.close()
            raise asyncio.CancelledError from None
        return web.Response(status=response.status, body=response.body, headers=response.headers)


def _split_target(target: str) -> tuple[str, str]:
    """The path and the query of a request target, as sent (still percent-encoded).

    Takes the origin form (``/users/x?y=1``) or the absolute form (``http://h/users/x``, whose
    authority is ignored like the ``Host`` header); a fragment is dropped.

    Raises:
        ValueError: any other form (``*``, ``host:port``), or a ``.``/``..`` segment (raw or
            percent-encoded), which would name a different resource once normalized.
    """
    if target.startswith("/"):
        path, _, query = target.partition("#")[0].partition("?")
    elif _ABSOLUTE_FORM.match(target):
        parts = urlsplit(target)
        path, query = parts.path or "/", parts.query
    else:
        raise ValueError("the request target must be a path starting with /")
    if any(unquote(segment) in (".", "..") for segment in path.split("/")):
        raise ValueError("the path may not hold '.' or '..' segments")
    return path, query


def _json_error(
    status: int, message: str, *, code: str | None = None, headers: Mapping[str, str] | None = None
) -> web.Response:
    """An answer of the server's own, in the API's error shape."""
    if code is None:
        code = _CODES.get(status) or ("INTERNAL_ERROR" if status >= 500 else "HTTP_ERROR")
    return web.Response(
        status=status,
        body=error_body(status, code, message),
        content_type="application/json",
        headers=headers,
    )


_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _json_errors(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """aiohttp's own answers (no route, body too large, ...) in the API's JSON error shape."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        allow = exc.headers.get("Allow")
        return _json_error(exc.status, exc.reason, headers={"Allow": allow} if allow else None)


class _JSONErrorsHandler(web.RequestHandler):
    """aiohttp's connection handler, answering what it refuses before any middleware runs
    (a malformed request, a request line or header over the size limit) and handler crashes
    in the API's JSON error shape instead of text."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # logs; raises if an answer began
        if status >= 500:
            text = "the sandbox failed" + (f": {type(exc).__name__}" if exc is not None else "")
        else:
            # aiohttp's reason, without the request bytes it quotes after the colon.
            reason = (message or "").strip().partition(":")[0].partition("\n")[0]
            text = "malformed HTTP request" + (f": {reason[:200]}" if reason else "")
        response = _json_error(status, text)
        response.force_close()
        return response


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def fault_plan(
    spec: str | None, *, seed: int = 0, retry_after: str | None = "1"
) -> FaultPlan | None:
    """A :class:`FaultPlan` from a ``--faults`` string (None when empty)."""
    if not spec:
        return None
    return FaultPlan(rates=parse_faults(spec), seed=seed, retry_after=retry_after)
