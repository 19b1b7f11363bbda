"""FakeTransport: calls an async handler in-process instead of the network."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from .._http import Request, Response
from ..errors import ConfigurationError

__all__ = ["FakeTransport", "Handler"]

Handler = Callable[[Request], Awaitable[Response]]


class FakeTransport:
    """A :class:`~alloy_async.transports.base.Transport` backed by an async function.

    The handler receives each :class:`Request` and returns a :class:`Response`, or raises one of
    the transport errors to simulate a network fault. Every request is kept in ``requests``
    unless ``record=False`` (benchmarks over millions of calls).
    """

    def __init__(self, handler: Handler, *, record: bool = True) -> None:
        self._handler = handler
        self._record = record
        self.requests: list[Request] = []
        self.closed = False

    async def send(self, request: Request) -> Response:
        """Pass the request to the handler."""
        if self.closed:
            raise ConfigurationError("transport is closed")
        if self._record:
            self.requests.append(request)
        return await self._handler(request)

    async def aclose(self) -> None:
        """Mark the transport closed."""
        self.closed = True

    def __repr__(self) -> str:
        return f"<FakeTransport requests={len(self.requests)} closed={self.closed}>"
