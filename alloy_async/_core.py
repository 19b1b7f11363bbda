"""The request pipeline: build the request, send it under the retry policy, map errors.

``build -> retry loop [attempt: hooks, deadline, transport.send -> decide] -> response``.
Services reach HTTP only through :class:`Requester`. Everything that needs no event loop is
sans-I/O: building the request, decoding the answer and the error for a status are in
``_wire.py``; what follows an attempt (return, raise, or retry after some seconds) is decided
by ``retry.decide``. This module owns the loop, the clock, the transport, the hooks and the
logs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import attrs

from ._env import configure_logging_from_env, logger, user_agent
from ._http import (
    IDEMPOTENT_METHODS,
    Headers,
    Request,
    Response,
    Secret,
    Timeout,
    bind_loop,
    timeout_total,
    with_total,
)
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
)
from .observability.base import CallInfo, Observer
from .retry import (
    Attempt,
    Decision,
    Retry,
    RetryPolicy,
    deadline_error,
    decide,
    may_have_acted,
    not_handled,
)
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
class CallStats:
    """What one logical call cost: attempts made and seconds spent waiting on throttling.

    Attributes:
        attempts: HTTP attempts made, retries included.
        throttled: seconds spent waiting because the API throttled (429/503, ``Retry-After``).
        hook_raised_after: the status of the server's answer after which an event hook
            raised, or 0 when none did. The job is then judged by what the server did,
            whatever the hook raised.
    """

    attempts: int = 0
    throttled: float = 0.0
    hook_raised_after: int = 0


@attrs.define(slots=True)
class _Call:
    """One logical call as the retry loop follows it: the request and what its attempts did."""

    request: Request
    idempotent: bool
    policy: RetryPolicy
    deadline_at: float | None
    scope: str
    stats: CallStats
    #: Set when the client has an observer (event hooks, telemetry): what it follows.
    info: CallInfo | None = None
    #: An attempt may have reached the server and acted (``retry.may_have_acted``).
    maybe_acted: bool = False
    #: The status of the last attempt's answer (0: it got none), for the hooks that follow.
    last_status: int = 0
    #: Seconds the last attempt took (0.0 when nothing needed the clock).
    elapsed: float = 0.0


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
    timeout: float | Timeout | None
    retry: RetryPolicy
    default_headers: Mapping[str, str] = attrs.field(repr=False)  # may hold credentials
    throttle_listener: ThrottleListener | None = None
    #: Event hooks and telemetry (``observability``); None: no hook awaited, no clock read.
    observer: Observer | None = None
    base_headers: Headers = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        headers = common_headers(self.api_version, user_agent(), self.default_headers)
        object.__setattr__(self, "base_headers", headers)

    def build(
        self,
        method: str,
        template: str,
        *,
        path_params: Mapping[str, object] | None = None,
        query: Mapping[str, Any] | None = None,
        json: Any = None,
        user_id: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, Any] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: float | Timeout | None = None,
        route: tuple[str, str] | None = None,
    ) -> Request:
        """Build one :class:`Request` with this requester's defaults: ``_wire.build_request``
        (no I/O; raises :class:`InvalidRequestError`), whose arguments these are. Spelled out,
        not ``**options``: callers stay type-checked, and forwarding a keyword dict cost
        0.6 us a call (in-process ``execute`` is 7 us), against 0.1 us for this frame."""
        return build_request(
            self,
            method,
            template,
            path_params=path_params,
            query=query,
            json=json,
            user_id=user_id,
            extra_headers=extra_headers,
            extra_query=extra_query,
            extra_body=extra_body,
            timeout=timeout,
            route=route,
        )

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
        """Send a built request under the retry policy: attempt; a 2xx is returned; otherwise
        ``retry.decide`` says whether to return, raise, or wait and attempt again.

        ``operation`` names the SDK call for observers (``"alloy.actions.execute"``).
        """
        call = self._begin(request, idempotent, scope, stats, operation)
        observer, info, deadline_at = self.observer, call.info, call.deadline_at
        # The clock is read only when a deadline, debug logging or an observer needs it.
        debug = logger.isEnabledFor(logging.DEBUG)
        timed = deadline_at is not None or info is not None or debug
        loop = asyncio.get_running_loop() if timed else None
        transport = self._shared.transport
        try:
            while True:
                # One attempt: the request hook (it may raise: not sent), the send within the
                # deadline, the report. Written out here, not in a method: every frame
                # between the caller and the transport is resumed at each of the request's
                # waits (~0.5 % of P1's client instructions: RESULTS.md, issue 23).
                call.stats.attempts += 1
                sending = request
                if info is not None and observer is not None:
                    info.attempt = call.stats.attempts
                    sending = await self._hook(call, observer.before_send(info, request))
                started = loop.time() if loop is not None else 0.0
                outcome: Response | AlloyError
                try:
                    if deadline_at is None:
                        outcome = await transport.send(sending)
                    else:
                        outcome = await self._send_within(call, sending, deadline_at - started)
                except APIConnectionError as exc:  # APITimeoutError, OutcomeUnknownError too
                    outcome = exc
                if loop is not None:  # a deadline, debug logging or an observer follows it
                    call.elapsed = loop.time() - started
                    self._attempted(call, sending, outcome, debug)
                if isinstance(outcome, Response):
                    if info is not None and observer is not None:
                        await self._hook(call, observer.answered(info, outcome, call.elapsed))
                    if outcome.status < 300:
                        response = outcome
                        break
                decision = self._decide(call, outcome)
                if isinstance(decision, Response):  # a DELETE found already done
                    response = decision
                    break
                if not isinstance(decision, Retry):
                    raise decision
                if info is not None and observer is not None:
                    retrying = observer.retrying(info, decision.delay, decision.reason)
                    await self._hook(call, retrying)
                await asyncio.sleep(decision.delay)
        except BaseException as exc:
            if info is not None and observer is not None:
                observer.call_ended(info, exc)
            raise
        if info is not None and observer is not None:
            observer.call_ended(info, None)
        return response

    def _begin(
        self,
        request: Request,
        idempotent: bool | None,
        scope: str | None,
        stats: CallStats | None,
        operation: str | None,
    ) -> _Call:
        """The call's record, once the client is known open on this loop; its deadline armed
        and its observer told (see :meth:`send` for the arguments)."""
        shared = self._shared
        if shared.closed or shared.loop is not asyncio.get_running_loop():
            shared.check()  # raises, or binds the client to this loop (first call)
        policy = self.retry
        deadline_at = None
        if policy.deadline is not None:
            deadline_at = asyncio.get_running_loop().time() + policy.deadline
        call = _Call(
            request,
            (request.method in IDEMPOTENT_METHODS) if idempotent is None else idempotent,
            policy,
            deadline_at,
            scope or request.path,
            CallStats() if stats is None else stats,
        )
        observer = self.observer
        if observer is not None:
            call.info = CallInfo(operation or f"alloy.{request.method} {request.path}", request)
            observer.call_started(call.info)
        return call

    def _attempted(
        self, call: _Call, request: Request, outcome: Response | AlloyError, debug: bool
    ) -> None:
        """Note what one attempt got, when something follows the attempts (an observer, a
        deadline, the debug log): the status the server answered (0: none, before any hook
        runs), a failure for the observer, the answer in the debug log."""
        if not isinstance(outcome, Response):
            call.last_status = 0
            if call.info is not None and self.observer is not None:
                self.observer.attempt_failed(call.info, outcome, call.elapsed)
            return
        call.last_status = outcome.status
        if debug:
            logger.debug(
                "%s %s -> %d in %.1f ms (attempt %d)%s",
                request.method,
                request.path,
                outcome.status,
                call.elapsed * 1000,
                call.stats.attempts,
                f" request_id={outcome.request_id}" if outcome.request_id else "",
                extra=_log_extra(
                    outcome.request_id, call.stats.attempts, outcome.status, call.elapsed
                ),
            )

    def _decide(self, call: _Call, outcome: Response | AlloyError) -> Decision:
        """``retry.decide`` after an attempt that did not succeed, and what the SDK does beside
        it: the throttle listener told, the failure logged, the throttled seconds counted."""
        call.maybe_acted = call.maybe_acted or may_have_acted(outcome)
        listener = self.throttle_listener
        if isinstance(outcome, Response) and outcome.status in (429, 503) and listener is not None:
            listener(call.scope, parse_retry_after(outcome.headers))
        remaining = None
        if call.deadline_at is not None:
            remaining = call.deadline_at - asyncio.get_running_loop().time()
        attempt = Attempt(
            call.request, call.stats.attempts, call.idempotent, call.maybe_acted, remaining
        )
        decision = decide(call.policy, attempt, outcome)
        r = call.request
        if isinstance(decision, Response):
            assert isinstance(outcome, Response)
            logger.info(
                "%s %s answered 404 on attempt %d after an attempt that may have deleted it: "
                "taken as deleted",
                r.method,
                r.path,
                attempt.number,
                extra=_log_extra(outcome.request_id, attempt.number, outcome.status, None),
            )
            return decision
        if logger.isEnabledFor(logging.DEBUG):
            error = outcome if isinstance(outcome, AlloyError) else error_from_response(outcome, r)
            logger.debug(
                "%s %s failed in %.1f ms (attempt %d): %s",
                r.method,
                r.path,
                call.elapsed * 1000,
                attempt.number,
                error,
                extra=_error_extra(error, attempt.number, call.elapsed),
            )
        if isinstance(decision, Retry):
            reason = decision.reason
            if isinstance(reason, APIStatusError) and reason.status in (429, 503):
                call.stats.throttled += decision.delay
            logger.info(
                "retrying %s %s in %.2f s (attempt %d failed: %s)",
                r.method,
                r.path,
                decision.delay,
                attempt.number,
                type(reason).__name__,
                extra=_error_extra(reason, attempt.number, None),
            )
        return decision

    async def _send_within(self, call: _Call, request: Request, remaining: float) -> Response:
        """Send one attempt that must end within ``remaining`` seconds (the call's deadline).

        A transport that enforces ``Request.timeout`` itself (``enforces_timeout = True``, as
        AiohttpTransport does) is given the deadline as the attempt's ``total``: it alone can
        tell a deadline spent waiting for a pooled connection or connecting (never sent,
        retried) from one spent after writing (maybe sent). ``wait_for`` is then only a
        backstop, a little later; for other transports it is the deadline, and reports
        "maybe sent".
        """
        if remaining <= 0:
            raise self._deadline_error(call, sent=False)
        transport = self._shared.transport
        if not getattr(transport, "enforces_timeout", False):
            try:
                return await asyncio.wait_for(transport.send(request), remaining)
            except TimeoutError:
                raise self._deadline_error(call, sent=True) from None
        total = timeout_total(request.timeout)
        cut = total is None or total > remaining
        if cut:
            # Only ``total`` is lowered: the phases of a Timeout still tell a pool wait or a
            # connect (never sent) from a read.
            request = attrs.evolve(request, timeout=with_total(request.timeout, remaining))
        try:
            return await asyncio.wait_for(transport.send(request), remaining + _BACKSTOP)
        except TimeoutError:
            raise self._deadline_error(call, sent=True) from None
        except APITimeoutError as exc:
            if cut and not _phase_fired(request.timeout, call.deadline_at):
                raise self._deadline_error(call, sent=exc.sent) from exc
            raise

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
        return deadline_error(call.policy, call.request, idempotent=call.idempotent, sent=sent)


def _phase_fired(timeout: float | Timeout | None, deadline_at: float | None) -> bool:
    """Whether an attempt's timeout, with ``total`` cut to the deadline, fired before it: a
    phase of a :class:`Timeout` (``pool``, ``connect``, ``read``), raised as it is (a pool
    wait stays retryable), not as the deadline's error. The ``total`` timer fires at or past
    ``deadline_at`` (it is armed after ``remaining`` was read)."""
    if not isinstance(timeout, Timeout) or not timeout.phased or deadline_at is None:
        return False
    return asyncio.get_running_loop().time() < deadline_at - 0.001


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


def _log_extra(
    request_id: str | None, attempt: int, status: int | None, elapsed: float | None
) -> dict[str, Any]:
    """The structured fields of a log record (a JSON handler shows them); never secrets."""
    return {
        "request_id": request_id,
        "attempt": attempt,
        "status": status,
        "elapsed_ms": None if elapsed is None else round(elapsed * 1000, 3),
    }


def _error_extra(error: AlloyError, attempt: int, elapsed: float | None) -> dict[str, Any]:
    status = error.status if isinstance(error, APIStatusError) else None
    request_id = error.request_id if isinstance(error, APIStatusError) else None
    return _log_extra(request_id, attempt, status, elapsed) | {"error_type": type(error).__name__}
