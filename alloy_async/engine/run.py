"""execute_many: jobs in, outcomes out — fair, capped, resumable, stoppable.

Shape of a run (no task per job: memory stays flat for millions of jobs)::

    source --reader task--> FairScheduler (look-ahead <= lookahead jobs)
                                |  users ranked + round-robin; caps tried without waiting
                   up to `concurrency` worker tasks --> [rate permit] -> [journal intent]
                                |                          -> execute_one(job, stats)
                            OutcomeChannel --> consumer (`async for`), reordered if ordered=True
                                               (an outcome is journaled once it is taken)

The limits and the journal come from a coordinator (``coordinator.py``), used only through its
protocols. What happens to one job once a worker has picked it, and every way it can end, is
``life.py``: a job is executed at most once (one that ends with
:class:`~alloy_async.errors.OutcomeUnknownError`, or is given up in flight, is never re-sent);
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

from .._aio import call_back
from .._checks import check_number
from .._core import CallStats
from ..errors import JournalError
from ..models.bulk import JobOutcome
from .admission import Admission
from .coordinator import Coordinator
from .dispatch import Bell, Dispatch
from .life import JobLife, Turn
from .outcomes import OutcomeChannel, Tally
from .reader import Reader
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
        self._d = Dispatch(coordinator, self._wake, settings.schedule, settings.concurrency)
        self._reader = Reader(
            jobs,
            settings,
            self._flow,
            self._admission,
            self._d.sched,
            self._wake,
            emitted=lambda: self._out.next_emit if self._out is not None else 0,
            stop=self._stop,
            stamp=settings.observer is not None,
            grow=self._grow,
        )
        self._life = JobLife(
            settings=settings,
            coordinator=coordinator,
            flow=self._flow,
            tally=self._tally,
            dispatch=self._d,
            admission=self._admission,
            execute_one=execute_one,
            stop=self._stop,
            report=lambda: self.report,
        )
        self._tasks: list[asyncio.Task[None]] = []
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
            self._reader.room.set()
        # A worker waiting for a rate permit has sent nothing: it must not send after a stop.
        self._life.stop_permit_waits()

    def _give_up(self) -> None:
        self._flow.giving_up = True
        self._life.give_up()

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
            on_emit=self._reader.room.set,
        )
        if self._s.deadline is not None:
            self._deadline_timer = loop.call_later(
                self._s.deadline, self._stop, f"deadline of {self._s.deadline:g} s reached"
            )
        tracing = None
        if self._s.observer is not None:
            tracing = RunTracing(self._s.observer, self._run_id, self._s.concurrency)
        self._life.begin(self._out, tracing)
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
                        if self._s.on_outcome is None or entry.state is None:
                            self._admission.taken(entry.key, entry.state)
                out.close()  # a consumer waiting in `async for` (another task) must learn of it
            self._d.cancel_timers()
            self._grace.cancel()
            if self._deadline_timer is not None:
                self._deadline_timer.cancel()
            if self._admission.journal is not None:
                await self._admission.journal.aclose()
            if flow.t_end is None and flow.t0 is not None:
                flow.t_end = asyncio.get_running_loop().time()
            if self._life.tracing is not None:
                self._life.tracing.end(self._tally)

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
        sched = self._d.sched
        task = asyncio.current_task()
        assert task is not None
        # One CallStats per worker, reset after each job: nothing keeps it past its call.
        stats = CallStats()
        line = self._life.line
        turn: Turn | None = None
        try:
            while True:
                # With a rate, the place in the permit line comes before the pick: a picked
                # job holds its user's slot (life.py's docstring).
                turn = None if line is None or flow.stopping else await line.enter()
                slot = None if flow.stopping else sched.pick(self._d.try_start)
                if slot is None:
                    if turn is not None:
                        turn.leave()
                    if flow.stopping or (
                        flow.source_done and flow.buffered == 0 and flow.in_flight == 0
                    ):
                        return
                    if flow.in_flight == 0 and sched.waiting and not self._d.timers:
                        # Slots held outside this run (a shared coordinator): no release of
                        # ours will come, so poll for room.
                        sched.retry_all()
                        await asyncio.sleep(0.05)
                        continue
                    await self._wake.wait()
                    continue
                self._wake.ring()  # the chain: another idle worker may find a job too
                flow.buffered -= 1
                self._reader.room.set()
                flow.in_flight += 1
                try:
                    await self._life.live(slot, stats, task, turn)
                finally:
                    flow.in_flight -= 1
                    stats.attempts = 0
                    stats.throttled = 0.0
                    stats.hook_raised_after = 0
        except Exception as exc:  # a bug in stop_when or scope: end the run, raise it after
            flow.source_error = flow.source_error or exc
            self._stop(f"{type(exc).__name__}: {exc}")
        finally:
            if turn is not None:  # the scope or a pick raised: the line must not stay held
                turn.leave()
            flow.live_workers -= 1
            self._wake.ring_all()
            if flow.live_workers == 0 and not flow.closed:
                self._tally.not_dispatched += flow.buffered
                flow.buffered = 0
                assert self._out is not None
                self._out.close()
