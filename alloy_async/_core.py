"""The request pipeline: build the request, send it under the retry policy, map errors.

``build -> [retry loop (backoff) -> transport.send] -> status -> error tree``.
Services reach HTTP only through :class:`Requester`.
"""

from __future__ import annotations

import asyncio
import functools
import json as stdlib_json
import logging
import os
import platform
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import backoff
import orjson

from . import __version__
from ._http import IDEMPOTENT_METHODS, Headers, Request, Response, build_url, check_header
from .errors import (
    AlloyError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ConfigurationError,
    InvalidRequestError,
    InvalidResponseError,
    OutcomeUnknownError,
    RateLimitError,
    status_error_class,
)
from .models._base import non_finite_path
from .retry import RetryPolicy, parse_retry_after
from .transports.base import Transport

__all__ = [
    "CallStats",
    "Requester",
    "ThrottleListener",
    "decode_json",
    "error_from_response",
    "loads",
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


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``headers`` with credentials replaced, for logs."""
    return {k: (_REDACTED if k.lower() in _SENSITIVE_HEADERS else v) for k, v in headers.items()}


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


# orjson reads an integer beyond 64 bits (below -2**63 or above 2**64 - 1) as a rounded float.
# Such an integer is a run of at least 19 digits: only a body with a run that long (found by
# mapping every digit to "0" and searching for 19 zeros, both in C) is looked at again.
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN = b"0" * 19
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1
_BEFORE_NUMBER = frozenset(b"[:, \t\r\n")
_AFTER_NUMBER = frozenset(b"]}, \t\r\n")


def loads(data: bytes) -> Any:
    """Decode JSON with orjson, keeping integers beyond 64 bits exact.

    orjson (the fast path) turns them into rounded floats; a body that has one is decoded
    again with the standard library's ``json``, which keeps them as ``int``.

    Raises:
        orjson.JSONDecodeError: not JSON.
    """
    value = orjson.loads(data)
    if data.translate(_DIGITS_TO_ZERO).find(_LONG_RUN) < 0:
        return value
    return _exact_integers(data, value)


def _exact_integers(data: bytes, value: Any) -> Any:
    """``value`` (orjson's reading of ``data``), or ``data`` read again by ``json`` when a run
    of 19 digits or more is an integer token beyond 64 bits (runs inside a float do not
    count; a string that looks like such a number only costs a slower decode)."""
    digits = data.translate(_DIGITS_TO_ZERO)
    size = len(data)
    at = digits.find(_LONG_RUN)
    while at >= 0:
        end = at + 19
        while end < size and digits[end] == 48:  # b"0": the run goes on
            end += 1
        start = at - 1 if at and data[at - 1] == 45 else at  # b"-"
        is_token = (not start or data[start - 1] in _BEFORE_NUMBER) and (
            end == size or data[end] in _AFTER_NUMBER
        )
        if is_token and (end - at > 20 or not _INT_MIN <= int(data[start:end]) <= _INT_MAX):
            try:
                return stdlib_json.loads(data)
            except (ValueError, RecursionError):  # beyond json's limits: keep orjson's
                return value
        at = digits.find(_LONG_RUN, end)
    return value


def decode_json(response: Response, request: Request) -> Any:
    """Decode a 2xx body: None when empty, else JSON (or :class:`InvalidResponseError`).

    Integers beyond 64 bits stay exact (see :func:`loads`).
    """
    body = response.body
    if not body or body.isspace():
        return None
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidResponseError(
            f"expected JSON from {request.method} {request.path}, got "
            f"{response.headers.get('content-type', 'no content type')} "
            f"({len(body)} bytes)",
            status=response.status,
            request_id=response.request_id,
        ) from None
    # loads(), inlined: this is the hot path (one translate and one find, both in C).
    if body.translate(_DIGITS_TO_ZERO).find(_LONG_RUN) < 0:
        return value
    return _exact_integers(body, value)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def error_from_response(response: Response, request: Request) -> APIStatusError:
    """Build the right :class:`APIStatusError` from any documented error-body shape."""
    status = response.status
    body: Any = None
    code = source = message = None
    details: Any = None
    raw = response.body
    if raw:
        try:
            body = loads(raw)
        except orjson.JSONDecodeError:
            body = raw[:2048].decode("utf-8", "replace")
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):  # {"error": {"code", "message", "source", "details"}}
            code = _text(err.get("code")) or _text(err.get("type"))
            message = _text(err.get("message"))
            source = _text(err.get("source"))
            details = err.get("details")
        elif isinstance(err, str):  # {"error": "CODE", "message": ...}
            if message is None and " " in err.strip() and "message" not in body:
                message = err
            else:
                code = err
        elif isinstance(err, int) and not isinstance(err, bool):  # {"error": 404, ...}
            code = str(err)
        if message is None:
            for key in ("message", "error_description", "detail", "msg", "title"):
                message = _text(body.get(key))
                if message:
                    break
        code = code or _text(body.get("code"))
        source = source or _text(body.get("source"))
        if details is None:
            details = body.get("details")
        errors = body.get("errors")
        if message is None and isinstance(errors, list) and errors:
            first = errors[0]
            message = _text(first.get("message")) if isinstance(first, dict) else _text(first)
    elif isinstance(body, str) and body.strip() and not body.lstrip().startswith("<"):
        message = body.strip()[:500]
    if not message:
        message = _REASONS.get(status, "HTTP error")
    kwargs: dict[str, Any] = {
        "status": status,
        "code": code,
        "source": source,
        "details": details,
        "request_id": response.request_id,
        "body": body,
        "method": request.method,
        "path": request.path,
    }
    cls = status_error_class(status)
    if cls is RateLimitError:
        return RateLimitError(message, retry_after=parse_retry_after(response.headers), **kwargs)
    if 300 <= status < 400:
        location = response.headers.get("location", "")
        message = f"unexpected redirect to {location[:200]!r} (redirects are not followed)"
    return cls(message, **kwargs)


_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    409: "Conflict",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


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
        loop = asyncio.get_running_loop()
        if self.loop is None:
            self.loop = loop
        elif self.loop is not loop:
            if self.loop.is_closed():
                raise ConfigurationError(
                    "this AlloyClient was used in an event loop that is now closed; "
                    "create the client inside the loop that uses it"
                )
            raise ConfigurationError(
                "this AlloyClient is bound to another event loop; create one client per loop"
            )


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
    default_headers: Mapping[str, str]
    throttle_listener: ThrottleListener | None = None
    _base_headers: Headers = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        # Headers masks credentials in its repr: error trackers that record frame locals
        # (Sentry and the like) never see the key.
        headers = Headers(
            {
                "authorization": f"Bearer {self.api_key}",
                "x-api-version": self.api_version,
                "user-agent": user_agent(),
                "accept": "application/json",
            }
        )
        for name, value in self.default_headers.items():
            headers[name.lower()] = check_header(name, value)
        object.__setattr__(self, "_base_headers", headers)

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
        timeout: float | None = None,
    ) -> Request:
        """Build one :class:`Request` (no I/O); raises :class:`InvalidRequestError`."""
        if extra_query:
            query = {**query, **extra_query} if query else dict(extra_query)
        if query:
            url, path = build_url(self.base_url, template, path_params or {}, query)
        else:
            url, path = _build_path_url(self.base_url, template, path_params)
        headers = Headers(self._base_headers)
        uid = user_id if user_id is not None else self.user_id
        if uid is not None:
            if not isinstance(uid, str) or not uid.strip():
                raise InvalidRequestError("user_id must be a non-empty string", field="user_id")
            if "\r" in uid or "\n" in uid or "\x00" in uid:
                check_header("x-alloy-userid", uid)  # raises, naming the header
            headers["x-alloy-userid"] = uid
        body: bytes | None = None
        if extra_body:
            if json is None:
                json = {}
            if not isinstance(json, dict):
                raise InvalidRequestError("extra_body needs a JSON object body", field="extra_body")
            json = {**json, **extra_body}
        if json is not None:
            try:
                body = orjson.dumps(json)
            except (TypeError, orjson.JSONEncodeError) as exc:
                raise InvalidRequestError(
                    f"the request body of {method} {path} is not JSON-serialisable: {exc}",
                    field="body",
                ) from None
            # orjson writes NaN and +-Infinity as null: look for them only when the encoded
            # body has a null at all (most bodies have none). find() is cheaper than "in".
            if body.find(b"null") >= 0:
                _refuse_non_finite(method, path, json, extra_body)
            headers["content-type"] = "application/json"
        if extra_headers:
            for name, value in extra_headers.items():
                headers[name.lower()] = check_header(name, value)
        return Request(
            method=method,
            url=url,
            headers=headers,
            body=body,
            timeout=self.timeout if timeout is None else timeout,
            path=path,
        )

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
        self._shared.check()
        policy = self.retry
        deadline_at = None
        if policy.deadline is not None:
            deadline_at = asyncio.get_running_loop().time() + policy.deadline
        call = _Call(
            request=request,
            idempotent=(request.method in IDEMPOTENT_METHODS) if idempotent is None else idempotent,
            policy=policy,
            deadline_at=deadline_at,
            scope=scope or request.path,
            stats=CallStats() if stats is None else stats,
        )
        try:
            # The success path skips the backoff machinery (a generator, handlers and a
            # closure per call): it is entered only once a first attempt asks for a retry.
            return await self.attempt(call)
        except _Retry as retry:
            await asyncio.sleep(retry.delay)
        return await _run(self, call)

    async def attempt(self, call: _Call) -> Response:
        """One attempt; raises :class:`_Retry` when another attempt should follow."""
        call.stats.attempts += 1
        request = call.request
        loop = asyncio.get_running_loop()
        # The clock is read only when a deadline or debug logging needs it (hot path).
        timed = call.deadline_at is not None or _log_enabled(logging.DEBUG)
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
            error: AlloyError = exc
            if isinstance(exc, OutcomeUnknownError) or (
                isinstance(exc, APITimeoutError) and exc.sent
            ):
                call.maybe_acted = True
            self._log_failure(call, exc, loop.time() - started if timed else 0.0)
            retry_after = None
        else:
            if _log_enabled(logging.DEBUG):
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
            if response.status == 404 and call.maybe_acted and request.method == "DELETE":
                return _gone(call, response)
            if response.status >= 500 and response.status not in _NOT_HANDLED_5XX:
                call.maybe_acted = True
            error = error_from_response(response, request)
            retry_after = parse_retry_after(response.headers)
            if response.status in (429, 503) and self.throttle_listener is not None:
                self.throttle_listener(call.scope, retry_after)
            self._log_failure(call, error, loop.time() - started if timed else 0.0)
        raise self._next_step(call, error, retry_after)

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
        if _log_enabled(logging.DEBUG):
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


#: Body keys of the documented requests -> the argument the caller gave them as.
_ARGUMENTS = {
    "requestBody": "request_body",
    "queryParameters": "query_parameters",
    "pathParams": "path_params",
    "additionalHeaders": "additional_headers",
}
_CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def _argument_name(key: str) -> str:
    return _ARGUMENTS.get(key) or _CAMEL_HUMP.sub("_", key).lower()


def _refuse_non_finite(
    method: str, path: str, json: Any, extra_body: Mapping[str, Any] | None
) -> None:
    """Raise :class:`InvalidRequestError` naming the first NaN or +-Infinity in a body, by
    the argument it came from (``request_body.items[3].price``, ``extra_body.ratio``)."""
    found = None
    if isinstance(json, dict):
        for key, value in json.items():
            if extra_body and key in extra_body:
                root = "extra_body" + (f".{key}" if str(key).isidentifier() else f"[{key!r}]")
            elif isinstance(key, str) and key.isidentifier():
                root = _argument_name(key)
            else:
                root = f"body[{key!r}]"
            found = non_finite_path(value, root)
            if found is not None:
                break
    else:
        found = non_finite_path(json, "body")
    if found is not None:
        where, value = found
        raise InvalidRequestError(
            f"the request body of {method} {path} cannot be sent: {where} is {value!r} "
            "(JSON has no NaN or Infinity; it would have been sent as null)",
            field=where,
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


def _build_path_url(
    base_url: str, template: str, path_params: Mapping[str, object] | None
) -> tuple[str, str]:
    """``build_url`` without a query, memoised for string parameters (the hot execute path
    builds the same few connector/action URLs over and over; percent-encoding them each time
    was a tenth of the in-process cost of a call)."""
    if not path_params:
        return _cached_url(base_url, template, ())
    items = tuple(path_params.items())
    for _, value in items:
        if type(value) is not str:
            return build_url(base_url, template, path_params, None)
    return _cached_url(base_url, template, items)


@functools.lru_cache(maxsize=4096)
def _cached_url(
    base_url: str, template: str, items: tuple[tuple[str, str], ...]
) -> tuple[str, str]:
    return build_url(base_url, template, dict(items), None)


def _build_only(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k in _BUILD_KEYS}


def _log_enabled(level: int) -> bool:
    return logger.isEnabledFor(level)


@backoff.on_exception(
    backoff.runtime,
    _Retry,
    value=_retry_delay,
    jitter=None,
    logger=None,  # we log ourselves, without request arguments
)
async def _run(requester: Requester, call: _Call) -> Response:
    return await requester.attempt(call)
