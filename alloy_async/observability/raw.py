"""``alloy.with_raw_response.<service>.<call>(...)``: the answer itself, beside the typed result.

Stainless's shape: the same call, returning a :class:`RawResponse` with the status, the
headers (rate-limit headers included), the request id and the time the last attempt took;
``.parse()`` gives the typed result the plain call returns. The answer is captured by an
:class:`~alloy_async.observability.base.Observer` on a view of the client, so plain calls
pay nothing for it.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from .._http import Response
from ..errors import ConfigurationError
from .base import CallInfo, Observer

__all__ = ["RawResponse", "RawServices"]

T = TypeVar("T")

#: Answers captured for the ``with_raw_response`` call running in this context.
_CAPTURED: contextvars.ContextVar[list[tuple[Response, float, int]] | None] = (
    contextvars.ContextVar("alloy_async_raw_capture", default=None)
)
#: Coroutines that may send no request at all (``validate``: its schema may be cached).
_NOT_OFFERED = frozenset({"validate"})
_RATE_LIMIT_PREFIXES = ("x-ratelimit-", "ratelimit-", "x-rate-limit-")


class RawResponse(Generic[T]):
    """The HTTP answer of one SDK call, and its typed result.

    Attributes:
        status: the HTTP status of the answer.
        headers: its headers (lower-case names).
        request_id: the API's request id (``x-request-id`` / ``request-id``), if sent.
        elapsed: seconds the attempt that got this answer took.
        attempts: attempts the call made (retries included).
    """

    __slots__ = ("_parsed", "attempts", "elapsed", "headers", "request_id", "status")

    def __init__(self, response: Response, elapsed: float, attempts: int, parsed: T) -> None:
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers
        self.request_id = response.request_id
        self.elapsed = elapsed
        self.attempts = attempts
        self._parsed = parsed

    @property
    def rate_limit(self) -> dict[str, str]:
        """The rate-limit headers of the answer (``x-ratelimit-*``, ``ratelimit-*``,
        ``retry-after``), empty when the API sent none."""
        return {
            k: v
            for k, v in self.headers.items()
            if k.startswith(_RATE_LIMIT_PREFIXES) or k == "retry-after"
        }

    def parse(self) -> T:
        """The typed result, as the plain call returns it."""
        return self._parsed

    def __repr__(self) -> str:
        return (
            f"<RawResponse status={self.status} request_id={self.request_id!r} "
            f"elapsed={self.elapsed * 1000:.1f}ms>"
        )


class CaptureObserver(Observer):
    """Records every answer of the ``with_raw_response`` call running in this context."""

    async def answered(self, call: CallInfo, response: Response, elapsed: float) -> None:
        box = _CAPTURED.get()
        if box is not None:
            box.append((response, elapsed, call.attempt))


class RawServices:
    """``client.with_raw_response``: the client's services, each call returning a
    :class:`RawResponse`. Only single calls are offered (not paginators or ``execute_many``)."""

    def __init__(self, services: Mapping[str, object]) -> None:
        self._services = dict(services)

    def __getattr__(self, name: str) -> _RawService:
        try:
            return _RawService(name, self._services[name])
        except KeyError:
            raise AttributeError(f"with_raw_response has no service {name!r}") from None

    def __dir__(self) -> list[str]:
        return sorted(self._services)


class _RawService:
    def __init__(self, name: str, service: object) -> None:
        self._name = name
        self._service = service

    def __getattr__(self, name: str) -> Callable[..., Any]:
        fn = getattr(self._service, name)
        if not inspect.iscoroutinefunction(fn) or name in _NOT_OFFERED:
            raise ConfigurationError(
                f"with_raw_response.{self._name}.{name} is not offered: only calls that send "
                "one request have an answer to return"
            )

        @functools.wraps(fn)
        async def call(*args: Any, **kwargs: Any) -> RawResponse[Any]:
            box: list[tuple[Response, float, int]] = []
            token = _CAPTURED.set(box)
            try:
                parsed = await fn(*args, **kwargs)
            finally:
                _CAPTURED.reset(token)
            if not box:  # pragma: no cover - every service call sends at least one request
                raise ConfigurationError(f"{self._name}.{name} sent no request")
            response, elapsed, attempts = box[-1]  # the call's last answer, and its attempt
            return RawResponse(response, elapsed, attempts, parsed)

        return call
