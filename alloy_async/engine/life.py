"""One job's life, from the moment a worker picks it to its outcome: every step, and every way
it can end, in the order they happen.

A job is a :class:`~alloy_async.engine.scheduler.Slot`; its :class:`Stage` says where it is::

    QUEUED    in the scheduler, holding nothing (a bad job's outcome is already decided: it
              goes straight to the consumer, see `_unsent`)
      | with a rate: the worker enters the permit line first (holding nothing)
      | picked: the scheduler took its slots (caps, the scope's room)
    PICKED
      | its credential is quarantined?          -> ends unsent (CredentialQuarantinedError)
      | shared coordinator: peek, then lease    -> done or claimed by another run: skipped
      |                                         -> an intent a dead run left: outcome-unknown
      |                                         -> a shared cap full elsewhere: queued again
      | rate permit (a stop cancels the wait); then it leaves the line
      | the run stopped meanwhile?              -> not dispatched
      | intent written (claimed, when shared)   -> the journal failed: the run stops; unsent
    INTENDED
      | the run stopped meanwhile?              -> not dispatched, its intent taken back
      | its credential quarantined meanwhile?   -> ends unsent, its intent taken back
    SENDING   execute_one(job)                  -> cancelled: given up, outcome-unknown,
      |                                            never sent again
      | a 429 (the server's, not a hook's)      -> the scope cools; queued again, its intent
      |                                            taken back (at most max_requeues times)
    DONE      its outcome goes to the consumer; the journal records it once taken

The permit line (:class:`PermitLine`) is why the pick comes after a place in it: a job picked
first and then queued for its permit would hold its user's slot while it waits, and a user
bound by its cap would run below it whenever the run has more workers than the rate needs.
In the line a job is picked as its permit comes due, so it waits for the permit with one job
ahead of it at most (a few with a shared coordinator, whose steps there are round trips).

A job leaves a stage only forwards (or back to QUEUED). :meth:`JobLife._release` is the one
place its slots are given back, once, as it reaches DONE. Cancellation is the only exception
that crosses a step: the run's stop cancels workers waiting for a rate permit, giving up
cancels calls in flight, closing cancels everything; each is caught where the job's stage
says what it means.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, Literal

from .._core import CallStats
from ..errors import (
    CoordinatorError,
    InvalidRequestError,
    JournalError,
    OutcomeUnknownError,
    RateLimitError,
)
from ..limiters import Key
from ..models.bulk import BulkReport, JobOutcome
from .admission import Admission, locate
from .coordinator import Coordinator, Verdict
from .dispatch import Dispatch
from .outcomes import Finished, OutcomeChannel, Tally, journal_state, raised_after_answer
from .quarantine import Quarantine
from .scheduler import DONE, INTENDED, PICKED, QUEUED, SENDING, Slot
from .state import ExecuteOne, Flow, Settings
from .tracing import RunTracing

__all__ = ["JobLife", "PermitLine", "Turn"]

#: Why a job was not sent: the run stopped between its pick and its request.
_STOPPED: Literal["stopped"] = "stopped"

#: What kept a picked job from being sent (:meth:`JobLife._prepare`): another run's record of
#: its key, a shared cap full elsewhere, the journal's failure or the quarantine's refusal,
#: or the run's stop.
Obstacle = Verdict | Key | BaseException | Literal["stopped"]


#: How many picked jobs of a run may be in the permit line at once with a shared coordinator:
#: there a job peeks, leases and takes its permit on Redis while in the line, and one at a
#: time would bound a process to one job per round trip.
_SHARED_LINE = 8


class Turn:
    """A worker's place in the :class:`PermitLine`; :meth:`leave` gives it up (once)."""

    __slots__ = ("_line",)

    def __init__(self, line: asyncio.Semaphore) -> None:
        self._line: asyncio.Semaphore | None = line

    def leave(self) -> None:
        """Let the next worker pick; a second call does nothing."""
        line, self._line = self._line, None
        if line is not None:
            line.release()


class PermitLine:
    """Where a run's workers wait for the rate permit before they pick a job (see the module
    docstring): at most ``width`` of them hold a picked job meanwhile."""

    def __init__(self, width: int) -> None:
        self._line = asyncio.Semaphore(width)

    async def enter(self) -> Turn:
        """Wait for a place in the line, holding nothing."""
        await self._line.acquire()
        return Turn(self._line)


