"""``run_chunk``: what a worker does with one chunk of jobs, one outcome row per job.

A chunk may be delivered twice (the queue is at-least-once: a worker killed mid-chunk, or one
slower than the queue's idle timeout), so each job is first looked up in the journal: a job
whose row an earlier worker stored returns that row; the rest run through ``execute_many`` on
the shared coordinator, whose journal never lets two workers send the same key. A job another
live worker holds is waited for (its row appears when it finishes, or its run dies and the job
is reported outcome-unknown). Each row is stored in the journal before the engine records the
job's outcome (it does so when the next outcome is asked for), so a row is never lost.

A job the engine refused to send because the coordinator failed (Redis unreachable past
``unavailable_timeout`` while taking its rate permit or writing its intent) has no outcome of
its own: the other copy of the chunk, which the queue hands out after such an outage, may send
it. Its row is neither stored nor returned; the next pass reads the journal (or sends it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from ..client import AlloyClient
from ..engine.journal import State
from ..engine.outcomes import journal_state
from ..engine.rows import outcome_json
from ..errors import InvalidRequestError, JournalError
from ..models import ExecuteJob
from ._journal import RedisJournal, Stored
from .coordinator import RedisCoordinator

__all__ = ["run_chunk"]

#: Seconds between looks at jobs another worker holds.
_POLL = 0.2


async def run_chunk(
    alloy: AlloyClient,
    coordinator: RedisCoordinator,
    jobs: Sequence[Mapping[str, Any]],
    *,
    concurrency: int = 32,
    rate: float | None = None,
    per_user: int | None = None,
    per_connector: int | None = None,
    burst: int | None = None,
) -> list[dict[str, Any]]:
    """Run ``jobs`` (mappings, as ``execute_many`` takes them; an optional ``"_line"`` entry
    is the input line number, copied into the row) and return one row per job, in order.

    Rows are shaped like ``alloy-async bulk``'s ``--out`` lines. Raises
    :class:`~alloy_async.errors.CoordinatorError` when Redis stays unreachable (nothing more
    is sent; what was sent is journaled, so a redelivered chunk reports it, never resends).
    """
    lines = [job.get("_line") for job in jobs]
    plain = [{k: v for k, v in job.items() if k != "_line"} for job in jobs]
    keys = [_key_of(job) for job in plain]
    journal: RedisJournal = coordinator.journal
    rows: list[dict[str, Any] | None] = [None] * len(plain)
    options = {
        "concurrency": max(1, min(concurrency, len(plain) or 1)),
        "rate": rate,
        "burst": burst,
        "per_user": per_user,
        "per_connector": per_connector,
    }
    todo = list(range(len(plain)))
    unsent: JournalError | None = None  # the coordinator failed before a job was sent
    while todo:
        await _from_journal(journal, todo, keys, lines, rows)
        todo = [i for i in todo if rows[i] is None]
        if not todo:
            break
        failed = await _execute(alloy, coordinator, todo, plain, keys, lines, rows, options)
        if failed is not None:
            if unsent is not None:  # failed again: not a pause that ended (a rerun sends them)
                raise failed
            unsent = failed
        todo = [i for i in todo if rows[i] is None]
        if todo:  # held by another live worker: wait until it stores their rows or dies
            await asyncio.sleep(_POLL)
    return [row for row in rows if row is not None]


def _key_of(job: Mapping[str, Any]) -> str | None:
    try:
        return ExecuteJob.from_mapping(job).effective_key
    except (InvalidRequestError, TypeError, ValueError):
        return None  # a bad job: execute_many reports it


async def _from_journal(
    journal: RedisJournal,
    todo: list[int],
    keys: list[str | None],
    lines: list[Any],
    rows: list[dict[str, Any] | None],
) -> None:
    """Fill in the rows the journal already has (a redelivered chunk, a resumed namespace)."""
    wanted = {keys[i] for i in todo if keys[i] is not None}
    if not wanted:
        return
    stored = await journal.stored(wanted)  # type: ignore[arg-type]
    runs = {found[1] for found in stored.values() if found is not None and found[0] == "intent"}
    alive = await journal.alive(runs)
    for i in todo:
        key = keys[i]
        found = stored.get(key) if key is not None else None
        if found is not None:
            rows[i] = _row_from(found, key, lines[i], alive)  # type: ignore[arg-type]


def _row_from(found: Stored, key: str, line: Any, alive: set[str]) -> dict[str, Any] | None:
    state, run, row = found
    if row is not None:  # stored before its outcome was recorded: the row is the truth
        return {**row, "line": line}
    if state == "intent":
        if run in alive:
            return None  # in flight in another worker
        return _bare(key, line, "outcome_unknown")
    return _bare(key, line, state)


def _bare(key: str, line: Any, state: State) -> dict[str, Any]:
    """A row for a job the journal knows only by its state (recorded by a plain run)."""
    row: dict[str, Any] = {"line": line, "key": key, "ok": state == "succeeded", "attempts": 0}
    if state == "failed":
        row["error"] = {"type": "Failed", "message": "failed in an earlier run (no row stored)"}
    elif state == "outcome_unknown":
        row["error"] = {
            "type": "OutcomeUnknownError",
            "message": "a run stopped while this job may have been in flight; not sent again",
        }
    return row


async def _execute(
    alloy: AlloyClient,
    coordinator: RedisCoordinator,
    todo: list[int],
    plain: list[dict[str, Any]],
    keys: list[str | None],
    lines: list[Any],
    rows: list[dict[str, Any] | None],
    options: dict[str, Any],
) -> JournalError | None:
    """One ``execute_many`` pass over ``todo``; the coordinator's error if it left a job unsent."""
    unsent: JournalError | None = None
    run = alloy.actions.execute_many([plain[i] for i in todo], coordinator=coordinator, **options)
    async with run:
        journal = run.journal  # this run's, opened on the coordinator
        assert isinstance(journal, RedisJournal)
        async for outcome in run:
            if isinstance(outcome.error, JournalError):
                # Not sent by this run and not journaled: no row (a 'not sent' row stored here
                # could overwrite the row of a copy that did send it, and a returned one would
                # be written for a job that copy ran). The next pass looks in the journal.
                unsent = outcome.error
                continue
            assert outcome.index is not None  # execute_many numbers every outcome
            i = todo[outcome.index]
            row = outcome_json(outcome, lines[i])
            key = keys[i]
            # Stored before the engine records the outcome (on the next iteration); not for a
            # job the server never acted on (the engine keeps nothing of it: a rerun sends it).
            if key is not None and (outcome.ok or journal_state(outcome.error) is not None):
                await journal.save_rows({key: row})
            rows[i] = row
    return unsent
