"""``execute_many``: the engine's entry point (the services layer wires ``execute_one``)."""

from __future__ import annotations

import inspect
import os
from collections.abc import Awaitable, Callable, Mapping

from .._checks import check_number
from ..errors import InvalidRequestError
from ..models.bulk import BulkReport, ExecuteJob, JobOutcome
from ..observability.base import Observer, members
from .coordinator import (
    Configurable,
    CoolDown,
    Coordinator,
    InProcessCoordinator,
    RateBudget,
    check_rate,
)
from .journal import Journal
from .quarantine import OnCredentialError
from .run import BulkRun
from .scheduler import SCHEDULES, Schedule
from .state import ExecuteOne, Jobs, Settings
from .tracing import BulkObserver

__all__ = ["check_caps", "check_options", "check_rate", "check_schedule", "execute_many"]

_MIN_LOOKAHEAD = 10_000


def check_caps(concurrency: object, per_user: object, per_connector: object) -> None:
    """Refuse a cap that is not an integer >= 1 (``per_*=None`` means no cap; 0 is refused
    rather than read as "no cap"), naming the argument."""
    check_number("concurrency", concurrency, low=1, integer=True)
    check_number("per_user", per_user, low=1, integer=True, optional=True)
    check_number("per_connector", per_connector, low=1, integer=True, optional=True)


def check_options(
    *,
    lookahead: object = None,
    max_requeues: object = 0,
    ordered: object = False,
    adaptive: object = True,
    coordinator: object = None,
    checkpoint: object = None,
    default_user: object = None,
    callbacks: Mapping[str, object] | None = None,
) -> None:
    """Refuse an option of ``execute_many`` of the wrong kind when the run is made, naming it
    (not at its first job, or never). ``callbacks``: option name -> what must be callable."""
    check_number("lookahead", lookahead, low=1, integer=True, optional=True)
    check_number("max_requeues", max_requeues, low=0, integer=True)
    user_ok = isinstance(default_user, str) and bool(default_user.strip())
    kinds: list[tuple[str, object, bool, str]] = [
        ("ordered", ordered, isinstance(ordered, bool), "True or False"),
        (
            "adaptive",
            adaptive,
            isinstance(adaptive, (bool, CoolDown)),
            "True, False or a cool-down (an AdaptiveLimiter)",
        ),
        (
            "coordinator",
            coordinator,
            coordinator is None or isinstance(coordinator, (Coordinator, Configurable)),
            "a coordinator (InProcessCoordinator, RedisCoordinator) or None",
        ),
        (
            "checkpoint",
            checkpoint,
            checkpoint is None or isinstance(checkpoint, (str, os.PathLike, Journal)),
            "a path, a journal or None",
        ),
        ("default_user", default_user, default_user is None or user_ok, "a user id or None"),
        *((name, f, f is None or callable(f), "callable") for name, f in (callbacks or {}).items()),
    ]
    for name, value, ok, wanted in kinds:
        if not ok:
            raise InvalidRequestError(
                f"{name} must be {wanted}, got {type(value).__name__}", field=name
            )


def check_schedule(schedule: object) -> None:
    """Refuse a ``schedule`` that is not one of :data:`SCHEDULES`, naming the argument."""
    if not isinstance(schedule, str) or schedule not in SCHEDULES:
        raise InvalidRequestError(
            f"schedule must be one of {', '.join(map(repr, SCHEDULES))}, not {schedule!r}",
            field="schedule",
        )


def _connector_scope(job: ExecuteJob) -> str:
    return f"execute:{job.connector_id}"  # the scope the pipeline reports for execute calls