class JobLife:
    """Takes picked jobs through their lives for one run (see the module docstring).

    The run owns the flow, the tally, the dispatch and the admission; this owns what only a
    job's life touches: the quarantine, the tasks waiting for a rate permit or sending (a stop
    or a give-up cancels them), and the outcome channel and tracing once the run has started.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        coordinator: Coordinator,
        flow: Flow,
        tally: Tally,
        dispatch: Dispatch,
        admission: Admission,
        execute_one: ExecuteOne,
        stop: Callable[[str], None],
        report: Callable[[], BulkReport],
    ) -> None:
        self._s = settings
        self._c = coordinator
        self._flow = flow
        self._tally = tally
        self._d = dispatch
        self._admission = admission
        self._execute_one = execute_one
        self._stop = stop
        self._report = report
        self._permit_waiters: set[asyncio.Task[Any]] = set()
        self._sending: set[asyncio.Task[Any]] = set()
        self.quarantine = Quarantine(  # a refused API key stops a run without stop_when
            settings.on_credential_error,
            stop=stop,
            stop_on_api_key=not settings.stop_when,
            shared=getattr(coordinator, "quarantine", None),
        )
        #: The permit line when the run has a rate (workers enter it before they pick).
        self.line: PermitLine | None = None
        if coordinator.rate is not None:
            self.line = PermitLine(_SHARED_LINE if dispatch.gate.active else 1)
        #: Set when the run starts (:meth:`begin`).
        self.out: OutcomeChannel | None = None
        self.tracing: RunTracing | None = None
        #: A job has steps before its request (a shared gate, a rate permit, an intent); when
        #: it has none, only the quarantine can keep it, and `_prepare` is not entered.
        self._steps = True

    def begin(self, out: OutcomeChannel, tracing: RunTracing | None) -> None:
        """The run started: where outcomes go, its tracing, and what precedes each request."""
        self.out = out
        self.tracing = tracing
        self._steps = bool(
            self._d.gate.active or self._c.rate is not None or self._admission.journal is not None
        )

    # -- what the run asks of the jobs in flight ---------------------------------------------

    def stop_permit_waits(self) -> None:
        """The run stopped: a worker waiting for a rate permit has sent nothing and must not."""
        for task in list(self._permit_waiters):
            task.cancel()

    def give_up(self) -> None:
        """The grace after a stop is over: cancel the calls in flight (outcome-unknown)."""
        for task in list(self._sending):
            task.cancel()

    async def put(self, entry: Finished) -> None:
        """Hand an outcome to the consumer (waiting for room); if the run is closed meanwhile,
        journal it now: nobody will take it."""
        assert self.out is not None
        try:
            await self.out.put(entry)
        except asyncio.CancelledError:
            with contextlib.suppress(JournalError):
                self._admission.taken(entry.key, entry.state)
            raise

    # -- the life ------------------------------------------------------------------------------

    async def live(
        self, slot: Slot, stats: CallStats, task: asyncio.Task[Any], turn: Turn | None = None
    ) -> None:
        """Take ``slot`` from its pick to its outcome, or back to the scheduler. ``turn``: its
        worker's place in the permit line, left as soon as the job holds its permit or will
        not need one."""
        if slot.preset is not None:  # decided when read (a bad job, a dead run's intent)
            if turn is not None:
                turn.leave()
            await self._unsent(slot, slot.preset)
            return
        slot.stage = PICKED
        obstacle: Obstacle | None = None
        if self._steps or self.quarantine.bad:
            try:
                obstacle = await self._prepare(slot, task, turn)
            except asyncio.CancelledError:  # stopped while it waited for its permit, or closed
                self._not_dispatched(slot)
                raise
            finally:
                if turn is not None:
                    turn.leave()
        if obstacle is not None:
            await self._not_sent(slot, obstacle)
            return
        # SENDING, here rather than in a method of its own: every frame between the worker and
        # the transport is resumed at each of the request's waits (~4 over HTTP), and this
        # one cost ~0.5 % of P2's client instructions (benchmarks/RESULTS.md, issue 23).
        slot.stage = SENDING
        loop = asyncio.get_running_loop()
        started = loop.time()
        result: Any = None
        error: BaseException | None = None
        self._sending.add(task)
        try:
            if self.tracing is None:
                result = await self._execute_one(slot.job, stats)
            else:
                queued = started - slot.t_in - slot.rate_wait
                result = await self.tracing.run_job(
                    slot, self._execute_one, stats, queued, slot.rate_wait
                )
        except asyncio.CancelledError:
            self._given_up(slot, stats, loop.time() - started)
            raise
        except Exception as exc:
            error = exc
        finally:
            self._sending.discard(task)
        await self._settle(slot, stats, result, error, loop.time() - started)

    async def _prepare(
        self,
        slot: Slot,
        task: asyncio.Task[Any],
        turn: Turn | None,
    ) -> Obstacle | None:
        """Everything before the request: None when ``slot`` may be sent now (its intent
        durable, when journaled), else what kept it."""
        refused = self._refused(slot)
        if refused is not None:  # its credential was refused earlier: no permit, no intent
            return refused
        gate = self._d.gate
        loop = asyncio.get_running_loop()
        try:
            found = await gate.before(slot) if gate.active else None
            if found is not None:
                return found
            slot.rate_wait = 0.0
            if self._c.rate is not None:
                self._permit_waiters.add(task)
                began = loop.time()
                try:
                    await self._c.rate.acquire()
                finally:
                    self._permit_waiters.discard(task)
                slot.rate_wait = loop.time() - began
            if turn is not None:
                turn.leave()  # the next worker may pick while this one claims and sends
            if self._stopping():  # stopped while this worker got its permit
                return _STOPPED
            journal = self._admission.journal if slot.key is not None else None
            if journal is not None:
                slot.stage = INTENDED  # cancelled from here: the intent is taken back
                found = await gate.claim(journal, slot.key)  # type: ignore[arg-type]
                if found is not None:
                    slot.stage = PICKED  # another run's record: nothing of ours
                    return found
                if self._stopping():  # stopped while the intent was committing
                    return _STOPPED
        except JournalError as exc:  # never send what the journal could not record
            return exc
        return self._refused(slot)  # a 401 may have quarantined it meanwhile

    async def _settle(
        self,
        slot: Slot,
        stats: CallStats,
        result: Any,
        error: BaseException | None,
        elapsed: float,
    ) -> None:
        """The server answered (or the call failed): queue it again after a 429, or hand its
        outcome on."""
        slot.attempts += stats.attempts or 1
        slot.throttled += stats.throttled
        answered = 0
        if error is not None:
            # Set when the error is not the server's answer (a hook raised it after the answer).
            answered = raised_after_answer(error, stats.hook_raised_after)
            cooldown = self._c.cooldown
            if isinstance(error, RateLimitError) and not answered and cooldown is not None:
                cooldown.on_throttle(slot.scope, error.retry_after)
                if slot.requeues < self._s.max_requeues and not self._flow.stopping:
                    slot.requeues += 1
                    self._requeue(slot, success=False)  # parks on the scope until it cooled
                    return
        self._release(slot, error is None)
        owed = False
        if error is not None:
            if isinstance(error, InvalidRequestError):
                error = locate(error, slot.index)  # refused before sending: say which job
            owed = not answered and self.quarantine.saw(slot.job, error)
        entry = self._finished(slot, result, error, elapsed, True, answered=answered)
        assert self.out is not None
        if not self.out.offer(entry):  # no coroutine when there is room
            await self.put(entry)
        if owed:  # after the outcome is out: what the callback raises cannot lose it
            await self.quarantine.notify(slot.job, error)  # type: ignore[arg-type]

    # -- the ways a job ends without being sent ----------------------------------------------

    async def _not_sent(self, slot: Slot, obstacle: Obstacle) -> None:
        if obstacle == _STOPPED:
            self._not_dispatched(slot)
        elif isinstance(obstacle, JournalError):
            self._release(slot, None)
            self._admission.claimed.discard(slot.key)
            what = "coordinator" if isinstance(obstacle, CoordinatorError) else "journal"
            self._stop(f"the {what} failed: {obstacle}")
            await self.put(self._finished(slot, None, obstacle, 0.0, False))
        elif isinstance(obstacle, BaseException):  # quarantined while it waited
            await self._end_refused(slot, obstacle)
        else:
            await self._elsewhere(slot, obstacle)

    def _not_dispatched(self, slot: Slot) -> None:
        """Stopped or closed before its request: it never left (a rerun sends it)."""
        intended = slot.stage is INTENDED
        self._release(slot, None)
        self._tally.not_dispatched += 1
        if slot.key is not None:
            self._admission.claimed.discard(slot.key)
            journal = self._admission.journal
            if intended and journal is not None:
                with contextlib.suppress(JournalError):
                    journal.forget(slot.key)  # queued after the intent: ordered

    async def _end_refused(self, slot: Slot, refused: BaseException) -> None:
        """Its credential is quarantined: it ends unsent (its intent taken back)."""
        intended = slot.stage is INTENDED
        self._release(slot, None)
        journal = self._admission.journal
        if intended and journal is not None:
            with contextlib.suppress(JournalError):
                journal.forget(slot.key)  # type: ignore[arg-type]
        await self._unsent(slot, refused)

    async def _elsewhere(self, slot: Slot, found: Verdict | Key) -> None:
        """Another run has it: its key (a verdict), or a shared cap (a key)."""
        if isinstance(found, tuple):  # at its cap in other processes: try again later
            self._release(slot, None)
            slot.stage = QUEUED
            self._flow.buffered += 1
            self._d.hold(found, slot)
            return
        self._release(slot, None)
        if found == "intent":  # its run died mid-call: report it, never send it
            unknown = OutcomeUnknownError(
                "the run that wrote this job's intent stopped while it may have been in "
                "flight; it is not sent again"
            )
            await self.put(self._finished(slot, None, unknown, 0.0, True))
            return
        self._admission.claimed.discard(slot.key)
        self._tally.skipped += 1
        if self._s.on_skip is not None:
            self._s.on_skip(slot.job, found)
        assert self.out is not None
        self.out.skip(slot.index)

    def _given_up(self, slot: Slot, stats: CallStats, elapsed: float) -> None:
        """A call cancelled in flight: outcome-unknown, journaled, never re-sent."""
        self._release(slot, None)
        slot.attempts += stats.attempts or 1
        flow = self._flow
        why = "given up at stop" if flow.giving_up and not flow.closed else "cancelled"
        unknown = OutcomeUnknownError(f"{why} while in flight; the action may have run")
        entry = self._finished(slot, None, unknown, elapsed, True, judge=False)
        if flow.closed:  # nobody will take it: journal it now
            with contextlib.suppress(JournalError):
                self._admission.taken(slot.key, "outcome_unknown")
        else:
            assert self.out is not None
            self.out.put_late(entry)

    async def _unsent(self, slot: Slot, error: BaseException) -> None:
        """``slot`` ends unsent with ``error``: journaled only for a failure the journal keeps
        (an invalid job), not one that proves nothing ran (no schema, a quarantined credential)."""
        journaled = journal_state(error) is not None
        if not journaled and slot.key is not None:
            self._admission.claimed.discard(slot.key)
        await self.put(self._finished(slot, None, error, 0.0, journaled))

    # -- the steps' helpers -------------------------------------------------------------------

    def _release(self, slot: Slot, success: bool | None) -> None:
        """Give ``slot``'s slots back (``success`` None: it was not sent). The one place it
        happens, once per pick: a job holds its slots from PICKED until here."""
        assert PICKED <= slot.stage < DONE, slot.stage
        slot.stage = DONE
        self._d.release(slot, success)

    def _requeue(self, slot: Slot, *, success: bool) -> None:
        """Back to the scheduler after a 429 (the server did not act: its intent goes)."""
        self._release(slot, success)
        slot.stage = QUEUED
        journal = self._admission.journal
        if journal is not None and slot.key is not None:
            journal.forget(slot.key)
        self._flow.buffered += 1
        self._d.sched.requeue(slot)

    def _stopping(self) -> bool:
        """Read anew after each wait: a stop may have come meanwhile (a method, so that a
        type checker does not take the first reading for the second)."""
        return self._flow.stopping

    def _refused(self, slot: Slot) -> BaseException | None:
        """The error ``slot`` ends with when its credential is quarantined, else None."""
        return self.quarantine.blocked(slot.job) if self.quarantine.bad else None

    def _finished(
        self,
        slot: Slot,
        result: Any,
        error: BaseException | None,
        elapsed: float,
        journaled: bool,
        *,
        judge: bool = True,
        answered: int = 0,
    ) -> Finished:
        """Count one finished job and make its outcome (``stop_when`` sees it counted,
        unless ``judge`` is False: a call given up while stopping). ``answered``: the status
        the server answered when ``error`` is not that answer's (the journal follows it)."""
        self._tally.count(error, slot.attempts, slot.throttled)
        if self.tracing is not None:
            self.tracing.finished(error)
        outcome = JobOutcome(
            slot.job, error is None, result, error, slot.attempts, elapsed, slot.index
        )  # positional: this is once per job
        stop_when = self._s.stop_when
        if judge and stop_when and not self._flow.stopping and stop_when(self._report()):
            self._stop(f"stop_when returned True after {self._tally.finished} outcomes")
        state = "succeeded" if error is None else journal_state(error, answered)
        return Finished(slot.index, outcome, slot.key if journaled else None, state)
