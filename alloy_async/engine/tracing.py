"""Spans for ``execute_many`` when the client has a telemetry observer (else nothing at all).

The observer (``observability/otel.py``) is used only through the four methods below, so the
engine does not import OpenTelemetry: a run span, and one span per job in a trace of its own,
linked to the run, carrying the seconds the job waited in the queue (a user's slot, a
connector's cap, a cool-down) and for a rate permit.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol, runtime_checkable

from .._core import CallStats
from ..errors import RateLimitError
from .outcomes import Tally, kind_of
from .scheduler import Slot
from .state import ExecuteOne

__all__ = ["BulkObserver", "RunTracing"]


@runtime_checkable
class BulkObserver(Protocol):
    """What an observer offers to follow a run (``OpenTelemetryObserver`` does)."""

    def run_started(self, run_id: str, concurrency: int) -> Any:
        """The run begins; returns its handle (a span)."""

    def run_ended(self, run: Any, counts: dict[str, int], stop_reason: str | None) -> None:
        """The run ended with these counts."""

    def job_started(self, run: Any, index: int, job: Any, queued: float, rate_wait: float) -> Any:
        """A job is being sent (its call runs inside what this makes current)."""

    def job_ended(self, handle: Any, outcome: str, error: BaseException | None) -> None:
        """The job's call ended (``throttled``: a 429, the job may be queued again)."""

    def job_finished(self, outcome: str) -> None:
        """A job has its final outcome (sent or not): count it."""


class RunTracing:
    """One run's spans."""

    def __init__(self, observer: BulkObserver, run_id: str, concurrency: int) -> None:
        self._observer = observer
        self._run = observer.run_started(run_id, concurrency)

    async def run_job(
        self, slot: Slot, execute_one: ExecuteOne, stats: CallStats, queued: float, rate_wait: float
    ) -> Any:
        """``execute_one`` for ``slot``'s job inside the job's span."""
        observer = self._observer
        handle = observer.job_started(self._run, slot.index, slot.job, max(0.0, queued), rate_wait)
        error: BaseException | None = None
        try:
            return await execute_one(slot.job, stats)
        except BaseException as exc:
            error = exc
            raise
        finally:
            if isinstance(error, asyncio.CancelledError):
                outcome = "outcome_unknown"
            elif isinstance(error, RateLimitError):
                outcome = "throttled"  # this attempt's end; the job may be queued again
            else:
                outcome = kind_of(error)
            observer.job_ended(handle, outcome, error)

    def finished(self, error: BaseException | None) -> None:
        """Count a job's final outcome."""
        self._observer.job_finished(kind_of(error))

    def end(self, tally: Tally) -> None:
        """End the run's span with the report's counts."""
        counts = {
            "succeeded": tally.succeeded,
            "failed": tally.failed,
            "outcome_unknown": tally.outcome_unknown,
            "skipped": tally.skipped,
            "not_dispatched": tally.not_dispatched,
        }
        self._observer.run_ended(self._run, counts, tally.stop_reason)
