"""The engine's state as attrs classes: a run's settings and where it is."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping
from typing import Any

import attrs

from .._core import CallStats
from ..models.bulk import BulkReport, ExecuteJob, JobOutcome
from .scheduler import Schedule

__all__ = ["ExecuteOne", "Flow", "Grace", "Jobs", "Settings"]

#: The coroutine that runs one job; the services layer passes ``actions.execute`` wired to the
#: request pipeline. It should count attempts and throttled seconds in the ``CallStats``.
ExecuteOne = Callable[[ExecuteJob, CallStats], Awaitable[Any]]
#: What ``execute_many`` reads jobs from.
Jobs = Iterable[ExecuteJob | Mapping[str, Any]] | AsyncIterable[ExecuteJob | Mapping[str, Any]]


@attrs.frozen
class Settings:
    """The options of one run, as :func:`execute_many` documents them."""

    concurrency: int
    ordered: bool
    deadline: float | None
    stop_when: Callable[[BulkReport], bool] | None
    scope: Callable[[ExecuteJob], str]
    lookahead: int
    max_requeues: int
    default_user: str | None
    on_skip: Callable[[ExecuteJob, str], None] | None
    #: A telemetry observer with run and job spans (``engine/tracing.py``), or None.
    observer: Any = None
    #: Called once per quarantined credential (``engine/quarantine.py``), or None.
    on_credential_error: Any = None
    #: Called with each outcome before the consumer gets it, and before it is journaled.
    on_outcome: Callable[[JobOutcome], Awaitable[None] | None] | None = None
    #: Checks a job before it is queued: None, or the error it ends with unsent (preflight).
    preflight: Callable[[ExecuteJob], Awaitable[BaseException | None]] | None = None
    #: How the scheduler orders the users' queues (``engine/scheduler.py``).
    schedule: Schedule = "makespan"


@attrs.define
class Flow:
    """Where the run is: reading, dispatching, stopping."""

    next_index: int = 0
    buffered: int = 0
    in_flight: int = 0
    live_workers: int = 0
    source_done: bool = False
    source_error: BaseException | None = None
    started: bool = False
    stopping: bool = False
    giving_up: bool = False
    closed: bool = False
    #: ``on_outcome`` is running: its outcome is not done until it returns.
    sinking: bool = False
    t0: float | None = None
    t_end: float | None = None


class Grace:
    """When a stopped run gives up its in-flight calls: the earliest time any stop asked for."""

    def __init__(self, give_up: Callable[[], None]) -> None:
        self._give_up = give_up
        self._timer: asyncio.TimerHandle | None = None
        self._at: float | None = None

    def within(self, grace: float) -> None:
        """Give up ``grace`` seconds from now, unless an earlier stop asked for sooner."""
        loop = asyncio.get_running_loop()
        at = loop.time() + grace
        if self._at is not None and self._at <= at:
            return
        self.cancel()
        self._at = at
        if grace == 0:  # at once, not on the next loop turn
            self._give_up()
        else:
            self._timer = loop.call_at(at, self._fire)

    def cancel(self) -> None:
        """Forget the pending give-up (the run is closing)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        self._give_up()
