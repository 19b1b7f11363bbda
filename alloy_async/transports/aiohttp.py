"""AiohttpTransport: the default transport, one pooled aiohttp ClientSession.

This is the only module of the SDK's client side that imports aiohttp. Every aiohttp
exception is translated here, in :func:`_translate`, and none escapes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
from typing import Any

import aiohttp

from .._http import LowerCaseHeaders, Request, Response, Timeout, bind_loop
from ..errors import (
    AlloyError,
    APIConnectionError,
    APITimeoutError,
    ConfigurationError,
    InvalidRequestError,
    OutcomeUnknownError,
    ProxyError,
    ResponseTooLargeError,
)
from ._network import (
    CertTypes,
    ProxyRoute,
    VerifyTypes,
    proxied_headers,
    proxy_refusal,
    proxy_table,
    ssl_context,
    tls_error,
    tunnel_headers,
)

__all__ = ["AiohttpTransport"]

#: Default cap on one response body (bytes), big enough for any Alloy answer and small
#: enough to be safe.
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024

#: Default seconds an idle pooled connection is kept. It must be shorter than the idle timeout
#: of the server at the other end: a server closes an idle keep-alive connection on its own,
#: and a request written into a connection whose FIN is still in flight fails after it may have
#: been sent, so a POST execute ends as OutcomeUnknownError for nothing. Common server idle
#: timeouts are 5 s (Node.js http, uvicorn, Apache) and 2 s (gunicorn); 1.5 s stays below all of
#: them with room for one round trip (the server's idle clock starts before ours). The price is a
#: new connection after a 1.5 s lull; pass a larger value when a load balancer with a known,
#: longer idle timeout (e.g. 60 s) is in front.
DEFAULT_KEEPALIVE_TIMEOUT = 1.5

#: Set on an exception that left :meth:`_PhaseConnector.connect`: the request was not sent.
_BEFORE_SENDING = "_alloy_raised_before_sending"


class _PhaseConnector(aiohttp.TCPConnector):
    """A :class:`aiohttp.TCPConnector` that marks every exception raised while connecting.

    ``connect()`` (a documented connector method) covers waiting for a free pool slot,
    resolving and connecting; aiohttp writes nothing of the request before it returns. So an
    exception that leaves it (a timeout's cancellation included) proves "never sent",
    whichever aiohttp timer fired: this does not depend on the order of timers. On success
    this costs one coroutine frame per request, nothing else (no tracing, no context vars).
    """

    async def connect(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().connect(*args, **kwargs)
        except BaseException as exc:
            # Every exception has a __dict__; if one did not, it would stay unmarked and be
            # reported as "maybe sent": the safe side.
            with contextlib.suppress(AttributeError):
                setattr(exc, _BEFORE_SENDING, True)
            raise


def _raised_before_sending(exc: BaseException) -> bool:
    """Whether ``exc`` came out of :meth:`_PhaseConnector.connect`.

    When aiohttp's ``total`` timer fires during ``connect()``, the cancellation (marked) becomes
    a TimeoutError raised from it, hence the look at the cause (``from exc``) and the context
    (older aiohttp raises ``from None``, which keeps ``__context__``).
    """
    return (
        getattr(exc, _BEFORE_SENDING, False)
        or getattr(exc.__cause__, _BEFORE_SENDING, False)
        or getattr(exc.__context__, _BEFORE_SENDING, False)
    )


def _translate(
    exc: BaseException,
    request: Request,
    connecting: bool = False,
    route: ProxyRoute | None = None,
) -> AlloyError:
    """Map one aiohttp / OS failure to the error tree, telling "not sent" from "sent".

    ``connecting`` is True when the failure is known to come from waiting for a pooled
    connection or connecting (see :class:`_PhaseConnector`): nothing was written then.
    ``route`` is the proxy the request went through, if any. Order matters: the most
    specific classes come first.
    """
    m, p = request.method, request.path
    refused = _refused(exc, request, connecting, route)
    if refused is not None:
        return refused
    # The connection was never made: nothing reached the server.
    if isinstance(exc, aiohttp.ConnectionTimeoutError) or (
        connecting and isinstance(exc, asyncio.TimeoutError)
    ):
        return APITimeoutError(
            "timed out waiting for a connection (none was free in the pool, or connecting "
            "took too long); the request was not sent",
            method=m,
            path=p,
            sent=False,
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        return APIConnectionError(f"could not connect: {exc}", method=m, path=p)
    if isinstance(exc, aiohttp.InvalidURL):
        return InvalidRequestError(f"invalid URL for {m} {p}")
    if connecting:
        return APIConnectionError(
            f"could not connect: {type(exc).__name__}: {exc}", method=m, path=p
        )
    # From here on the request may have been written: the server may have acted.
    if isinstance(exc, (aiohttp.SocketTimeoutError, asyncio.TimeoutError)):
        return APITimeoutError("timed out waiting for the answer", method=m, path=p, sent=True)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return OutcomeUnknownError("server disconnected before answering", method=m, path=p)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return OutcomeUnknownError(f"incomplete answer: {exc}", method=m, path=p)
    if isinstance(exc, aiohttp.ClientResponseError):
        return OutcomeUnknownError(f"malformed answer: {exc.message}", method=m, path=p)
    return OutcomeUnknownError(
        f"connection failed after sending: {type(exc).__name__}: {exc}", method=m, path=p
    )


def _refused(
    exc: BaseException, request: Request, connecting: bool, route: ProxyRoute | None
) -> AlloyError | None:
    """A TLS or proxy refusal (never sent), or None for any other failure."""
    m, p = request.method, request.path
    tls = tls_error(exc, connecting, m, p)
    if tls is not None:
        return tls
    shown = route.shown if route is not None else "the proxy"
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        why = exc.os_error.strerror or type(exc.os_error).__name__
        return APIConnectionError(
            f"could not connect to the proxy {shown}: {why}", method=m, path=p
        )
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        return proxy_refusal(exc.status, route, m, p)
    return None


@functools.lru_cache(maxsize=128)
def _client_timeout(t: float | Timeout | None, marked: bool) -> aiohttp.ClientTimeout:
    """The attempt budget ``t`` as one immutable, shared object per value.

    ``total`` bounds the whole attempt: waiting for a pooled connection, connecting, writing
    and reading. It is the only timer needed for a plain number: when it fires during
    ``connect()``, :class:`_PhaseConnector` marks the exception, which tells "never sent"
    apart. (The former ``connect=t`` could not: it starts after ``total``, so with the same
    value ``total`` always fired first and a pool wait was reported as sent.) A ``sock_read``
    of the same ``t`` could never fire before ``total`` and cost a timer re-armed on every
    chunk read: left out too. A :class:`Timeout` with phases adds their timers (see
    :func:`_phased`).

    With a caller's session nothing is marked (its connector is not ours): ``connect`` is
    then set a little below ``total`` so that, normally, a pool wait or a slow connect ends
    with aiohttp's ConnectionTimeoutError (never sent) before ``total`` fires.

    ``ceil_threshold=inf``: aiohttp rounds timeouts >= 5 s up to a whole second of the loop
    clock, which would stretch the budget by up to 1 s and could make the two timers above tie.
    """
    if isinstance(t, Timeout):
        if t.phased:
            return _phased(t, marked)
        t = t.total
    if t is None:
        return aiohttp.ClientTimeout(total=None, ceil_threshold=math.inf)
    if marked:
        return aiohttp.ClientTimeout(total=t, ceil_threshold=math.inf)
    return aiohttp.ClientTimeout(total=t, connect=_below(t), ceil_threshold=math.inf)


def _below(total: float) -> float:
    """A connect budget that normally fires before ``total`` does (see :func:`_client_timeout`)."""
    return total - min(0.1, total / 10)


def _phased(t: Timeout, marked: bool) -> aiohttp.ClientTimeout:
    """A :class:`Timeout` with phases as aiohttp's timers.

    - ``total`` -> ``total``; ``read`` -> ``sock_read`` (each chunk of the answer; aiohttp
      arms it once the connection is ready, so it also covers writing the request);
    - ``connect`` -> ``sock_connect`` (one new connection: TCP, and TLS for https);
    - ``pool``: aiohttp has no timer for the pool wait alone. Its ``connect`` timer covers
      the wait and the new connection after it, so it is set to ``pool + connect``
      (``pool`` alone when ``connect`` is None: the wait and connecting share it).

    Every one of them that fires before the request is written raises out of ``connect()``
    (marked: never sent) or as aiohttp's ConnectionTimeoutError (never sent, also with a
    caller's session); ``sock_read`` raises SocketTimeoutError: maybe sent.
    """
    total = t.total
    if t.pool is not None:
        connect: float | None = t.pool + (t.connect or 0.0)
    elif not marked and total is not None:
        connect = _below(total)
    else:
        connect = None
    return aiohttp.ClientTimeout(
        total=total,
        connect=connect,
        sock_connect=t.connect,
        sock_read=t.read,
        ceil_threshold=math.inf,
    )


class AiohttpTransport:
    """Sends requests over one lazily created, pooled :class:`aiohttp.ClientSession`.

    Args:
        max_connections: the connection pool size (``TCPConnector(limit=...)``).
        proxy: ``"http://user:pass@host:port"`` (or ``https://``): every request goes through
            it, whatever the environment says. The credentials are kept as a secret: masked
            in reprs and never in an error message.
        trust_env: honour ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` (http proxies only),
            ``NO_PROXY``, and ``SSL_CERT_FILE``/``SSL_CERT_DIR`` for ``verify=True``, as httpx
            does (lower-case names win). False ignores all of them. Read once, here.
        verify: True (the system store), a CA bundle file or directory (hashed names, as
            ``openssl rehash`` makes), an :class:`ssl.SSLContext`, or False (no verification
            at all: unsafe, anyone on the path can read and change the traffic; for a test
            server only).
        cert: a client certificate for mutual TLS: a PEM file with the certificate and its
            (unencrypted) key, or a ``(certificate, key)`` tuple of files.
        session: a caller-owned session to use instead; it is not closed by :meth:`aclose`,
            and its own settings apply: none of the options above (nor ``keepalive_timeout``
            or ``connector_kwargs``) may be given with it.
        max_response_bytes: larger answers raise :class:`~alloy_async.ResponseTooLargeError`.
        keepalive_timeout: seconds an idle pooled connection is kept; keep it below the
            server's own idle timeout (see
            :data:`~alloy_async.transports.aiohttp.DEFAULT_KEEPALIVE_TIMEOUT`).
        connector_kwargs: extra keyword arguments for :class:`aiohttp.TCPConnector`
            (``local_addr``, ``resolver``, ...).

    The session is created on first use, inside the running event loop, and bound to it: use
    from another loop raises :class:`~alloy_async.ConfigurationError` instead of "Event loop
    is closed".

    Raises:
        ConfigurationError: a bad value, naming the option (a proxy URL is never quoted).
    """

    #: ``Request.timeout`` bounds each attempt here, and a timeout says whether the request
    #: was sent: the pipeline hands a call's deadline to it (see ``Requester._send_within``).
    enforces_timeout = True

    def __init__(
        self,
        *,
        max_connections: int = 100,
        proxy: str | None = None,
        trust_env: bool = True,
        verify: VerifyTypes = True,
        cert: CertTypes | None = None,
        session: aiohttp.ClientSession | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT,
        connector_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if max_connections < 1:
            raise ConfigurationError("max_connections must be at least 1")
        options = {
            "max_connections": max_connections != 100,
            "proxy": proxy is not None,
            "trust_env": trust_env is not True,
            "verify": verify is not True,
            "cert": cert is not None,
            "keepalive_timeout": keepalive_timeout != DEFAULT_KEEPALIVE_TIMEOUT,
            "connector_kwargs": bool(connector_kwargs),
        }
        given = [name for name, changed in options.items() if changed]
        if session is not None and given:
            raise ConfigurationError(
                f"{', '.join(given)} cannot be combined with session=: a caller's session "
                "brings its own connector; configure it there, or drop session="
            )
        if connector_kwargs and "ssl" in connector_kwargs and (options["verify"] or cert):
            raise ConfigurationError("pass either verify=/cert= or connector_kwargs['ssl']")
        self._max_connections = max_connections
        self._session = session
        self._owns_session = session is None
        self._max_response_bytes = max_response_bytes
        self._keepalive_timeout = keepalive_timeout
        self._connector_kwargs = dict(connector_kwargs or {})
        if session is None:
            self._proxies = proxy_table(proxy, trust_env)
            context = ssl_context(verify, cert, trust_env)
            if context is not None:
                self._connector_kwargs["ssl"] = context
        else:
            self._proxies = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ConfigurationError("the transport is closed; create a new client")
        self._loop = bind_loop(self._loop, "this client")
        if self._session is None:
            connector = _PhaseConnector(
                limit=self._max_connections,
                limit_per_host=0,
                keepalive_timeout=self._keepalive_timeout,
                ttl_dns_cache=300,
                **self._connector_kwargs,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=True,
                # No skip_auto_headers: the pipeline always sends its own User-Agent, so aiohttp
                # adds none, and a session without skipped headers takes aiohttp's fast path
                # (skipping one copies and extends every request's headers: ~2 % of a call).
                raise_for_status=False,
                # The environment is read once, by _network.proxy_table: aiohttp's trust_env
                # would read it on every request (two thread hops), and would also add a
                # ~/.netrc login as Authorization beside the API key's (a ValueError).
                trust_env=False,
            )
        return self._session

    async def send(self, request: Request) -> Response:
        """Send one request; see :class:`~alloy_async.transports.base.Transport`."""
        session = self._session
        if session is None or self._closed or self._loop is not asyncio.get_running_loop():
            session = self._get_session()  # creates it, or raises (closed, another loop)
        # Our own session's connector marks what it raises (_PhaseConnector); a caller's does not.
        timeout = _client_timeout(request.timeout, self._owns_session)
        route = self._proxies.route(request.url) if self._proxies is not None else None
        try:
            # Awaited rather than `async with`: one coroutine frame less on every resume of
            # the call; the finally below releases the connection as __aexit__ would.
            resp = await session.request(
                request.method,
                request.url,
                # request.headers as a plain dict (multidict copies one about 4x faster than a
                # dict subclass), handed straight over: no local here holds the key.
                headers=request._plain_headers()
                if route is None
                else proxied_headers(request, route),
                data=request.body,
                timeout=timeout,
                allow_redirects=False,  # a redirect must never carry Authorization elsewhere
                proxy=None if route is None else route.url,
                proxy_headers=None if route is None else tunnel_headers(route),
            )
            try:
                if route is not None and resp.status == 407:
                    # A plain-http proxy's own answer (through a tunnel it is raised above).
                    raise proxy_refusal(407, route, request.method, request.path)
                length = resp.content_length
                if (
                    length is not None
                    and length <= self._max_response_bytes
                    and "content-encoding" not in resp.headers
                ):
                    # Not compressed: aiohttp reads exactly Content-Length bytes, within the cap.
                    body = await resp.read()
                else:
                    body = await self._read(resp, request)
            finally:
                # What ClientResponse.__aexit__ does: release (a writer still sending the body
                # is cancelled), then wait for the writer to end.
                resp.release()
                await resp.wait_for_close()
            return Response(resp.status, LowerCaseHeaders(resp.headers), body)
        except AlloyError:
            raise
        except asyncio.CancelledError:
            closed = self._closed_under(request)
            if closed is not None:
                raise closed from None
            raise
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            error = _translate(exc, request, _raised_before_sending(exc), route)
            if not isinstance(error, ProxyError):
                raise error from exc
        # Raised out here, with no cause or context: aiohttp's error holds the CONNECT
        # request's headers, the proxy credentials among them.
        raise error

    def _closed_under(self, request: Request) -> APIConnectionError | None:
        """The error for a call cancelled because the client closed while it waited for a
        pooled connection; None when this task itself is being cancelled (or the client is
        open): the cancellation then goes on as it is."""
        task = asyncio.current_task()
        if not self._closed or (task is not None and task.cancelling()):
            return None
        return APIConnectionError(
            "the client was closed while this call waited for a connection",
            method=request.method,
            path=request.path,
        )

    async def _read(self, resp: aiohttp.ClientResponse, request: Request) -> bytes:
        """The body of an answer :meth:`send` could not read at once (too large, compressed,
        or of unknown length), counted against the cap."""
        cap = self._max_response_bytes
        length = resp.content_length
        if length is not None and length > cap:
            raise ResponseTooLargeError(
                f"answer of {length} bytes exceeds max_response_bytes={cap} "
                f"({request.method} {request.path})"
            )
        # Count through the stream: aiohttp decompresses as it reads, so a small
        # Content-Length can still unpack to far more than the cap (a decompression bomb).
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(65536):
            size += len(chunk)
            if size > cap:
                raise ResponseTooLargeError(
                    f"answer exceeds max_response_bytes={cap} ({request.method} {request.path})"
                )
            chunks.append(chunk)
        return b"".join(chunks)

    async def aclose(self) -> None:
        """Close the session if this transport created it. Idempotent."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None and self._owns_session and not session.closed:
            await session.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("open" if self._session else "idle")
        proxy = self._proxies.explicit if self._proxies is not None else None
        shown = f" proxy={proxy.shown!r}" if proxy is not None else ""
        return f"<AiohttpTransport {state} max_connections={self._max_connections}{shown}>"
