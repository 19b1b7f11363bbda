"""The engine's state as attrs classes: a run's settings and where it is."""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping
from typing import Any

import attrs

from .._core import CallStats
from ..models.bulk import BulkReport, ExecuteJob

__all__ = ["ExecuteOne", "Flow", "Jobs", "Settings"]

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
    #: Checks a job before it is queued: None, or the error it ends with unsent (preflight).
    preflight: Callable[[ExecuteJob], Awaitable[BaseException | None]] | None = None


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
    t0: float | None = None
    t_end: float | None = None
