"""One logical call's bookkeeping: its attempts, its retry signal, the error the caller sees.

Loop-free helpers of the pipeline (``_core.py``), kept apart so that module stays small.
"""

from __future__ import annotations

from typing import Any

import attrs

from ._env import logger
from ._http import Request, Response
from .errors import AlloyError, APIStatusError, APITimeoutError, OutcomeUnknownError
from .observability.base import CallInfo
from .retry import RetryPolicy

__all__ = ["CallStats", "not_handled"]


class _Retry(Exception):
    """Internal signal to the backoff loop: wait ``delay`` seconds, then attempt again."""

    def __init__(self, delay: float, reason: AlloyError) -> None:
        self.delay = delay
        self.reason = reason


@attrs.define(slots=True)
class CallStats:
    """What one logical call cost: attempts made and seconds spent waiting on throttling."""

    attempts: int = 0
    throttled: float = 0.0
    #: The status of the server's answer after which an event hook raised (0: none did), so
    #: the job is judged by what the server did, whatever the hook raised.
    hook_raised_after: int = 0


#: 5xx answers that say the request was not handled: 503, and a CDN that could not reach the
#: origin (521 down, 522 connect timeout, 523 unreachable). Any other 5xx may have acted.
_NOT_HANDLED_5XX = frozenset({503, 521, 522, 523})


def not_handled(status: int) -> bool:
    """The server said it did not act on the request: 429 or 503, the answers after which a
    POST may be sent again (a CDN's 521-523 count as "may have acted" for a POST)."""
    return status == 429 or status == 503


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
    #: Set when the client has an observer (event hooks, telemetry): what it follows.
    info: CallInfo | None = None
    #: The status of the last attempt's answer (0: it got none), for the hooks that follow.
    last_status: int = 0

    @property
    def attempts(self) -> int:
        return self.stats.attempts


def _retry_delay(exc: _Retry) -> float:
    return exc.delay


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
        extra=_log_extra(response.request_id, call.attempts, response.status, None),
    )
    return Response(204, response.headers, b"")


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
