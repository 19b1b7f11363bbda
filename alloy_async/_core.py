"""The request pipeline: build the request, send it under the retry policy, map errors.

``build -> [retry loop (backoff) -> transport.send] -> status -> error tree``.
Services reach HTTP only through :class:`Requester`. Everything that needs no event loop
(building the request, decoding the answer, the error for a status, ``Retry-After``) is in
the sans-I/O ``_wire.py``; this module owns the loop, the clock, the transport and the retries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import attrs
import backoff

from ._call import (
    _NOT_HANDLED_5XX,
    CallStats,
    _Call,
    _error_extra,
    _final_error,
    _gone,
    _log_extra,
    _Retry,
    _retry_delay,
    not_handled,
)
from ._env import configure_logging_from_env, logger, user_agent
from ._http import IDEMPOTENT_METHODS, Headers, Request, Response, Secret, bind_loop
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
from .observability.base import CallInfo, Observer
from .retry import RetryPolicy
from .transports.base import Transport

T = TypeVar("T")

__all__ = [
    "CallStats",
    "Requester",
    "ThrottleListener",
    "configure_logging_from_env",
    "logger",
    "user_agent",
]

#: Called with (scope key, seconds) whenever the API throttles: lets limiters cool a scope.
ThrottleListener = Callable[[str, float | None], None]

#: How long past a call's deadline ``wait_for`` waits for a transport that enforces its own
#: timeout (which fires first, at the deadline, and knows whether the request was sent).
_BACKSTOP = 0.5


@attrs.define(slots=True)
class _Shared:
    """State every view of one client shares: the transport, the loop, the closed flag."""

    transport: Transport
    owns_transport: bool
    loop: asyncio.AbstractEventLoop | None = None
    closed: bool = False
    #: Compiled action schemas for preflight validation (``services/_preflight.py``).
    schemas: Any = None

    def check(self) -> None:
        if self.closed:
            raise ConfigurationError(
                "this AlloyClient is closed; create a new one (or keep it open for the app's life)"
            )
        self.loop = bind_loop(self.loop, "this AlloyClient")


@attrs.frozen(slots=True)
class Requester:
    """Builds requests and sends them through the transport under the retry policy.

    Views (``for_user``, ``with_options``) are cheap copies sharing the transport.
    """

    _shared: _Shared
    base_url: str
    #: The ``authorization`` value (``_http.bearer(api_key)``): never a plain attribute.
    auth: Secret = attrs.field(repr=False)
    api_version: str
    user_id: str | None
    timeout: float | None
    retry: RetryPolicy
    default_headers: Mapping[str, str] = attrs.field(repr=False)  # may hold credentials
    throttle_listener: ThrottleListener | None = None
    #: Event hooks and telemetry (``observability``); None keeps the fast path.
    observer: Observer | None = None
    base_headers: Headers = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        headers = common_headers(self.api_version, user_agent(), self.default_headers)
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
        operation: str | None = None,
        **build_kwargs: Any,
    ) -> Response:
        """Build, send with retries, and return a 2xx :class:`Response` (or raise)."""
        request = self.build(method, template, **build_kwargs)
        return await self.send(request, idempotent=idempotent, scope=scope, operation=operation)

    async def request_json(self, method: str, template: str, **kwargs: Any) -> Any:
        """Like :meth:`request`, returning the decoded JSON body (None when empty)."""
        request = self.build(method, template, **_build_only(kwargs))
        response = await self.send(
            request,
            idempotent=kwargs.get("idempotent"),
            scope=kwargs.get("scope"),
            operation=kwargs.get("operation"),
        )
        return decode_json(response, request)

    async def send(
        self,
        request: Request,
        *,
        idempotent: bool | None = None,
        scope: str | None = None,
        stats: CallStats | None = None,
        operation: str | None = None,
    ) -> Response:
        """Send a built request under the retry policy.

        ``operation`` names the SDK call for observers (``"alloy.actions.execute"``).
        """
        shared = self._shared
        if shared.closed or shared.loop is not asyncio.get_running_loop():
            shared.check()  # raises, or binds the client to this loop (first call)
        policy = self.retry
        if self.observer is not None:
            return await self._send_observed(request, idempotent, scope, stats, operation)
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

    async def _send_observed(
        self,
        request: Request,
        idempotent: bool | None,
        scope: str | None,
        stats: CallStats | None,
        operation: str | None,
    ) -> Response:
        """:meth:`send` with an observer: every attempt goes through :meth:`attempt`."""
        observer = self.observer
        assert observer is not None
        deadline_at = None
        if self.retry.deadline is not None:
            deadline_at = asyncio.get_running_loop().time() + self.retry.deadline
        call = self._call(request, idempotent, scope, stats, deadline_at)
        call.info = info = CallInfo(operation or f"alloy.{request.method} {request.path}", request)
        observer.call_started(info)
        try:
            try:
                response = await self.attempt(call)
            except _Retry as retry:
                await asyncio.sleep(retry.delay)
                response = await _run(self, call)
        except BaseException as exc:
            observer.call_ended(info, exc)
            raise
        observer.call_ended(info, None)
        return response

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
        info, observer = call.info, self.observer
        if info is not None and observer is not None:
            info.attempt = call.attempts
            # a hook may raise: not sent
            request = await self._hook(call, observer.before_send(info, request))
        # The clock is read only when a deadline, debug logging or an observer needs it.
        timed = (
            call.deadline_at is not None or info is not None or logger.isEnabledFor(logging.DEBUG)
        )
        started = loop.time() if timed else 0.0
        try:
            if call.deadline_at is None:
                response = await self._shared.transport.send(request)
            else:
                remaining = call.deadline_at - started
                if remaining <= 0:
                    raise self._deadline_error(call, sent=False)
                response = await self._send_within(call, remaining, request)
        except (APIConnectionError, APITimeoutError) as exc:
            call.last_status = 0
            elapsed = loop.time() - started if timed else 0.0
            if info is not None and observer is not None:
                observer.attempt_failed(info, exc, elapsed)
            failed: BaseException | None = self._failed(call, exc, elapsed)
        else:
            call.last_status = response.status  # before any hook: what the server did
            failed = None
        if failed is not None:
            if isinstance(failed, _Retry) and info is not None and observer is not None:
                await self._hook(call, observer.retrying(info, failed.delay, failed.reason))
            raise failed  # outside the except block: the error keeps its own cause and context
        elapsed = loop.time() - started if timed else 0.0
        if info is not None and observer is not None:
            await self._hook(call, observer.answered(info, response, elapsed))
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "%s %s -> %d in %.1f ms (attempt %d)%s",
                request.method,
                request.path,
                response.status,
                elapsed * 1000,
                call.attempts,
                f" request_id={response.request_id}" if response.request_id else "",
                extra=_log_extra(response.request_id, call.attempts, response.status, elapsed),
            )
        if response.status < 300:
            return response
        step = self._judge(call, response, elapsed)
        if isinstance(step, Response):
            return step
        if isinstance(step, _Retry) and info is not None and observer is not None:
            await self._hook(call, observer.retrying(info, step.delay, step.reason))
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

    async def _send_within(self, call: _Call, remaining: float, request: Request) -> Response:
        """Send one attempt that must end within ``remaining`` seconds (the call's deadline).

        A transport that enforces ``Request.timeout`` itself (``enforces_timeout = True``, as
        AiohttpTransport does) is given the deadline as the attempt's timeout: it alone can
        tell a deadline spent waiting for a pooled connection or connecting (never sent,
        retried) from one spent after writing (maybe sent). ``wait_for`` is then only a
        backstop, a little later; for other transports it is the deadline, and reports
        "maybe sent".
        """
        transport = self._shared.transport
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
            extra=_error_extra(error, call.attempts, None),
        )
        return _Retry(delay, error)

    async def _hook(self, call: _Call, hooks: Awaitable[T]) -> T:
        """The event hooks of one step, within the call's deadline (it bounds the whole call,
        hooks included); past it, the deadline's error, saying what the server answered. A
        hook that raises after an answer is noted in the call's stats (the engine then judges
        the job by the answer, never by what the hook raised)."""
        timeout = asyncio.timeout_at(call.deadline_at)
        try:
            async with timeout:
                return await hooks
        except Exception as exc:
            answered = call.stats.hook_raised_after = call.last_status
            if not (isinstance(exc, TimeoutError) and timeout.expired()):
                raise  # the hook's own exception (a TimeoutError of its own included)
        if not answered:
            raise self._deadline_error(call, sent=call.maybe_acted) from None
        r = call.request
        raise APITimeoutError(
            f"deadline of {call.policy.deadline:g} s ran out in an event hook, after the server "
            f"answered {answered}",
            method=r.method,
            path=r.path,
            sent=call.maybe_acted or not not_handled(answered),
        ) from None

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
                extra=_error_extra(error, call.attempts, elapsed),
            )


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
