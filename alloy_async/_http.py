"""Request and Response value objects and the header checks. No I/O here.

Building a request and reading a response are in ``_wire.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs

from ._checks import check_number
from .errors import ConfigurationError, InvalidRequestError

__all__ = [
    "Headers",
    "LowerCaseHeaders",
    "Request",
    "Response",
    "Secret",
    "Timeout",
    "TimeoutTypes",
    "bearer",
    "check_header",
    "header_value_ok",
]

#: Methods that never change state at the API: safe to send again after any failure.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})


#: Header names whose values are credentials.
SENSITIVE_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-alloy-user-token", "cookie", "x-api-key"}
)


class Headers(dict[str, str]):
    """A plain ``dict`` of headers whose repr masks credentials.

    Used for the headers the SDK builds, so that an error tracker capturing the local variables
    of a frame (Sentry, rich tracebacks) never records the API key in the clear.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(dict(Headers.masked(self)))

    @staticmethod
    def masked(headers: Mapping[str, str]) -> Headers:
        """A copy of ``headers`` whose credentials read ``[REDACTED]``."""
        return Headers(
            {k: ("[REDACTED]" if k.lower() in SENSITIVE_HEADERS else v) for k, v in headers.items()}
        )

    __str__ = __repr__

    def copy(self) -> Headers:
        """A copy that keeps masking (``dict.copy`` would return a plain dict)."""
        return Headers(self)


class LowerCaseHeaders(Mapping[str, str]):
    """A read-only view of a case-insensitive header mapping (aiohttp's ``CIMultiDictProxy``):
    lookups in any case, names in lower case when iterated.

    Made in constant time: a transport wraps each answer's headers instead of copying them
    (lower-casing every name of every answer was a few percent of a call's client CPU).
    A name sent twice reads as its first value.
    """

    __slots__ = ("_headers",)

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._headers = headers

    def __getitem__(self, name: str) -> str:
        return self._headers[name]

    def get(self, name: str, default: Any = None) -> Any:
        """The first value of ``name`` (any case), or ``default``."""
        return self._headers.get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._headers

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(name.lower() for name in self._headers))

    def __len__(self) -> int:
        return len(dict.fromkeys(name.lower() for name in self._headers))

    def __repr__(self) -> str:
        return repr(dict(self.items()))


class Secret:
    """A credential (the ``authorization`` header's value) that no attribute holds in the clear.

    The value is reachable only by calling ``reveal()`` (it lives in a closure), and the repr
    is masked: an error tracker serializing a frame's locals, however deep it walks mappings,
    sequences and attributes, never reaches it as a string.
    """

    __slots__ = ("reveal",)

    reveal: Callable[[], str]

    def __init__(self, value: str) -> None:
        def reveal() -> str:
            """The value, in the clear."""
            return value

        self.reveal = reveal

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and self.reveal() == other.reveal()

    def __hash__(self) -> int:
        return hash(self.reveal())

    def __repr__(self) -> str:
        return "Secret('[REDACTED]')"

    __str__ = __repr__


def bearer(api_key: str) -> Secret:
    """The ``authorization`` value for ``api_key``, as a :class:`Secret`. Requests carry it
    apart from their stored headers (``Request.auth``)."""
    return Secret(f"Bearer {api_key}")


def _seconds(instance: object, attribute: attrs.Attribute[float | None], value: object) -> None:
    name = attribute.name
    check_number(f"Timeout {name}", value, low=0, strict=True, optional=True, field=name)


