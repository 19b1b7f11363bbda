"""The wire layer, sans I/O: bytes and values in, values or exceptions out.

gidgethub's ``sansio`` split: nothing here awaits, sleeps, reads a clock other than the wall
clock ``Retry-After`` dates need, or touches a transport, so every function can be tested with
plain values and bytes.

* building a request: :func:`common_headers`, :func:`build_url`, :func:`build_request` (URL,
  headers, the JSON body; NaN and Infinity refused naming where they are);
* reading a response: :func:`decode_json` (a 2xx body; :func:`loads` keeps integers beyond
  64 bits exact), :func:`error_from_response` (any documented error-body shape ->
  :class:`~alloy_async.errors.APIStatusError`), :func:`parse_retry_after`.

The retry loop and the transport calls live in ``_core.py`` and use these.
"""

from __future__ import annotations

import email.utils
import functools
import json as stdlib_json
import re
import time
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import quote, urlencode

import orjson

from ._http import (
    Headers,
    Request,
    Response,
    Secret,
    Timeout,
    check_header,
    check_timeout,
    header_value_ok,
)
from .errors import (
    APIStatusError,
    InvalidRequestError,
    InvalidResponseError,
    RateLimitError,
    status_error_class,
)
from .models._base import non_finite_path
from .models._fields import SNAKE

__all__ = [
    "RequestDefaults",
    "build_request",
    "build_url",
    "common_headers",
    "decode_json",
    "encode_path_param",
    "error_from_response",
    "loads",
    "parse_retry_after",
]


# -- building a request --------------------------------------------------------------------


class RequestDefaults(Protocol):
    """What :func:`build_request` takes from the client (``Requester`` is one)."""

    @property
    def base_url(self) -> str:
        """``https://host[/prefix]``, no trailing slash."""

    @property
    def base_headers(self) -> Mapping[str, str]:
        """Headers every request carries but ``authorization`` (:func:`common_headers`)."""

    @property
    def auth(self) -> Secret | None:
        """The ``authorization`` value every request carries (``_http.bearer``), or None."""

    @property
    def user_id(self) -> str | None:
        """The default ``x-alloy-userid``, or None."""

    @property
    def timeout(self) -> float | Timeout | None:
        """The default per-attempt timeout (seconds or a :class:`Timeout`), or None."""


def common_headers(
    api_version: str, user_agent: str, default_headers: Mapping[str, str]
) -> Headers:
    """The headers every request of a client carries besides ``authorization`` (which is
    ``RequestDefaults.auth``): version, user agent, ``accept``, then ``default_headers`` (names
    lower-cased, values checked).

    A :class:`Headers` masks credentials in its repr (``default_headers`` may hold some).
    """
    headers = Headers(
        {
            "x-api-version": api_version,
            "user-agent": user_agent,
            "accept": "application/json",
        }
    )
    for name, value in default_headers.items():
        headers[name.lower()] = check_header(name, value)
    return headers


def encode_path_param(name: str, value: object) -> str:
    """Percent-encode one path parameter so it can never leave its segment.

    Raises:
        InvalidRequestError: the value is empty, not a string, or is ``.``/``..``.
    """
    if not isinstance(value, str):
        raise InvalidRequestError(
            f"{name} must be a string, got {type(value).__name__}", field=name
        )
    if not value or not value.strip():
        raise InvalidRequestError(f"{name} must be a non-empty string", field=name)
    if value in (".", ".."):
        raise InvalidRequestError(f"{name} may not be {value!r}", field=name)
    if "\x00" in value:
        raise InvalidRequestError(f"{name} may not contain NUL", field=name)
    return quote(value, safe="")


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def build_url(
    base_url: str, template: str, path_params: Mapping[str, object], query: Mapping[str, Any] | None
) -> tuple[str, str]:
    """Fill ``template`` (e.g. ``/users/{userId}``) and return ``(url, path)``.

    Every path parameter is percent-encoded (``/`` included); query values that are None are
    dropped, lists repeat the key.
    """
    path = template.format_map({k: encode_path_param(k, v) for k, v in path_params.items()})
    return _with_query(base_url + path, query), path


def _with_query(url: str, query: Mapping[str, Any] | None) -> str:
    if query:
        pairs: list[tuple[str, str]] = []
        for key, value in query.items():
            if value is None:
                continue
            if isinstance(value, (list, tuple)):
                pairs.extend((key, _query_value(v)) for v in value)
            else:
                pairs.append((key, _query_value(value)))
        if pairs:
            url += "?" + urlencode(pairs)
    return url


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


def build_request(
    defaults: RequestDefaults,
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
    """Build one :class:`Request` (no I/O); raises :class:`InvalidRequestError`.

    ``user_id`` and ``timeout`` override the defaults' when not None (a call's ``timeout``
    replaces the client's whole, and is checked here); ``extra_query`` and
    ``extra_body`` are merged over ``query`` and ``json``; ``extra_headers`` over the rest.
    ``route``: the ``(url, path)`` already built (``actions.execute`` caches its own), instead of
    ``template`` and ``path_params``.
    """
    if extra_query:
        query = {**query, **extra_query} if query else dict(extra_query)
    if route is not None:
        url, path = route
        if query:
            url = _with_query(url, query)
    elif query:
        url, path = build_url(defaults.base_url, template, path_params or {}, query)
    else:
        url, path = _build_path_url(defaults.base_url, template, path_params)
    headers = Headers(defaults.base_headers)
    uid = user_id if user_id is not None else defaults.user_id
    if uid is not None:
        if not isinstance(uid, str):
            raise InvalidRequestError("user_id must be a non-empty string", field="user_id")
        _check_user_id(uid)
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
            refuse_non_finite(method, path, json, extra_body)
        headers["content-type"] = "application/json"
    if extra_headers:
        for name, value in extra_headers.items():
            headers[name.lower()] = check_header(name, value)
    # Positional: a third cheaper than keywords for a frozen attrs class (hot path).
    timeout = defaults.timeout if timeout is None else check_timeout(timeout)
    return Request(method, url, headers, body, timeout, path, defaults.auth)


@functools.lru_cache(maxsize=65_536)
def _check_user_id(uid: str) -> None:
    """Raise for a bad user id. Memoised: a bulk run sends the same few thousand over and
    over, and only good ones are remembered (an error is raised, never cached)."""
    if not uid or uid.isspace():
        raise InvalidRequestError("user_id must be a non-empty string", field="user_id")
    if not header_value_ok(uid):
        check_header("x-alloy-userid", uid)  # raises, naming the header


_CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def _argument_name(key: str) -> str:
    """A body key as the argument the caller gave it as (``requestBody``: ``request_body``)."""
    return SNAKE.get(key) or _CAMEL_HUMP.sub("_", key).lower()


def refuse_non_finite(
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


# -- JSON ------------------------------------------------------------------------------------

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


# -- errors ------------------------------------------------------------------------------------


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


# -- Retry-After -------------------------------------------------------------------------------


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date).

    Returns None when there is no usable header. A date in the past gives 0. ``now`` (epoch
    seconds) is the wall clock an HTTP date is measured from; default :func:`time.time`.
    """
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000.0
        except ValueError:
            value = -1.0
        if value >= 0 and value == value and value != float("inf"):
            return value
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        value = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        now = time.time() if now is None else now
        try:
            return max(0.0, when.timestamp() - now)
        except (OverflowError, ValueError, OSError):
            return None
    if value != value or value < 0 or value == float("inf"):
        return None
    return value