def execute_many(
    execute_one: ExecuteOne,
    jobs: Jobs,
    *,
    concurrency: int = 32,
    per_user: int | None = None,
    per_connector: int | None = None,
    rate: float | RateBudget | None = None,
    burst: int | None = None,
    ordered: bool = False,
    deadline: float | None = None,
    stop_when: Callable[[BulkReport], bool] | None = None,
    checkpoint: str | os.PathLike[str] | Journal | None = None,
    adaptive: CoolDown | bool = True,
    scope: Callable[[ExecuteJob], str] | None = None,
    lookahead: int | None = None,
    schedule: Schedule = "makespan",
    max_requeues: int = 3,
    default_user: str | None = None,
    on_skip: Callable[[ExecuteJob, str], None] | None = None,
    coordinator: Coordinator | None = None,
    observer: Observer | None = None,
    preflight: Callable[[ExecuteJob], Awaitable[BaseException | None]] | None = None,
    on_credential_error: OnCredentialError | None = None,
    on_outcome: Callable[[JobOutcome], Awaitable[None] | None] | None = None,
) -> BulkRun:
    """Run ``execute_one`` over ``jobs`` with bounded, fair concurrency; see :class:`BulkRun`.

    Every argument but the three below is documented where users pass it:
    ``alloy_async.services.Actions.execute_many`` (``services/actions.py``).

    Args:
        execute_one: runs one job (``actions.execute`` wired to the pipeline).
        preflight: checks each job before it is queued (``validate=``): a job it refuses
            ends with that error, unsent.
        observer: the client's observer; when it can follow runs (telemetry), the run and
            each job get a span.
    """
    check_caps(concurrency, per_user, per_connector)
    check_rate(rate, burst)
    check_schedule(schedule)
    check_options(
        lookahead=lookahead,
        max_requeues=max_requeues,
        ordered=ordered,
        adaptive=adaptive,
        coordinator=coordinator,
        checkpoint=checkpoint,
        default_user=default_user,
        callbacks={
            "stop_when": stop_when,
            "scope": scope,
            "on_skip": on_skip,
            "on_credential_error": on_credential_error,
            "on_outcome": on_outcome,
            "preflight": preflight,
        },
    )
    check_number("deadline", deadline, low=0, strict=True, optional=True)
    coordinator = _coordinator(
        coordinator,
        concurrency=concurrency,
        per_user=per_user,
        per_connector=per_connector,
        rate=rate,
        burst=burst,
        adaptive=adaptive,
        checkpoint=checkpoint,
    )
    settings = Settings(
        concurrency=concurrency,
        ordered=ordered,
        deadline=deadline,
        stop_when=stop_when,
        scope=scope or _connector_scope,
        lookahead=lookahead or max(_MIN_LOOKAHEAD, 64 * concurrency),
        max_requeues=max_requeues,
        default_user=default_user,
        on_skip=on_skip,
        preflight=preflight,
        on_credential_error=on_credential_error,
        on_outcome=on_outcome,
        schedule=schedule,
        observer=next((o for o in members(observer) if isinstance(o, BulkObserver)), None),
    )
    return BulkRun(execute_one, jobs, settings, coordinator)


def _coordinator(
    coordinator: Coordinator | None,
    *,
    concurrency: int,
    per_user: int | None,
    per_connector: int | None,
    rate: float | RateBudget | None,
    burst: int | None,
    adaptive: CoolDown | bool,
    checkpoint: str | os.PathLike[str] | Journal | None,
) -> Coordinator:
    """The run's coordinator: built from the limits (none given), configured with them (one
    with ``configure``), or taken as it is (then the limits belong to it and are refused)."""
    if coordinator is None:
        coordinator = InProcessCoordinator.build(
            concurrency=concurrency,
            per_user=per_user,
            per_connector=per_connector,
            rate=rate,
            burst=burst,
            adaptive=adaptive,
            checkpoint=checkpoint,
        )
    elif isinstance(coordinator, Configurable):
        if checkpoint is not None:
            raise InvalidRequestError(
                "checkpoint belongs to the coordinator (its journal) when one is given",
                field="checkpoint",
            )
        if rate is not None and not isinstance(rate, (int, float)):
            raise InvalidRequestError(
                "rate must be a number with this coordinator (it holds the shared budget)",
                field="rate",
            )
        if burst is not None and not _takes_burst(coordinator.configure):
            raise InvalidRequestError(
                f"burst: {type(coordinator).__name__}.configure() takes no burst (its rate "
                "budget sets its own)",
                field="burst",
            )
        coordinator = coordinator.configure(
            concurrency=concurrency,
            per_user=per_user,
            per_connector=per_connector,
            rate=None if rate is None else float(rate),
            **({} if burst is None else {"burst": burst}),
        )
    else:
        given: dict[str, object] = {
            "per_user": per_user,
            "per_connector": per_connector,
            "rate": rate,
            "burst": burst,
            "checkpoint": checkpoint,
        }
        clash = sorted(name for name, value in given.items() if value is not None)
        if clash:
            raise InvalidRequestError(
                f"{', '.join(clash)} belong(s) to the coordinator when one is given",
                field=clash[0],
            )
    return coordinator


def _takes_burst(configure: Callable[..., Coordinator]) -> bool:
    """Whether a coordinator's ``configure`` takes ``burst`` (one written before it existed
    does not)."""
    try:
        parameters = inspect.signature(configure).parameters.values()
    except (TypeError, ValueError):  # no signature to read (a builtin): refused, naming burst
        return False
    return any(p.name == "burst" or p.kind is p.VAR_KEYWORD for p in parameters)