@attrs.frozen(slots=True)
class Timeout:
    """How long one attempt of a call may take, phase by phase; each in seconds, None for no
    limit. A plain number ``x`` given as a timeout means ``Timeout(total=x)``.

    Attributes:
        total: the whole attempt: waiting for a pooled connection, connecting, sending and
            reading the answer. A call's ``deadline`` lowers it to what is left of the call.
        connect: establishing one new connection (TCP, and TLS for https).
        pool: waiting for a pooled connection when all ``max_connections`` are busy. aiohttp
            times the wait and the connecting that follows with one timer: it is set to
            ``pool + connect`` (``pool`` alone when ``connect`` is None), so with ``pool``
            alone the wait and a new connection together get ``pool`` seconds.
        read: between two chunks of the answer (aiohttp's ``sock_read``), from the moment
            the request is written.

    A timeout while waiting for a connection or connecting is "never sent"
    (:class:`~alloy_async.errors.APITimeoutError` with ``sent=False``, retried); one after
    the request was written (``read``, or ``total`` then) may have been acted on.

    Raises:
        InvalidRequestError: a value that is not a number > 0 or None; ``field`` names it.
    """

    total: float | None = attrs.field(default=None, validator=_seconds)
    connect: float | None = attrs.field(default=None, validator=_seconds)
    pool: float | None = attrs.field(default=None, validator=_seconds)
    read: float | None = attrs.field(default=None, validator=_seconds)

    @property
    def phased(self) -> bool:
        """Whether a phase (``connect``, ``pool`` or ``read``) is bounded apart from ``total``."""
        return self.connect is not None or self.pool is not None or self.read is not None


#: What a ``timeout=`` argument takes: seconds per attempt, a :class:`Timeout`, or None.
TimeoutTypes = float | Timeout | None


def check_timeout(value: object, error: type[Exception] = InvalidRequestError) -> TimeoutTypes:
    """``value`` as a ``timeout=`` argument (a number > 0 kept as it is, a :class:`Timeout`,
    or None), else ``error`` (:class:`InvalidRequestError` or :class:`ConfigurationError`)
    naming ``timeout``."""
    if value is None or isinstance(value, Timeout):
        return value
    try:
        check_number("timeout", value, low=0, strict=True)
    except InvalidRequestError as exc:
        if error is InvalidRequestError:
            raise
        raise error(f"{exc} (seconds, or alloy_async.Timeout)") from None
    assert isinstance(value, (int, float))
    return value


def timeout_total(timeout: TimeoutTypes) -> float | None:
    """The ``total`` of ``timeout`` (a number is its own total)."""
    return timeout.total if isinstance(timeout, Timeout) else timeout


def with_total(timeout: TimeoutTypes, total: float) -> TimeoutTypes:
    """``timeout`` with ``total`` lowered to ``total`` (the call's deadline), phases kept."""
    if isinstance(timeout, Timeout):
        return attrs.evolve(timeout, total=total)
    return total


@attrs.frozen(slots=True)
class Request:
    """One HTTP request, as a transport sends it.

    Attributes:
        method: upper-case HTTP method.
        url: the absolute URL, query string included.
        body: the encoded body, or None.
        timeout: seconds the transport may spend on this one attempt, a
            :class:`~alloy_async.Timeout` (phase by phase), or None.
        path: the URL path, for messages and logs (never holds the query string).
        auth: the ``authorization`` value, or None. Kept apart from the stored headers (which
            then hold no credential of the client's) and added by ``headers`` when read; a
            stored ``authorization`` header wins over it.

    The constructor takes the headers to store as ``headers=``; read them back, with
    ``authorization``, through :attr:`headers`.
    """

    method: str
    url: str
    _headers: Mapping[str, str] = attrs.field(factory=dict)
    body: bytes | None = None
    timeout: float | Timeout | None = None
    path: str = ""
    auth: Secret | None = None

    @property
    def headers(self) -> Mapping[str, str]:
        """The headers to send (names lower-case), ``authorization`` included.

        Built on each read: ``authorization`` from ``auth``, then the stored headers (a stored
        ``authorization`` wins). Treat it as read-only.
        """
        auth = self.auth
        if auth is None:
            return self._headers
        return Headers({"authorization": auth.reveal(), **self._headers})

    def _plain_headers(self) -> dict[str, str]:
        """What ``headers`` reads, as a new plain ``dict``, for a transport to hand straight to
        its HTTP library (multidict copies a plain dict about 4x faster than a subclass).
        Its repr is not masked: never keep it in a variable."""
        auth = self.auth
        if auth is None:
            return dict(self._headers)
        return {"authorization": auth.reveal(), **self._headers}

    def with_headers(self, headers: Mapping[str, str]) -> Request:
        """A copy with ``headers`` added to (or replacing) the stored ones; ``auth`` is kept
        apart (``attrs.evolve(request, headers=request.headers)`` would store it)."""
        return attrs.evolve(self, headers=Headers({**self._headers, **headers}))

    def __repr__(self) -> str:
        # Never print headers: they may hold credentials.
        return f"<Request {self.method} {self.path or self.url}>"


