"""Outcomes on their way to the consumer, and the tally the report is made from.

An outcome is journaled only once the consumer has taken it (when it asks for the next one):
whatever the consumer does with an outcome (the CLI writes its line) happens before the journal
says the job is done. :class:`OutcomeChannel` keeps that order, the input order for
``ordered=True``, and the outcomes of calls given up at a stop.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

import attrs

from ..errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    CredentialQuarantinedError,
    OutcomeUnknownError,
    UnusableSchemaError,
)
from ..models.bulk import BulkReport, JobOutcome
from ..retry import not_handled
from .dispatch import Bell
from .journal import State
from .quarantine import credential_failure

__all__ = [
    "Finished",
    "OutcomeChannel",
    "Tally",
    "journal_state",
    "kind_of",
    "raised_after_answer",
]


@attrs.define
class Finished:
    """One job's outcome on its way to the consumer, and what the journal keeps of it.

    Not frozen: a frozen attrs class costs 0.4 us more to make, once per job; nothing
    changes one after it is made."""

    #: The job's position in the input.
    index: int
    outcome: JobOutcome
    #: The journal key to write once the consumer has taken it (None: nothing to journal).
    key: str | None
    #: What to journal: its state, or None to forget the key (the server never acted).
    state: State | None


def kind_of(error: BaseException | None) -> State:
    """``succeeded``, ``failed`` or ``outcome_unknown``."""
    if error is None:
        return "succeeded"
    if isinstance(error, OutcomeUnknownError):
        return "outcome_unknown"
    return "failed"


def raised_after_answer(error: BaseException, answered: int) -> int:
    """``answered`` (``CallStats.hook_raised_after``: the server's answer after which an
    event hook raised ``error``, 0 for none): the job is then judged by the answer, and
    ``error`` gets a note saying so."""
    if answered:
        what = "it did not act" if not_handled(answered) else "the action ran; not sent again"
        error.add_note(f"raised by an event hook after the server answered {answered}: {what}")
    return answered


def journal_state(error: BaseException | None, answered: int = 0) -> State | None:
    """What the journal keeps of a finished job: its kind, or None (never sent: a rerun may
    send it) for failures that prove the server did not act. ``answered``: the server's
    answer when ``error`` was raised after it (:func:`raised_after_answer`), which decides."""
    if answered:
        return None if not_handled(answered) else "failed"
    if isinstance(error, OutcomeUnknownError):
        return "outcome_unknown"
    if isinstance(error, (CredentialQuarantinedError, UnusableSchemaError)):
        return None  # refused before sending, for a reason a rerun may not have
    if credential_failure(error) == "credential":
        return None  # the third party refused the credential: nothing ran; after the user
        # reconnects, a rerun sends it with the jobs the quarantine held back
    if isinstance(error, APIStatusError):
        if not_handled(error.status):  # 429 or 503
            return None
        return "failed"
    if isinstance(error, APITimeoutError):
        return "failed" if error.sent else None
    if isinstance(error, APIConnectionError):
        return None
    return kind_of(error)


@attrs.define
class Tally:
    """The counters behind :class:`~alloy_async.models.BulkReport`."""

    succeeded: int = 0
    failed: int = 0
    outcome_unknown: int = 0
    skipped: int = 0
    duplicates: int = 0
    not_dispatched: int = 0
    attempts: int = 0
    retries: int = 0
    throttled: float = 0.0
    by_error: dict[str, int] = attrs.field(factory=dict)
    stop_reason: str | None = None

    @property
    def finished(self) -> int:
        """Jobs with an outcome so far."""
        return self.succeeded + self.failed + self.outcome_unknown

    def count(self, error: BaseException | None, attempts: int, throttled: float) -> None:
        """Count one finished job."""
        if error is None:  # the common case, without kind_of's look-ups
            self.succeeded += 1
            self.attempts += attempts
            if attempts > 1:
                self.retries += attempts - 1
            self.throttled += throttled
            return
        kind = kind_of(error)
        setattr(self, kind, getattr(self, kind) + 1)
        if error is not None:
            name = type(error).__name__
            self.by_error[name] = self.by_error.get(name, 0) + 1
        self.attempts += attempts
        self.retries += max(0, attempts - 1)
        self.throttled += throttled

    def report(
        self,
        *,
        waiting: int,
        wall_time: float,
        quarantined: int = 0,
        quarantined_credentials: tuple[str, ...] = (),
    ) -> BulkReport:
        """A snapshot; ``waiting`` jobs read but not dispatched count as not dispatched."""
        return BulkReport(
            succeeded=self.succeeded,
            failed=self.failed,
            outcome_unknown=self.outcome_unknown,
            skipped=self.skipped,
            duplicates=self.duplicates,
            not_dispatched=self.not_dispatched + waiting,
            by_error=dict(self.by_error),
            attempts=self.attempts,
            retries=self.retries,
            throttled_seconds=self.throttled,
            wall_time=wall_time,
            stopped_early=self.stop_reason is not None,
            stop_reason=self.stop_reason,
            quarantined=quarantined,
            quarantined_credentials=quarantined_credentials,
        )


class OutcomeChannel:
    """From the workers to the consumer, journaling each outcome once it has been taken.

    Args:
        size: outcomes the workers may get ahead of the consumer.
        ordered: deliver in input order (a reorder buffer).
        taken: called with ``(key, state)`` when the consumer is done with an outcome.
        on_emit: called when the consumer moves on in ordered mode (the reader may read on).

    A deque with one waiting consumer and the workers waiting for room: an ``asyncio.Queue``
    cost about 2 us per outcome more (its ``full``/``qsize``/``put_nowait``/``get_nowait``
    calls), a fifth of the engine's own cost per job.
    """

    def __init__(
        self,
        size: int,
        *,
        ordered: bool,
        taken: Callable[[str | None, State | None], None],
        on_emit: Callable[[], None],
    ) -> None:
        self._size = size
        self._items: deque[Finished] = deque()
        self._getter: asyncio.Future[None] | None = None  # the consumer, waiting for one
        self._room = Bell()  # workers waiting for room
        self._ordered = ordered
        self._taken = taken
        self._on_emit = on_emit
        self._reorder: dict[int, Finished] = {}
        self._skipped: set[int] = set()
        self._late: deque[Finished] = deque()
        self._unacked: Finished | None = None
        self._all_done = False
        self._done_seen = False
        self.next_emit = 0

    async def put(self, entry: Finished) -> None:
        """Hand an outcome on (waits while the consumer is ``size`` behind)."""
        while len(self._items) >= self._size and not self._all_done:
            await self._room.wait()  # rung once per outcome taken, and at close
        self._push(entry)

    def offer(self, entry: Finished) -> bool:
        """Hand an outcome on if there is room now (True); else :meth:`put` must wait."""
        if len(self._items) >= self._size:
            return False
        self._push(entry)
        return True

    def _push(self, entry: Finished) -> None:
        self._items.append(entry)
        self._wake_consumer()

    def _wake_consumer(self) -> None:
        getter = self._getter
        if getter is not None:
            self._getter = None
            if not getter.done():
                getter.set_result(None)

    def put_late(self, entry: Finished) -> None:
        """Hand on the outcome of a call given up at a stop (from a worker being cancelled)."""
        self._late.append(entry)
        self._wake_consumer()

    def close(self) -> None:
        """No more outcomes will come: the consumer's loop ends once it has taken the rest."""
        if self._all_done:
            return
        self._all_done = True
        self._wake_consumer()
        self._room.ring_all()  # a put waiting for room now goes through (nothing is lost)

    def skip(self, index: int) -> None:
        """Job ``index`` yields no outcome (another run has it): ordered mode moves past it."""
        if self._ordered:
            self._skipped.add(index)

    def ack(self) -> None:
        """The consumer is done with the last outcome it took: journal it now."""
        entry = self._unacked
        if entry is not None:
            self._unacked = None
            self._taken(entry.key, entry.state)

    def pending(self) -> list[Finished]:
        """Take every outcome the consumer has not taken (the run is being closed)."""
        out: list[Finished] = [*self._late, *self._reorder.values()]
        self._late.clear()
        self._reorder.clear()
        out.extend(self._items)
        self._items.clear()
        return out

    def take(self) -> JobOutcome | None:
        """The next outcome if one is ready and unordered (no coroutine: once per outcome);
        None when :meth:`next` has to be awaited instead."""
        items = self._items
        if self._ordered or self._late or not items:
            return None
        self.ack()
        got = items.popleft()
        self._room.ring()
        self._unacked = got
        return got.outcome

    async def next(self) -> JobOutcome | None:
        """The next outcome for the consumer, or None when the run has ended."""
        self.ack()
        items = self._items
        while True:
            if self._ordered and self.next_emit in self._skipped:
                self._skipped.discard(self.next_emit)
                self.next_emit += 1
                self._on_emit()
                continue
            if self._ordered and self.next_emit in self._reorder:
                entry = self._reorder.pop(self.next_emit)
                self.next_emit += 1
                self._on_emit()
                self._unacked = entry
                return entry.outcome
            if self._late:
                got = self._late.popleft()
            elif items:
                got = items.popleft()
                self._room.ring()
            elif self._done_seen or self._all_done:
                self._done_seen = True
                if self._ordered and self._reorder:  # gaps: jobs stopped before dispatch
                    self.next_emit = min(self._reorder)
                    continue
                return None
            else:
                waiter = self._getter = asyncio.get_running_loop().create_future()
                try:
                    await waiter
                finally:
                    if self._getter is waiter:
                        self._getter = None
                continue
            if not self._ordered:
                self._unacked = got
                return got.outcome
            self._reorder[got.index] = got
