"""execute_many: jobs in, outcomes out — fair, capped, resumable, stoppable.

Shape of a run (no task per job: memory stays flat for millions of jobs)::

    source --reader task--> FairScheduler (look-ahead <= lookahead jobs)
                                |  round-robin over users; caps tried without waiting
                   up to `concurrency` worker tasks --> [rate permit] -> [journal intent]
                                |                          -> execute_one(job, stats)
                            OutcomeChannel --> consumer (`async for`), reordered if ordered=True
                                               (an outcome is journaled once it is taken)

The limits and the journal come from a coordinator (``coordinator.py``), used only through its
protocols. A job is executed at most once: one that ends with
:class:`~alloy_async.errors.OutcomeUnknownError` (or is given up in flight) is never re-sent;
a 429 ("not handled") cools its scope and re-queues the job, up to ``max_requeues`` times.

The journal (``journal.py``, ``admission.py``): a job's intent is durable before its request
reaches the transport; its outcome is journaled once the consumer has taken it.

Stopping: ``run.stop(reason, grace=...)`` (the CLI's SIGINT/SIGTERM), the deadline and
``stop_when`` stop dispatch at once, workers waiting for a rate permit included; in-flight
calls may finish (for ``grace`` seconds), then are given up and still yield an outcome each.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from .._aio import call_back
from .._checks import check_number
from .._core import CallStats
from ..errors import (
    CoordinatorError,
    InvalidRequestError,
    JournalError,
    OutcomeUnknownError,
    RateLimitError,
)
from ..models.bulk import JobOutcome
from .admission import Admission, locate
from .coordinator import Coordinator, Verdict
from .dispatch import Bell, Dispatch
from .journal import Journal
from .outcomes import Entry, OutcomeChannel, Tally, journal_state, raised_after_answer
from .quarantine import Quarantine
from .reader import Reader
from .scheduler import Slot
from .state import ExecuteOne, Flow, Grace, Jobs, Settings
from .tracing import RunTracing
from .views import RunViews

__all__ = ["BulkRun"]


class BulkRun(RunViews):
    """A running ``execute_many``: an async iterable of :class:`JobOutcome`, then ``report``.

    Iterate it once (``async for outcome in run``), preferably inside ``async with run:``.
    :meth:`stop` ends it gracefully (every dispatched job still yields its outcome); breaking
    out of the loop, cancelling the consuming task or ``await run.aclose()`` stops dispatch,
    cancels in-flight calls and waits for every task of the run to end.
    """

    def __init__(
        self, execute_one: ExecuteOne, jobs: Jobs, settings: Settings, coordinator: Coordinator
    ) -> None:
        self._execute_one = execute_one
        self._s = settings
        self._c = coordinator
        self._run_id = os.urandom(6).hex()
        self._flow = Flow()
        self._tally = Tally()
        self._admission = Admission(
            run_id=self._run_id,
            slots=coordinator.slots,
            scope=settings.scope,
            default_user=settings.default_user,
            on_skip=settings.on_skip,
            tally=self._tally,
        )
        self._out: OutcomeChannel | None = None
        self._wake = Bell()
        self._d = Dispatch(coordinator, self._wake)
        self._sched = self._d.sched
        self._reader = Reader(
            jobs, settings, self._flow, self._admission, self._d.sched, self._wake,
            emitted=lambda: self._out.next_emit if self._out is not None else 0,
            stop=self._stop, stamp=settings.observer is not None, grow=self._grow,
        )  # fmt: skip
        self._room = self._reader.room
        self._tracing: RunTracing | None = None
        self._quarantine = Quarantine(  # a refused API key stops a run without stop_when
            settings.on_credential_error, stop=self._stop, stop_on_api_key=not settings.stop_when,
            shared=getattr(coordinator, "quarantine", None),
        )  # fmt: skip
        self._tasks: list[asyncio.Task[None]] = []
        self._permit_waiters: set[asyncio.Task[Any]] = set()
        self._sending: set[asyncio.Task[Any]] = set()
        self._gate = self._d.gate
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._grace = Grace(self._give_up)
        self._opening: asyncio.Event | None = None  # set once _start is done with the journal

    def stop(self, reason: str = "stopped", *, grace: float | None = None) -> None:
        """Stop dispatch now; let in-flight calls finish, for at most ``grace`` seconds.

        Safe to call from a signal handler on the run's loop, and again (a smaller ``grace``
        shortens the wait; ``grace=0`` gives up at once). Nothing is sent after it, not even
        by a worker that was waiting for a rate permit. Calls still in flight when the grace
        ends are cancelled and yield :class:`~alloy_async.errors.OutcomeUnknownError`
        outcomes. Iteration then ends normally, every dispatched job having yielded one
        outcome; ``report.stop_reason`` says why.
        """
        check_number("grace", grace, low=0, optional=True)
        self._stop(reason)
        if grace is not None and self._flow.started:
            self._grace.within(grace)

    def _stop(self, reason: str) -> None:
        if not self._flow.stopping:
            self._flow.stopping = True
            self._tally.stop_reason = reason
            self._wake.ring_all()
            self._room.set()
        # A worker waiting for a rate permit has sent nothing: it must not send after a stop.
        for task in list(self._permit_waiters):
            task.cancel()

    def _give_up(self) -> None:
        self._flow.giving_up = True
        for task in list(self._sending):
            task.cancel()

    async def _start(self) -> None:
        flow = self._flow
        if flow.started:
            return
        flow.started = True
        loop = asyncio.get_running_loop()
        if self._c.journal is not None:
            opening = self._opening = asyncio.Event()
            try:
                await self._c.journal.open(self._run_id)
                if flow.closed:  # aclose() from another task while the journal opened
                    await self._c.journal.aclose()
                    return
            finally:
                opening.set()
            self._admission.journal = self._c.journal
        flow.t0 = loop.time()
        self._out = OutcomeChannel(
            2 * self._s.concurrency,
            ordered=self._s.ordered,
            taken=self._admission.taken,
            on_emit=self._room.set,
        )
        if self._s.deadline is not None:
            self._deadline_timer = loop.call_later(
                self._s.deadline, self._stop, f"deadline of {self._s.deadline:g} s reached"
            )
        if self._s.observer is not None:
            self._tracing = RunTracing(self._s.observer, self._run_id, self._s.concurrency)
        self._tasks.append(loop.create_task(self._reader.feed()))
        self._grow()  # the rest start as jobs are queued (_grow): never more than the jobs

    def _grow(self) -> None:
        """Start a worker, while there are fewer than ``concurrency`` and than the jobs queued
        so far (the reader calls it when a queued job found no idle worker)."""
        flow = self._flow
        if flow.live_workers < min(self._s.concurrency, max(1, flow.next_index)):
            flow.live_workers += 1
            self._tasks.append(asyncio.get_running_loop().create_task(self._work()))

    async def aclose(self) -> None:
        """Stop dispatch, cancel in-flight calls, wait for every task, flush the journal.

        In-flight calls end as outcome-unknown in the journal (never re-sent); outcomes the
        consumer did not take are journaled as they ended.
        """
        await self._close(taken=True)

    async def _close(self, *, taken: bool) -> None:
        """``taken``: the consumer is done with the last outcome it got; not so when it left
        with an exception (that job keeps its intent: a rerun reports it, never sends it)."""
        flow = self._flow
        if flow.closed:
            return
        flow.closed = True
        if flow.started and flow.t_end is None:
            self._stop("closed before the input was exhausted")
        try:
            if self._opening is not None:
                # The consumer may still be opening the journal: it lets go of it when it sees
                # the run closed, and this returns only then (the lock never outlives aclose).
                await self._opening.wait()
            for task in self._tasks:
                task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:  # even when cancelled again while waiting: never leave the journal open
            out = self._out
            if out is not None:
                # What the consumer did not take is journaled as it ended (a failed journal
                # keeps the intents: a rerun reports them outcome-unknown, never sends them).
                # With on_outcome only what the sink took is done; the rest keep their intents.
                with contextlib.suppress(JournalError):
                    if taken and not flow.sinking:
                        out.ack()
                    for entry in out.pending():
                        if self._s.on_outcome is None or entry[3] is None:
                            self._admission.taken(entry[2], entry[3])
                out.close()  # a consumer waiting in `async for` (another task) must learn of it
            self._d.cancel_timers()
            self._grace.cancel()
            if self._deadline_timer is not None:
                self._deadline_timer.cancel()
            if self._admission.journal is not None:
                await self._admission.journal.aclose()
            if flow.t_end is None and flow.t0 is not None:
                flow.t_end = asyncio.get_running_loop().time()
            if self._tracing is not None:
                self._tracing.end(self._tally)

    async def __aenter__(self) -> BulkRun:
        await self._start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        await self._close(taken=exc_type is None)

    async def __aiter__(self) -> AsyncIterator[JobOutcome]:
        """Yield outcomes as jobs finish (or in input order with ``ordered=True``)."""
        flow = self._flow  # (read again below: another task may close the run meanwhile)
        if flow.closed:
            return
        try:
            await self._start()
            out = self._out
            if out is None:  # closed by another task while it started: nothing was sent
                return
            while True:
                outcome = out.take() or await out.next()
                if outcome is None:
                    self._flow.t_end = asyncio.get_running_loop().time()
                    break
                if self._s.on_outcome is not None:
                    flow.sinking = True
                    try:
                        await call_back(self._s.on_outcome, outcome)
                    except BaseException as exc:
                        self._stop(f"on_outcome raised {type(exc).__name__}")
                        await self._close(taken=False)  # not done: the sink may not have it
                        raise
                    flow.sinking = False
                    if self._flow.closed:  # closed from another task while the sink worked
                        break
                yield outcome
        finally:
            # Also reached when the consumer breaks out (the generator is finalised) or is
            # cancelled: nothing of the run may outlive its consumer.
            await self.aclose()
        if self._flow.source_error is not None:
            raise self._flow.source_error

    async def _work(self) -> None:
        flow = self._flow
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        # One CallStats per worker, reset after each job: nothing keeps it past its call.
        stats = CallStats()
        try:
            while True:
                slot = None if flow.stopping else self._sched.pick(self._d.try_start)
                if slot is None:
                    if flow.stopping or (
                        flow.source_done and flow.buffered == 0 and flow.in_flight == 0
                    ):
                        return
                    if flow.in_flight == 0 and self._sched.waiting and not self._d.timers:
                        # Slots held outside this run (a shared coordinator): no release of
                        # ours will come, so poll for room.
                        self._sched.retry_all()
                        await asyncio.sleep(0.05)
                        continue
                    await self._wake.wait()
                    continue
                self._wake.ring()  # the chain: another idle worker may find a job too
                flow.buffered -= 1
                self._room.set()
                flow.in_flight += 1
                try:
                    if slot.preset is not None:
                        await self._decided(slot, slot.preset)
                    else:
                        await self._call(slot, stats, loop, task)
                        stats.attempts = 0
                        stats.throttled = 0.0
                        stats.hook_raised_after = 0
                finally:
                    flow.in_flight -= 1
        except Exception as exc:  # a bug in stop_when or scope: end the run, raise it after
            flow.source_error = flow.source_error or exc
            self._stop(f"{type(exc).__name__}: {exc}")
        finally:
            flow.live_workers -= 1
            self._wake.ring_all()
            if flow.live_workers == 0 and not flow.closed:
                self._tally.not_dispatched += flow.buffered
                flow.buffered = 0
                assert self._out is not None
                self._out.close()

    async def _call(
        self, slot: Slot, stats: CallStats, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]
    ) -> None:
        journal = self._admission.journal if slot.key is not None else None
        sent = intended = released = False
        rate_wait = 0.0
        error: BaseException | None = None
        result: Any = None
        started = 0.0
        refused = self._quarantine.blocked(slot.job) if self._quarantine.bad else None
        if refused is not None:  # its credential was refused earlier: no permit, no intent
            await self._refuse(slot, refused, None)
            return
        try:
            try:
                found = await self._gate.before(slot) if self._gate.active else None
                if found is None:
                    if self._c.rate is not None:
                        self._permit_waiters.add(task)
                        rate_wait = loop.time()
                        try:
                            await self._c.rate.acquire()
                        finally:
                            self._permit_waiters.discard(task)
                        rate_wait = loop.time() - rate_wait
                    if self._flow.stopping:  # stopped while this worker got its permit
                        raise asyncio.CancelledError
                    if journal is not None:
                        intended = True
                        found = await self._gate.claim(journal, slot.key)  # type: ignore[arg-type]
                        intended = found is None
                        if self._flow.stopping:  # stopped while the intent was committing
                            raise asyncio.CancelledError
            except JournalError as exc:
                # Never send what the journal (or a shared coordinator) could not record.
                self._d.release(slot, None)
                released = True  # what follows may be cancelled: never release twice
                self._admission.claimed.discard(slot.key)
                what = "coordinator" if isinstance(exc, CoordinatorError) else "journal"
                self._stop(f"the {what} failed: {exc}")
                await self._put(self._entry(slot, None, exc, 0.0, False))
                return
            if found is not None:
                self._d.release(slot, None)
                released = True
                await self._elsewhere(slot, found)
                return
            # Again: a 401 may have quarantined it while this worker waited for a permit or
            # for its intent to commit.
            refused = self._quarantine.blocked(slot.job) if self._quarantine.bad else None
            if refused is None:
                started = loop.time()
                sent = True
                self._sending.add(task)
                try:
                    if self._tracing is None:
                        result = await self._execute_one(slot.job, stats)
                    else:
                        queued = started - slot.t_in - rate_wait
                        result = await self._tracing.run_job(
                            slot, self._execute_one, stats, queued, rate_wait
                        )
                except Exception as exc:
                    error = exc
                finally:
                    self._sending.discard(task)
        except asyncio.CancelledError:
            if released:  # its outcome was on its way (counted, journaled as it ends)
                raise
            self._d.release(slot, None)
            if sent:
                self._given_up(slot, stats, loop.time() - started)
            else:
                self._tally.not_dispatched += 1
                if slot.key is not None:
                    self._admission.claimed.discard(slot.key)
                    if intended and journal is not None:
                        with contextlib.suppress(JournalError):
                            journal.forget(slot.key)  # queued after the intent: ordered
            raise
        if refused is not None:
            await self._refuse(slot, refused, journal if intended else None)
            return
        slot.attempts += stats.attempts or 1
        slot.throttled += stats.throttled
        # Set when the error is not the server's answer (a hook raised it after the answer).
        answered = raised_after_answer(error, stats.hook_raised_after) if error else 0
        if isinstance(error, RateLimitError) and not answered and self._c.cooldown is not None:
            self._c.cooldown.on_throttle(slot.scope, error.retry_after)
            if slot.requeues < self._s.max_requeues and not self._flow.stopping:
                slot.requeues += 1
                self._d.release(slot, False)
                if journal is not None:
                    journal.forget(slot.key)  # type: ignore[arg-type]  # 429: not handled
                self._flow.buffered += 1
                self._sched.requeue(slot)  # parks on the scope until its cool-down ends
                return
        self._d.release(slot, error is None)
        if error is not None and isinstance(error, InvalidRequestError):
            error = locate(error, slot.index)  # refused before sending: say which job
        owed = error is not None and not answered and self._quarantine.saw(slot.job, error)
        entry = self._entry(slot, result, error, loop.time() - started, True, answered=answered)
        if not self._out.offer(entry):  # type: ignore[union-attr]  # no coroutine when room
            await self._put(entry)
        if owed:  # after the outcome is out: what the callback raises cannot lose it
            await self._quarantine.notify(slot.job, error)  # type: ignore[arg-type]

    async def _elsewhere(self, slot: Slot, found: Verdict | tuple[str, str]) -> None:
        """Another process has ``slot``: its key (a verdict) or a shared cap (a key)."""
        if isinstance(found, tuple):  # at its cap in other processes: try again later
            self._flow.buffered += 1
            self._d.hold(found, slot)
            return
        if found == "intent":  # its run died mid-call: report it, never send it
            unknown = OutcomeUnknownError(
                "the run that wrote this job's intent stopped while it may have been in "
                "flight; it is not sent again"
            )
            await self._put(self._entry(slot, None, unknown, 0.0, True))
            return
        self._admission.claimed.discard(slot.key)
        self._tally.skipped += 1
        if self._s.on_skip is not None:
            self._s.on_skip(slot.job, found)
        assert self._out is not None
        self._out.skip(slot.index)

    def _given_up(self, slot: Slot, stats: CallStats, elapsed: float) -> None:
        """A call cancelled in flight: outcome-unknown, journaled, never re-sent."""
        slot.attempts += stats.attempts or 1
        why = "given up at stop" if self._flow.giving_up and not self._flow.closed else "cancelled"
        unknown = OutcomeUnknownError(f"{why} while in flight; the action may have run")
        entry = self._entry(slot, None, unknown, elapsed, True, judge=False)
        if self._flow.closed:  # nobody will take it: journal it now
            with contextlib.suppress(JournalError):
                self._admission.taken(slot.key, "outcome_unknown")
        else:
            assert self._out is not None
            self._out.put_late(entry)

    async def _refuse(self, slot: Slot, refused: BaseException, intent: Journal | None) -> None:
        """``slot``'s credential is quarantined: it ends unsent (its intent taken back)."""
        self._d.release(slot, None)
        if intent is not None:
            with contextlib.suppress(JournalError):
                intent.forget(slot.key)  # type: ignore[arg-type]
        await self._decided(slot, refused)

    async def _decided(self, slot: Slot, error: BaseException) -> None:
        """``slot`` ends unsent with ``error``: journaled only for a failure the journal keeps
        (an invalid job), not one that proves nothing ran (no schema, a quarantined credential)."""
        journaled = journal_state(error) is not None
        if not journaled and slot.key is not None:
            self._admission.claimed.discard(slot.key)
        await self._put(self._entry(slot, None, error, 0.0, journaled))

    def _entry(
        self, slot: Slot, result: Any, error: BaseException | None, elapsed: float,
        journaled: bool, *, judge: bool = True, answered: int = 0,
    ) -> Entry:  # fmt: skip
        """Count one finished job and make its outcome (``stop_when`` sees it counted,
        unless ``judge`` is False: a call given up while stopping). ``answered``: the status
        the server answered when ``error`` is not that answer's (the journal follows it)."""
        self._tally.count(error, slot.attempts, slot.throttled)
        if self._tracing is not None:
            self._tracing.finished(error)
        outcome = JobOutcome(
            slot.job, error is None, result, error, slot.attempts, elapsed, slot.index
        )  # positional: this is once per job
        stop_when = self._s.stop_when
        if judge and stop_when is not None and not self._flow.stopping and stop_when(self.report):
            self._stop(f"stop_when returned True after {self._tally.finished} outcomes")
        state = "succeeded" if error is None else journal_state(error, answered)
        return (slot.index, outcome, slot.key if journaled else None, state)

    async def _put(self, entry: Entry) -> None:
        assert self._out is not None
        try:
            await self._out.put(entry)
        except asyncio.CancelledError:  # closed while the consumer was behind: journal it
            with contextlib.suppress(JournalError):
                self._admission.taken(entry[2], entry[3])
            raise