@attrs.frozen(slots=True)
class Response:
    """One HTTP response, as a transport returns it.

    Attributes:
        status: the HTTP status code.
        headers: header names (lower-case) to values.
        body: the raw body bytes.
    """

    status: int
    headers: Mapping[str, str] = attrs.field(factory=dict)
    body: bytes = b""

    @property
    def request_id(self) -> str | None:
        """The request id the server gave this answer, if any."""
        h = self.headers
        return h.get("x-request-id") or h.get("request-id") or h.get("x-amzn-requestid")

    def __repr__(self) -> str:
        return f"<Response {self.status} ({len(self.body)} bytes)>"


def header_value_ok(value: str) -> bool:
    """Whether ``value`` may be sent as a header value: no CR, LF or NUL (header injection).

    The one such check: user ids, the API version, extra and default headers (through
    :func:`check_header`) and the third party's ``additional_headers`` all go through it.
    """
    return "\r" not in value and "\n" not in value and "\x00" not in value


def check_header(name: str, value: object) -> str:
    """Return the header value as a string, refusing CR, LF and NUL (header injection)."""
    if not isinstance(value, str):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        else:
            raise InvalidRequestError(
                f"header {name!r} must be a string, got {type(value).__name__}", field=name
            )
    if not header_value_ok(value):
        raise InvalidRequestError(f"header {name!r} may not contain CR, LF or NUL", field=name)
    if not name or any(c in name for c in '\r\n\x00:() <>@,;\\"/[]?={}\t'):
        raise InvalidRequestError(f"invalid header name {name!r}", field=name)
    return value


def normalize_base_url(base_url: str) -> str:
    """Strip a trailing slash and check the scheme; http is allowed only for loopback hosts."""
    url = base_url.strip().rstrip("/")
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError as exc:
        raise ConfigurationError(f"base_url is not a valid URL: {base_url!r} ({exc})") from None
    if parts.scheme not in ("http", "https") or not hostname:
        raise ConfigurationError(
            f"base_url must be an absolute http(s) URL, got {base_url!r} (see ALLOY_BASE_URL)"
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigurationError("base_url may not hold a query, a fragment or credentials")
    if parts.scheme == "http" and not is_loopback(hostname):
        raise ConfigurationError(
            f"plain http is refused for non-loopback host {hostname!r}: use https"
        )
    return url


def is_loopback(host: str) -> bool:
    """True for localhost, 127.0.0.0/8 and ::1."""
    import ipaddress

    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind_loop(bound: asyncio.AbstractEventLoop | None, what: str) -> asyncio.AbstractEventLoop:
    """The running loop, if ``what`` (bound to ``bound``, or to nothing yet) may use it.

    The one loop-binding check: a client or transport is used from one event loop only, and
    another loop gets a :class:`~alloy_async.errors.ConfigurationError` instead of aiohttp's
    "Event loop is closed" or a hang.
    """
    loop = asyncio.get_running_loop()
    if bound is None or bound is loop:
        return loop
    if bound.is_closed():
        raise ConfigurationError(
            f"{what} was used in an event loop that is now closed; "
            "create the client inside the loop that uses it"
        )
    raise ConfigurationError(f"{what} is bound to another event loop; create one client per loop")
