"""AiohttpTransport: the default transport, one pooled aiohttp ClientSession.

This is the only module of the SDK's client side that imports aiohttp. Every aiohttp
exception is translated here, in :func:`_translate`, and none escapes.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import aiohttp

from .._http import Request, Response
from ..errors import (
    AlloyError,
    APIConnectionError,
    APITimeoutError,
    ConfigurationError,
    InvalidRequestError,
    OutcomeUnknownError,
    ResponseTooLargeError,
)

__all__ = ["AiohttpTransport"]

#: Default cap on one response body: big enough for any Alloy answer, small enough to be safe.
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024


def _translate(exc: BaseException, request: Request) -> AlloyError:
    """Map one aiohttp / OS failure to the error tree, telling "not sent" from "sent".

    Order matters: the most specific classes come first.
    """
    m, p = request.method, request.path
    # The connection was never made: nothing reached the server.
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return APITimeoutError(f"timed out connecting: {exc}", method=m, path=p, sent=False)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return APIConnectionError(f"could not connect: {exc}", method=m, path=p)
    if isinstance(exc, aiohttp.InvalidURL):
        return InvalidRequestError(f"invalid URL for {m} {p}")
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


@functools.lru_cache(maxsize=64)
def _client_timeout(t: float | None) -> aiohttp.ClientTimeout:
    """The attempt budget ``t``: ``total`` bounds the whole attempt and ``connect`` (which
    includes waiting for a pooled connection) tells "never sent" apart. A ``sock_read`` of the
    same ``t`` could never fire before ``total`` does (it starts later) and maps to the same
    error, so it is left out: it cost a timer re-armed on every chunk read. One immutable
    object per value is shared by all requests."""
    return aiohttp.ClientTimeout(total=t, connect=t)


class AiohttpTransport:
    """Sends requests over one lazily created, pooled :class:`aiohttp.ClientSession`.

    Args:
        max_connections: the connection pool size (``TCPConnector(limit=...)``).
        session: a caller-owned session to use instead; it is not closed by :meth:`aclose`.
        max_response_bytes: larger answers raise :class:`ResponseTooLargeError`.
        keepalive_timeout: seconds an idle pooled connection is kept.
        connector_kwargs: extra keyword arguments for :class:`aiohttp.TCPConnector`
            (``ssl``, ``local_addr``, ...).

    The session is created on first use, inside the running event loop, and bound to it: use
    from another loop raises :class:`ConfigurationError` instead of "Event loop is closed".
    """

    def __init__(
        self,
        *,
        max_connections: int = 100,
        session: aiohttp.ClientSession | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        keepalive_timeout: float = 30.0,
        connector_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if max_connections < 1:
            raise ConfigurationError("max_connections must be at least 1")
        self._max_connections = max_connections
        self._session = session
        self._owns_session = session is None
        self._max_response_bytes = max_response_bytes
        self._keepalive_timeout = keepalive_timeout
        self._connector_kwargs = connector_kwargs or {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise ConfigurationError("the transport is closed; create a new client")
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif self._loop is not loop:
            raise ConfigurationError(
                "this client was first used in another event loop; create one client per loop"
            )
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=0,
                keepalive_timeout=self._keepalive_timeout,
                ttl_dns_cache=300,
                **self._connector_kwargs,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=True,
                # The pipeline sets every header it wants; aiohttp adds no User-Agent of its own.
                skip_auto_headers=("User-Agent",),
                raise_for_status=False,
            )
        return self._session

    async def send(self, request: Request) -> Response:
        """Send one request; see :class:`~alloy_async.transports.base.Transport`."""
        session = self._get_session()
        timeout = _client_timeout(request.timeout)
        try:
            async with session.request(
                request.method,
                request.url,
                headers=request.headers,
                data=request.body,
                timeout=timeout,
                allow_redirects=False,  # a redirect must never carry Authorization elsewhere
            ) as resp:
                body = await self._read(resp, request)
                headers = {k.lower(): v for k, v in resp.headers.items()}
                return Response(status=resp.status, headers=headers, body=body)
        except AlloyError:
            raise
        except asyncio.CancelledError:
            # Closing the client cancels calls still waiting for a pooled connection; report
            # that as an SDK error unless this task itself is being cancelled.
            task = asyncio.current_task()
            cancelling = getattr(task, "cancelling", None)
            if self._closed and not (cancelling is not None and cancelling()):
                raise APIConnectionError(
                    "the client was closed while this call waited for a connection",
                    method=request.method,
                    path=request.path,
                ) from None
            raise
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise _translate(exc, request) from exc

    async def _read(self, resp: aiohttp.ClientResponse, request: Request) -> bytes:
        cap = self._max_response_bytes
        length = resp.content_length
        if length is not None and length > cap:
            raise ResponseTooLargeError(
                f"answer of {length} bytes exceeds max_response_bytes={cap} "
                f"({request.method} {request.path})"
            )
        # Always count through the stream: aiohttp decompresses as it reads, so a small
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
        return f"<AiohttpTransport {state} max_connections={self._max_connections}>"
