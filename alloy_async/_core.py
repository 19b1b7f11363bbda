"""The request pipeline: build the request, send it under the retry policy, map errors.

``build -> [retry loop (backoff) -> transport.send] -> status -> error tree``.
Services reach HTTP only through :class:`Requester`. Everything that needs no event loop
(building the request, decoding the answer, the error for a status, ``Retry-After``) is in
the sans-I/O ``_wire.py``; this module owns the loop, the clock, the transport and the retries.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import backoff

from ._http import IDEMPOTENT_METHODS, Headers, Request, Response, bind_loop
from ._version import __version__
from ._wire import (
    build_request,
    common_headers,
    decode_json,
    error_from_response,
    parse_retry_after,
)
from .errors import (
    AlloyError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ConfigurationError,
    OutcomeUnknownError,
    RateLimitError,
)
from .retry import RetryPolicy
from .transports.base import Transport

__all__ = [
    "CallStats",
    "Requester",
    "ThrottleListener",
    "logger",
]

logger = logging.getLogger("alloy_async")

#: Called with (scope key, seconds) whenever the API throttles: lets limiters cool a scope.
ThrottleListener = Callable[[str, float | None], None]

_REDACTED = "[REDACTED]"
#: How long past a call's deadline ``wait_for`` waits for a transport that enforces its own
#: timeout (which fires first, at the deadline, and knows whether the request was sent).
_BACKSTOP = 0.5
_SENSITIVE_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-alloy-user-token", "cookie"}
)


def _user_agent() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        aiohttp_version = version("aiohttp")
    except PackageNotFoundError:  # pragma: no cover - aiohttp is a dependency
        aiohttp_version = "unknown"
    return f"alloy-async/{__version__} python/{platform.python_version()} aiohttp/{aiohttp_version}"


_USER_AGENT: str | None = None


def user_agent() -> str:
    """The ``User-Agent`` every request carries (computed once)."""
    global _USER_AGENT
    if _USER_AGENT is None:
        _USER_AGENT = _user_agent()
    return _USER_AGENT


def configure_logging_from_env() -> None:
    """``ALLOY_LOG=debug|info`` attaches a stderr handler to the ``alloy_async`` logger."""
    level = os.environ.get("ALLOY_LOG", "").strip().lower()
    if level not in ("debug", "info") or any(
        getattr(h, "_alloy_env", False) for h in logger.handlers
    ):
        return
    handler = logging.StreamHandler()
    handler._alloy_env = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if level == "debug" else logging.INFO)


@attrs.define(slots=True)
class _Shared:
    """State every view of one client shares: the transport, the loop, the closed flag."""

    transport: Transport
    owns_transport: bool
    loop: asyncio.AbstractEventLoop | None = None
    closed: bool = False

    def check(self) -> None:
        if self.closed:
            raise ConfigurationError(
                "this AlloyClient is closed; create a new one (or keep it open for the app's life)"
            )
        self.loop = bind_loop(self.loop, "this AlloyClient")


class _Retry(Exception):
    """Internal signal to the backoff loop: wait ``delay`` seconds, then attempt again."""

    def __init__(self, delay: float) -> None:
        self.delay = delay


@attrs.define(slots=True)
class CallStats:
    """What one logical call cost: attempts made and seconds spent waiting on throttling."""

    attempts: int = 0
    throttled: float = 0.0


#: 5xx answers that say the request was not handled: 503, and a CDN that could not reach the
#: origin (521 down, 522 connect timeout, 523 unreachable). Any other 5xx may have acted.
_NOT_HANDLED_5XX = frozenset({503, 521, 522, 523})


@attrs.define(slots=True)
class _Call:
    """One logical call: the prepared request and its retry bookkeeping."""

    request: Request
    idempotent: bool
    policy: RetryPolicy
    deadline_at: float | None
    scope: str
    stats: CallStats
    #: An attempt may have reached the server and acted (sent then no answer, or a 5xx not in
    #: _NOT_HANDLED_5XX): a DELETE retried after it that answers 404 has done its work.
    maybe_acted: bool = False

    @property
    def attempts(self) -> int:
        return self.stats.attempts


def _retry_delay(exc: _Retry) -> float:
    return exc.delay


@attrs.frozen(slots=True)
class Requester:
    """Builds requests and sends them through the transport under the retry policy.

    Views (``for_user``, ``with_options``) are cheap copies sharing the transport.
    """

    _shared: _Shared
    base_url: str
    api_key: str = attrs.field(repr=False)
    api_version: str
    user_id: str | None
    timeout: float | None
    retry: RetryPolicy
    default_headers: Mapping[str, str] = attrs.field(repr=False)  # may hold credentials
    throttle_listener: ThrottleListener | None = None
    base_headers: Headers = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        headers = common_headers(self.api_key, self.api_version, user_agent(), self.default_headers)
        object.__setattr__(self, "base_headers", headers)

    #: Build one :class:`Request` (no I/O; raises :class:`InvalidRequestError`): the wire
    #: layer's pure function with this requester as its defaults, bound as a method so the hot
    #: path pays no extra call.
    build = build_request

    @property
    def transport(self) -> Transport:
        """The transport every view shares."""
        return self._shared.transport

    @property
    def closed(self) -> bool:
        """Whether the client has been closed."""
        return self._shared.closed

    def evolve(self, **changes: Any) -> Requester:
        """A copy with some settings changed, sharing the transport."""
        return attrs.evolve(self, **changes)

    async def aclose(self) -> None:
        """Close the shared transport if the client created it."""
        shared = self._shared
        if shared.closed:
            return
        shared.closed = True
        if shared.owns_transport:
            await shared.transport.aclose()

    async def request(
        self,
        method: str,
        template: str,
        *,
        idempotent: bool | None = None,
        scope: str | None = None,
        **build_kwargs: Any,
    ) -> Response:
        """Build, send with retries, and return a 2xx :class:`Response` (or raise)."""
        request = self.build(method, template, **build_kwargs)
        return await self.send(request, idempotent=idempotent, scope=scope)

    async def request_json(self, method: str, template: str, **kwargs: Any) -> Any:
        """Like :meth:`request`, returning the decoded JSON body (None when empty)."""
        request = self.build(method, template, **_build_only(kwargs))
        response = await self.send(
            request, idempotent=kwargs.get("idempotent"), scope=kwargs.get("scope")
        )
        return decode_json(response, request)

    async def send(
        self,
        request: Request,
        *,
        idempotent: bool | None = None,
        scope: str | None = None,
        stats: CallStats | None = None,
    ) -> Response:
        """Send a built request under the retry policy."""
        shared = self._shared
        if shared.closed or shared.loop is not asyncio.get_running_loop():
            shared.check()  # raises, or binds the client to this loop (first call)
        policy = self.retry
        if policy.deadline is None and not logger.isEnabledFor(logging.DEBUG):
            # The hot path: no deadline timer, no clock, and the retry bookkeeping (_Call)
            # built only once the first attempt did not succeed.
            if stats is not None:
                stats.attempts += 1
            try:
                response = await shared.transport.send(request)
            except (APIConnectionError, APITimeoutError) as exc:
                call = self._call(request, idempotent, scope, stats, None, attempts=1)
                step: BaseException = self._failed(call, exc, 0.0)
            else:
                if response.status < 300:
                    return response
                call = self._call(request, idempotent, scope, stats, None, attempts=1)
                judged = self._judge(call, response, 0.0)
                if isinstance(judged, Response):
                    return judged
                step = judged
        else:
            deadline_at = None
            if policy.deadline is not None:
                deadline_at = asyncio.get_running_loop().time() + policy.deadline
            call = self._call(request, idempotent, scope, stats, deadline_at)
            try:
                return await self.attempt(call)
            except _Retry as retry:
                step = retry
        if not isinstance(step, _Retry):
            raise step
        await asyncio.sleep(step.delay)
        return await _run(self, call)

    def _call(
        self,
        request: Request,
        idempotent: bool | None,
        scope: str | None,
        stats: CallStats | None,
        deadline_at: float | None,
        *,
        attempts: int = 0,
    ) -> _Call:
        if stats is None:
            stats = CallStats(attempts=attempts)
        return _Call(
            request=request,
            idempotent=(request.method in IDEMPOTENT_METHODS) if idempotent is None else idempotent,
            policy=self.retry,
            deadline_at=deadline_at,
            scope=scope or request.path,
            stats=stats,
        )

    async def attempt(self, call: _Call) -> Response:
        """One attempt; raises :class:`_Retry` when another attempt should follow."""
        call.stats.attempts += 1
        request = call.request
        loop = asyncio.get_running_loop()
        # The clock is read only when a deadline or debug logging needs it (hot path).
        timed = call.deadline_at is not None or logger.isEnabledFor(logging.DEBUG)
        started = loop.time() if timed else 0.0
        try:
            if call.deadline_at is None:
                response = await self._shared.transport.send(request)
            else:
                remaining = call.deadline_at - started
                if remaining <= 0:
                    raise self._deadline_error(call, sent=False)
                response = await self._send_within(call, remaining)
        except (APIConnectionError, APITimeoutError) as exc:
            failed: BaseException | None = self._failed(
                call, exc, loop.time() - started if timed else 0.0
            )
        else:
            failed = None
        if failed is not None:
            raise failed  # outside the except block: the error keeps its own cause and context
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s %s -> %d in %.1f ms (attempt %d)%s",
                request.method,
                request.path,
                response.status,
                (loop.time() - started) * 1000,
                call.attempts,
                f" request_id={response.request_id}" if response.request_id else "",
            )
        if response.status < 300:
            return response
        step = self._judge(call, response, loop.time() - started if timed else 0.0)
        if isinstance(step, Response):
            return step
        raise step

    def _failed(self, call: _Call, exc: AlloyError, elapsed: float) -> BaseException:
        """After an attempt that got no answer: a :class:`_Retry`, or the error to raise."""
        if isinstance(exc, OutcomeUnknownError) or (isinstance(exc, APITimeoutError) and exc.sent):
            call.maybe_acted = True
        self._log_failure(call, exc, elapsed)
        return self._next_step(call, exc, None)

    def _judge(self, call: _Call, response: Response, elapsed: float) -> BaseException | Response:
        """After a non-2xx answer: the response to return (a DELETE already done), a
        :class:`_Retry`, or the error to raise."""
        request = call.request
        if response.status == 404 and call.maybe_acted and request.method == "DELETE":
            return _gone(call, response)
        if response.status >= 500 and response.status not in _NOT_HANDLED_5XX:
            call.maybe_acted = True
        error = error_from_response(response, request)
        retry_after = parse_retry_after(response.headers)
        if response.status in (429, 503) and self.throttle_listener is not None:
            self.throttle_listener(call.scope, retry_after)
        self._log_failure(call, error, elapsed)
        return self._next_step(call, error, retry_after)

    async def _send_within(self, call: _Call, remaining: float) -> Response:
        """Send one attempt that must end within ``remaining`` seconds (the call's deadline).

        A transport that enforces ``Request.timeout`` itself (``enforces_timeout = True``, as
        AiohttpTransport does) is given the deadline as the attempt's timeout: it alone can
        tell a deadline spent waiting for a pooled connection or connecting (never sent,
        retried) from one spent after writing (maybe sent). ``wait_for`` is then only a
        backstop, a little later; for other transports it is the deadline, and reports
        "maybe sent".
        """
        transport = self._shared.transport
        request = call.request
        if not getattr(transport, "enforces_timeout", False):
            try:
                return await asyncio.wait_for(transport.send(request), remaining)
            except TimeoutError:
                raise self._deadline_error(call, sent=True) from None
        cut = request.timeout is None or request.timeout > remaining
        if cut:
            request = attrs.evolve(request, timeout=remaining)
        try:
            return await asyncio.wait_for(transport.send(request), remaining + _BACKSTOP)
        except TimeoutError:
            raise self._deadline_error(call, sent=True) from None
        except APITimeoutError as exc:
            if cut:
                raise self._deadline_error(call, sent=exc.sent) from exc
            raise

    def _next_step(
        self, call: _Call, error: AlloyError, retry_after: float | None
    ) -> BaseException:
        """Decide: a :class:`_Retry` to wait and try again, or the error to raise."""
        policy = call.policy
        if not policy.is_retryable(error, idempotent=call.idempotent):
            return _final_error(call, error)
        if isinstance(error, RateLimitError) and error.retry_after is not None:
            retry_after = error.retry_after
        if retry_after is not None and retry_after > policy.max_retry_after:
            return error  # RateLimitError carries retry_after for the caller to schedule
        if call.attempts > policy.max_retries:
            return _final_error(call, error)
        delay = retry_after if retry_after is not None else policy.backoff_wait(call.attempts)
        if call.deadline_at is not None:
            remaining = call.deadline_at - asyncio.get_running_loop().time()
            if delay >= remaining:
                return _final_error(call, error)
        if isinstance(error, APIStatusError) and error.status in (429, 503):
            call.stats.throttled += delay
        logger.info(
            "retrying %s %s in %.2f s (attempt %d failed: %s)",
            call.request.method,
            call.request.path,
            delay,
            call.attempts,
            type(error).__name__,
        )
        return _Retry(delay)

    def _deadline_error(self, call: _Call, *, sent: bool) -> AlloyError:
        r = call.request
        deadline = call.policy.deadline
        if sent and not (call.idempotent or call.policy.retry_unsafe):
            return OutcomeUnknownError(
                f"deadline of {deadline:g} s ran out after the request was sent; "
                "the action may have run",
                method=r.method,
                path=r.path,
            )
        return APITimeoutError(
            f"deadline of {deadline:g} s ran out", method=r.method, path=r.path, sent=sent
        )

    def _log_failure(self, call: _Call, error: AlloyError, elapsed: float) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s %s failed in %.1f ms (attempt %d): %s",
                call.request.method,
                call.request.path,
                elapsed * 1000,
                call.attempts,
                error,
            )


def _gone(call: _Call, response: Response) -> Response:
    """A DELETE retried after an attempt that may have acted answered 404: the resource is
    gone, most likely deleted by that attempt. The call succeeds, as ``204 No Content``
    (the 404's headers kept, its body dropped)."""
    r = call.request
    logger.info(
        "%s %s answered 404 on attempt %d after an attempt that may have deleted it: "
        "taken as deleted",
        r.method,
        r.path,
        call.attempts,
    )
    return Response(204, response.headers, b"")


def _final_error(call: _Call, error: AlloyError) -> AlloyError:
    """The error the caller sees: a sent-then-silent POST becomes OutcomeUnknownError."""
    safe = call.idempotent or call.policy.retry_unsafe
    if isinstance(error, APITimeoutError) and error.sent and not safe:
        unknown = OutcomeUnknownError(
            "timed out after the request was sent; the action may have run",
            method=error.method,
            path=error.path,
        )
        unknown.__cause__ = error
        return unknown
    return error


_BUILD_KEYS = frozenset(
    {
        "path_params",
        "query",
        "json",
        "user_id",
        "extra_headers",
        "extra_query",
        "extra_body",
        "timeout",
    }
)


def _build_only(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k in _BUILD_KEYS}


@backoff.on_exception(
    backoff.runtime,
    _Retry,
    value=_retry_delay,
    jitter=None,
    logger=None,  # we log ourselves, without request arguments
)
async def _run(requester: Requester, call: _Call) -> Response:
    return await requester.attempt(call)
