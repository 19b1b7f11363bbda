"""What the request pipeline tells an observer, and the event hooks built on it.

The pipeline calls an :class:`Observer` only when the client has one (event hooks, or
OpenTelemetry with a provider set): a client without one takes the same fast path as before,
paying a single ``is None`` test per call.

An observer sees the request with its credentials redacted (``Authorization`` and the other
secret headers read ``[REDACTED]``); what it raises reaches the caller, never swallowed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs

from .._aio import call_back
from .._http import Headers, Request, Response
from ..errors import AlloyError, ConfigurationError

__all__ = [
    "HOOK_EVENTS",
    "CallInfo",
    "EventHooks",
    "HookObserver",
    "Observer",
    "RequestEvent",
    "ResponseEvent",
    "RetryEvent",
    "chain",
    "members",
    "redacted",
]

#: The names ``AlloyClient(event_hooks=...)`` accepts.
HOOK_EVENTS = ("request", "response", "retry")

Hook = Callable[[Any], Awaitable[None] | None]
#: ``{"request": [...], "response": [...], "retry": [...]}``: sync or async callables.
EventHooks = Mapping[str, Sequence[Hook]]


def redacted(request: Request) -> Request:
    """A copy of ``request`` whose secret headers read ``[REDACTED]``."""
    return attrs.evolve(request, headers=Headers.masked(request.headers), auth=None)


@attrs.define(slots=True)
class CallInfo:
    """One SDK call as an observer follows it (one per ``execute``, ``users.get``, ...).

    Attributes:
        operation: the SDK operation, e.g. ``"alloy.actions.execute"``.
        request: the request as built (credentials included: never hand it out unredacted).
        attempt: the attempt under way (1 for the first).
        state: free for the observer (its span, its start time).
    """

    operation: str
    request: Request
    attempt: int = 0
    state: Any = None


@attrs.frozen
class RequestEvent:
    """What a ``request`` hook gets, before each attempt is sent.

    Attributes:
        operation: the SDK operation (``"alloy.actions.execute"``).
        request: the request, with ``Authorization`` and other secrets redacted.
        attempt: 1 for the first attempt, 2 for the first retry, ...
    """

    operation: str
    request: Request
    attempt: int


@attrs.frozen
class ResponseEvent:
    """What a ``response`` hook gets, for each answer (any status, before it is judged).

    Attributes:
        operation: the SDK operation (``"alloy.actions.execute"``).
        request: the request that was answered, secrets redacted.
        attempt: 1 for the first attempt, 2 for the first retry, ...
        status: the HTTP status.
        headers: the answer's headers (lower-case names); rate-limit headers are here.
        request_id: the API's request id, when it sent one.
        elapsed: seconds this attempt took.
    """

    operation: str
    request: Request
    attempt: int
    status: int
    headers: Mapping[str, str]
    request_id: str | None
    elapsed: float


@attrs.frozen
class RetryEvent:
    """What a ``retry`` hook gets, when an attempt failed and another will follow.

    Attributes:
        operation: the SDK operation (``"alloy.actions.execute"``).
        request: the request of the failed attempt, secrets redacted.
        attempt: the attempt that failed.
        delay: seconds until the next attempt.
        reason: the error of the failed attempt (a 429's
            :class:`~alloy_async.RateLimitError`, a connection error, ...).
    """

    operation: str
    request: Request
    attempt: int
    delay: float
    reason: AlloyError


class Observer:
    """Follows SDK calls. Every method is a no-op here; subclasses pick what they need.

    The pipeline calls, per SDK call: :meth:`call_started`, then per attempt
    :meth:`before_send` (which may return the request to send instead, e.g. with a
    ``traceparent`` header), then :meth:`answered` or :meth:`attempt_failed`, :meth:`retrying`
    when another attempt follows, and finally :meth:`call_ended`.
    """

    def call_started(self, call: CallInfo) -> None:
        """A call begins (before its first attempt)."""

    async def before_send(self, call: CallInfo, request: Request) -> Request:
        """An attempt is about to be sent; returns the request to send."""
        return request

    async def answered(self, call: CallInfo, response: Response, elapsed: float) -> None:
        """An attempt got an answer (any status)."""

    def attempt_failed(self, call: CallInfo, error: AlloyError, elapsed: float) -> None:
        """An attempt got no answer (connection error, timeout)."""

    async def retrying(self, call: CallInfo, delay: float, reason: AlloyError) -> None:
        """The attempt failed with ``reason``; another follows in ``delay`` seconds."""

    def call_ended(self, call: CallInfo, error: BaseException | None) -> None:
        """The call ended: returned (``error`` None) or raised ``error``."""


def _checked_hooks(event_hooks: EventHooks) -> dict[str, tuple[Hook, ...]]:
    if not isinstance(event_hooks, Mapping):
        raise ConfigurationError(
            'event_hooks must be a mapping like {"request": [fn], "response": [fn]}'
        )
    hooks: dict[str, tuple[Hook, ...]] = {}
    for name, given in event_hooks.items():
        fns: Any = given  # checked here: a caller may pass anything
        if name not in HOOK_EVENTS:
            raise ConfigurationError(
                f"event_hooks: unknown event {name!r} (expected one of {', '.join(HOOK_EVENTS)})"
            )
        if callable(fns) or isinstance(fns, (str, bytes)) or not isinstance(fns, Sequence):
            raise ConfigurationError(f"event_hooks[{name!r}] must be a list of callables")
        for fn in fns:
            if not callable(fn):
                raise ConfigurationError(f"event_hooks[{name!r}] holds {fn!r}, not a callable")
        hooks[name] = tuple(fns)
    return hooks


async def _fire(fns: tuple[Hook, ...], event: object) -> None:
    for fn in fns:
        await call_back(fn, event)


class HookObserver(Observer):
    """Calls ``AlloyClient(event_hooks=...)``'s hooks (httpx's shape): sync or async."""

    def __init__(self, event_hooks: EventHooks) -> None:
        hooks = _checked_hooks(event_hooks)
        self._request = hooks.get("request", ())
        self._response = hooks.get("response", ())
        self._retry = hooks.get("retry", ())

    @property
    def active(self) -> bool:
        """Whether any hook is registered."""
        return bool(self._request or self._response or self._retry)

    async def before_send(self, call: CallInfo, request: Request) -> Request:
        if self._request:
            await _fire(
                self._request, RequestEvent(call.operation, redacted(request), call.attempt)
            )
        return request

    async def answered(self, call: CallInfo, response: Response, elapsed: float) -> None:
        if self._response:
            event = ResponseEvent(
                call.operation,
                redacted(call.request),
                call.attempt,
                response.status,
                response.headers,
                response.request_id,
                elapsed,
            )
            await _fire(self._response, event)

    async def retrying(self, call: CallInfo, delay: float, reason: AlloyError) -> None:
        if self._retry:
            event = RetryEvent(call.operation, redacted(call.request), call.attempt, delay, reason)
            await _fire(self._retry, event)


class _Chain(Observer):
    """Several observers, called in order (telemetry first, then hooks)."""

    def __init__(self, observers: Sequence[Observer]) -> None:
        self._all = tuple(observers)

    def call_started(self, call: CallInfo) -> None:
        states = []
        for observer in self._all:
            call.state = None
            observer.call_started(call)
            states.append(call.state)
        call.state = states

    async def _each(
        self, call: CallInfo, fn: Callable[[Observer, CallInfo], Awaitable[None]]
    ) -> None:
        states = call.state
        try:
            for observer, state in zip(self._all, states, strict=True):
                call.state = state
                await fn(observer, call)
        finally:
            call.state = states

    async def before_send(self, call: CallInfo, request: Request) -> Request:
        box = [request]

        async def one(observer: Observer, c: CallInfo) -> None:
            box[0] = await observer.before_send(c, box[0])

        await self._each(call, one)
        return box[0]

    async def answered(self, call: CallInfo, response: Response, elapsed: float) -> None:
        await self._each(call, lambda o, c: o.answered(c, response, elapsed))

    def attempt_failed(self, call: CallInfo, error: AlloyError, elapsed: float) -> None:
        self._sync(call, lambda o, c: o.attempt_failed(c, error, elapsed))

    async def retrying(self, call: CallInfo, delay: float, reason: AlloyError) -> None:
        await self._each(call, lambda o, c: o.retrying(c, delay, reason))

    def call_ended(self, call: CallInfo, error: BaseException | None) -> None:
        self._sync(call, lambda o, c: o.call_ended(c, error))

    def _sync(self, call: CallInfo, fn: Callable[[Observer, CallInfo], None]) -> None:
        states = call.state
        try:
            for observer, state in zip(self._all, states, strict=True):
                call.state = state
                fn(observer, call)
        finally:
            call.state = states


def members(observer: Observer | None) -> tuple[Observer, ...]:
    """The observers ``observer`` stands for (itself, or those of a :func:`chain`)."""
    if observer is None:
        return ()
    if isinstance(observer, _Chain):
        return observer._all
    return (observer,)


def chain(observers: Sequence[Observer | None]) -> Observer | None:
    """One observer calling each of ``observers`` (Nones dropped), or None for none."""
    present = [o for o in observers if o is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]
    return _Chain(present)
