"""The Transport protocol: one coroutine to send a request, one to close."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .._http import Request, Response

__all__ = ["Transport"]


@runtime_checkable
class Transport(Protocol):
    """Sends one :class:`Request` and returns its :class:`Response`.

    A transport knows nothing of auth, retries or models. It must translate its own failures
    into alloy-async errors:

    * :class:`~alloy_async.errors.APIConnectionError` when the request was certainly not sent
      (connection refused, DNS failure, the request could not be written);
    * :class:`~alloy_async.errors.APITimeoutError` on a timeout (``sent=True`` when the request
      may already have been written);
    * :class:`~alloy_async.errors.OutcomeUnknownError` when the request was written and the
      connection failed before a complete answer arrived;
    * :class:`~alloy_async.errors.TLSError` / :class:`~alloy_async.errors.ProxyError` when TLS
      or the proxy refused the request in a way no retry can fix (never sent).

    A transport is closed by the client it is given to (``AlloyClient.aclose``); ``aclose``
    must therefore be safe to call more than once.
    """

    async def send(self, request: Request) -> Response:
        """Send one request and return the complete response."""
        ...

    async def aclose(self) -> None:
        """Release connections. Safe to call more than once."""
        ...
