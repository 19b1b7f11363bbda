"""execute_many: jobs in, outcomes out — fair, capped, resumable, cancellable.

Shape of a run (no task per job: memory stays flat for millions of jobs)::

    source --feeder task--> per-user queues (look-ahead <= lookahead jobs)
                                |  round-robin over users, caps checked without waiting
                            `concurrency` worker tasks --> execute_one(job, stats)
                                |
                            outcome queue --> consumer (`async for`), reordered if ordered=True

Fairness: ready jobs wait in one FIFO per user, and workers take the next job round-robin over
the users that have room, so a user with 50,000 queued jobs gets one turn per round like a user
with 5. A user at its ``per_user`` cap leaves the rotation until one of its jobs ends, so it
never holds a worker. A job whose connector is at ``per_connector`` (or whose adaptive scope is
cooling or full) is parked on that key, and only that key's release brings it back: nobody queues
behind it. Fairness reaches as far as the look-ahead: jobs not yet read from the input cannot be
scheduled, so ``lookahead`` trades memory for reach.

Side effects: a job is executed at most once. A job that ends with
:class:`~alloy_async.errors.OutcomeUnknownError` (or is given up while in flight) is reported,
never re-sent. A job that ends with a 429 (:class:`~alloy_async.errors.RateLimitError`, which means
"not handled") is fed to the adaptive limiter and re-queued behind its scope's cool-down, up to
``max_requeues`` times.

Write-ahead journal (``checkpoint=path`` or a :class:`~alloy_async.journal.Journal`): a job's
intent is durable before its request reaches the transport; its outcome is journaled once the
consumer has taken it (when it asks for the next one), so whatever the consumer writes for an
outcome exists before the journal says the job is done. A rerun skips finished jobs, reports an
intent without an outcome (the process died mid-call) as outcome-unknown without sending it, and
runs again what never reached the server (429, 503, no connection, never dispatched). The same
key twice is run once: the second is skipped as a duplicate, in one run or across runs.

Stopping: ``run.stop(reason, grace=...)`` (what the CLI does on SIGINT/SIGTERM), the deadline
and ``stop_when`` stop dispatch at once, workers waiting for a rate permit included; in-flight
calls may finish (for ``grace`` seconds), then are given up and still yield an outcome each.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

import attrs

from ._core import CallStats
from .errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    InvalidRequestError,
    JournalError,
    OutcomeUnknownError,
    RateLimitError,
)
from .journal import Journal, SqliteJournal, State
from .limits import GLOBAL_KEY, AdaptiveLimiter, ConcurrencyLimiter, RateLimiter
from .models.bulk import BulkReport, ExecuteJob, JobOutcome

__all__ = ["BulkRun", "ExecuteOne", "check_caps", "execute_many"]

#: The coroutine that runs one job; the services layer passes ``actions.execute`` wired to the
#: request pipeline. It should count attempts and throttled seconds in the ``CallStats``.
ExecuteOne = Callable[[ExecuteJob, CallStats], Awaitable[Any]]

_DONE = object()
_MIN_LOOKAHEAD = 10_000


Jobs = Iterable[ExecuteJob | Mapping[str, Any]] | AsyncIterable[ExecuteJob | Mapping[str, Any]]


@attrs.frozen
class _Settings:
    """The options of one run, as :func:`execute_many` documents them."""

    concurrency: int
    per_user: int | None
    per_connector: int | None
    rate: float | RateLimiter | None
    ordered: bool
    deadline: float | None
    stop_when: Callable[[BulkReport], bool] | None
    checkpoint: str | os.PathLike[str] | Journal | None
    adaptive: AdaptiveLimiter | bool
    scope: Callable[[ExecuteJob], str] | None
    lookahead: int | None
    max_requeues: int
    default_user: str | None = None
    on_skip: Callable[[ExecuteJob, str], None] | None = None


class _Item:
    """One job on its way through the scheduler."""

    __slots__ = (
        "attempts", "index", "job", "key", "keys", "preset", "requeues", "scope", "throttled",
        "user",
    )  # fmt: skip

    def __init__(
        self, index: int, job: Any, key: str | None, keys: Any, scope: str, user: str
    ) -> None:
        self.index = index
        self.job = job
        self.key = key
        self.keys = keys
        self.scope = scope
        self.user = user
        self.attempts = 0
        self.requeues = 0
        self.throttled = 0.0
        # An outcome decided without sending: a bad job, or an intent an earlier run left.
        self.preset: BaseException | None = None


def _kind(error: BaseException | None) -> State:
    if error is None:
        return "succeeded"
    if isinstance(error, OutcomeUnknownError):
        return "outcome_unknown"
    return "failed"


def _journal_state(error: BaseException | None) -> State | None:
    """What the journal keeps of a finished job: its kind, or None (never sent: a rerun
    may send it) for failures that prove the server did not act."""
    if isinstance(error, OutcomeUnknownError):
        return "outcome_unknown"
    if isinstance(error, APIStatusError):
        if isinstance(error, RateLimitError) or error.status == 503:
            return None
        return "failed"
    if isinstance(error, APITimeoutError):
        return "failed" if error.sent else None
    if isinstance(error, APIConnectionError):
        return None
    return _kind(error)


def _check_cap(name: str, value: object, *, optional: bool) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        hint = " (None means no cap)" if optional else ""
        raise InvalidRequestError(
            f"{name} must be an integer >= 1{hint}, got {value!r}", field=name
        )


def check_caps(concurrency: object, per_user: object, per_connector: object) -> None:
    """Refuse a cap that is not an integer >= 1 (``per_*=None`` means no cap; 0 is refused
    rather than read as "no cap"), naming the argument."""
    _check_cap("concurrency", concurrency, optional=False)
    _check_cap("per_user", per_user, optional=True)
    _check_cap("per_connector", per_connector, optional=True)


#: (index, outcome, journal key, state to journal: a State, or None to forget the key)
_Entry = tuple[int, JobOutcome, "str | None", "State | None"]


class BulkRun:
    """A running ``execute_many``: an async iterable of :class:`JobOutcome`, then ``report``.

    Iterate it once (``async for outcome in run``), preferably inside ``async with run:``.
    :meth:`stop` ends it gracefully (every dispatched job still yields its outcome); breaking
    out of the loop, cancelling the consuming task or ``await run.aclose()`` stops dispatch,
    cancels in-flight calls and waits for every task of the run to end.
    """

    def __init__(self, execute_one: ExecuteOne, jobs: Jobs, settings: _Settings) -> None:
        concurrency = settings.concurrency
        check_caps(concurrency, settings.per_user, settings.per_connector)
        if settings.deadline is not None and not settings.deadline > 0:
            raise InvalidRequestError(
                f"deadline must be > 0 seconds, got {settings.deadline!r}", field="deadline"
            )
        caps = {"user": settings.per_user, "connector": settings.per_connector}
        self.limiter = ConcurrencyLimiter(concurrency, per_key={k: v for k, v in caps.items() if v})
        rate = settings.rate
        self.rate = RateLimiter(rate) if isinstance(rate, (int, float)) else rate
        adaptive = settings.adaptive
        self.adaptive = AdaptiveLimiter(concurrency) if adaptive is True else (adaptive or None)
        self._execute_one = execute_one
        self._jobs = jobs
        self._s = settings
        self._concurrency = concurrency
        self._ordered = settings.ordered
        self._scope = settings.scope or _connector_scope
        self._lookahead = settings.lookahead or max(_MIN_LOOKAHEAD, 64 * concurrency)
        self._run_id = os.urandom(6).hex()
        # scheduler state (see the module docstring)
        self._users: dict[str, deque[_Item]] = {}
        self._rr: deque[str] = deque()
        self._in_rr: set[str] = set()
        self._user_blocked: set[str] = set()
        self._parked: dict[Any, deque[_Item]] = {}
        self._priority: deque[_Item] = deque()
        self._immediate: deque[_Item] = deque()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._grace_timer: asyncio.TimerHandle | None = None
        self._grace_at: float | None = None
        self._all_done = False
        self._done_seen = False
        self._buffered = 0
        self._in_flight = 0
        self._next_index = 0
        self._next_emit = 0
        self._reorder: dict[int, _Entry] = {}
        self._late: deque[_Entry] = deque()
        self._unacked: _Entry | None = None
        self._source_done = False
        self._source_error: BaseException | None = None
        self._stopping = False
        self._giving_up = False
        self._closed = False
        self._started = False
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._out: asyncio.Queue[Any] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._permit_waiters: set[asyncio.Task[Any]] = set()
        self._sending: set[asyncio.Task[Any]] = set()
        self._journal: Journal | None = None
        self._claimed: set[str] = set()
        self._live_workers = 0
        # report tally
        self._counts = {"succeeded": 0, "failed": 0, "outcome_unknown": 0}
        self._by_error: dict[str, int] = {}
        self._skipped = 0
        self._duplicates = 0
        self._attempts = 0
        self._retries = 0
        self._throttled = 0.0
        self._t0: float | None = None
        self._t_end: float | None = None
        self._stop_reason: str | None = None
        self._not_dispatched = 0

    # -- report ------------------------------------------------------------------------------

    @property
    def report(self) -> BulkReport:
        """The counts so far (final once iteration has ended or the run is closed)."""
        if self._t0 is None:
            wall = 0.0
        else:
            end = self._t_end if self._t_end is not None else asyncio.get_running_loop().time()
            wall = end - self._t0
        return BulkReport(
            succeeded=self._counts["succeeded"],
            failed=self._counts["failed"],
            outcome_unknown=self._counts["outcome_unknown"],
            skipped=self._skipped,
            duplicates=self._duplicates,
            not_dispatched=self._not_dispatched + (self._buffered if self._stopping else 0),
            by_error=dict(self._by_error),
            attempts=self._attempts,
            retries=self._retries,
            throttled_seconds=self._throttled,
            wall_time=wall,
            stopped_early=self._stop_reason is not None,
            stop_reason=self._stop_reason,
        )

    @property
    def journal(self) -> Journal | None:
        """The run's write-ahead journal (``checkpoint=``), or None."""
        return self._journal

    def _tally(self, item: _Item, error: BaseException | None) -> None:
        kind = _kind(error)
        self._counts[kind] += 1
        if error is not None:
            name = type(error).__name__
            self._by_error[name] = self._by_error.get(name, 0) + 1
        self._attempts += item.attempts
        self._retries += max(0, item.attempts - 1)
        self._throttled += item.throttled

    # -- stopping ----------------------------------------------------------------------------

    def stop(self, reason: str = "stopped", *, grace: float | None = None) -> None:
        """Stop dispatch now; let in-flight calls finish, for at most ``grace`` seconds.

        Safe to call from a signal handler on the run's loop, and again (a smaller ``grace``
        shortens the wait; ``grace=0`` gives up at once). Nothing is sent after it, not even
        by a worker that was waiting for a rate permit. Calls still in flight when the grace
        ends are cancelled and yield :class:`~alloy_async.errors.OutcomeUnknownError`
        outcomes. Iteration then ends normally, every dispatched job having yielded one
        outcome; ``report.stop_reason`` says why.
        """
        if grace is not None and not grace >= 0:
            raise InvalidRequestError(f"grace must be >= 0 seconds, got {grace!r}", field="grace")
        self._stop(reason)
        if grace is None or not self._started:
            return
        loop = asyncio.get_running_loop()
        at = loop.time() + grace
        if self._grace_at is not None and self._grace_at <= at:
            return
        if self._grace_timer is not None:
            self._grace_timer.cancel()
        self._grace_at = at
        if grace == 0:
            self._give_up()
        else:
            self._grace_timer = loop.call_at(at, self._give_up)

    def _stop(self, reason: str) -> None:
        if not self._stopping:
            self._stopping = True
            self._stop_reason = reason
            self._notify()
            self._room.set()
        # A worker waiting for a rate permit has sent nothing: it must not send after a stop.
        for task in list(self._permit_waiters):
            task.cancel()

    def _give_up(self) -> None:
        self._grace_timer = None
        self._giving_up = True
        for task in list(self._sending):
            task.cancel()

    # -- lifecycle ---------------------------------------------------------------------------

    async def _start(self) -> None:
        if self._started:
            return
        self._started = True
        loop = asyncio.get_running_loop()
        checkpoint = self._s.checkpoint
        if checkpoint is not None:
            journal = checkpoint if isinstance(checkpoint, Journal) else SqliteJournal(checkpoint)
            await journal.open(self._run_id)
            self._journal = journal
        self._t0 = loop.time()
        self._out = asyncio.Queue(maxsize=2 * self._concurrency)
        if self._s.deadline is not None:
            self._deadline_timer = loop.call_later(
                self._s.deadline, self._stop, f"deadline of {self._s.deadline:g} s reached"
            )
        self._tasks.append(loop.create_task(self._feed()))
        self._live_workers = self._concurrency
        self._tasks.extend(loop.create_task(self._work()) for _ in range(self._concurrency))

    async def aclose(self) -> None:
        """Stop dispatch, cancel in-flight calls, wait for every task, flush the journal.

        In-flight calls end as outcome-unknown in the journal (never re-sent); outcomes the
        consumer did not take are journaled as they ended.
        """
        if self._closed:
            return
        self._closed = True
        if self._started and self._t_end is None:
            self._stop("closed before the input was exhausted")
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        # The consumer is gone: what it did not take is journaled as it ended. (A journal
        # that has failed cannot take it; its intents make a rerun report those jobs as
        # outcome-unknown, never send them.)
        pending: list[Any] = [*self._late, *self._reorder.values()]
        self._late.clear()
        self._reorder.clear()
        if self._out is not None:
            while not self._out.empty():
                pending.append(self._out.get_nowait())
        with contextlib.suppress(JournalError):
            self._ack()
            for entry in pending:
                if entry is not _DONE:
                    self._journal_outcome(entry[2], entry[3])
        # A consumer waiting in `async for` (another task) must learn that the run ended; the
        # workers' own end-of-run path is skipped once the run is closed.
        if self._out is not None and not self._all_done:
            self._all_done = True
            self._out.put_nowait(_DONE)
        await self._finish()

    async def _finish(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for handle in (self._deadline_timer, self._grace_timer):
            if handle is not None:
                handle.cancel()
        if self._journal is not None:
            await self._journal.aclose()
        if self._t_end is None and self._t0 is not None:
            self._t_end = asyncio.get_running_loop().time()

    async def __aenter__(self) -> BulkRun:
        await self._start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def __aiter__(self) -> AsyncIterator[JobOutcome]:
        """Yield outcomes as jobs finish (or in input order with ``ordered=True``)."""
        if self._closed:
            return
        try:
            await self._start()
            while True:
                outcome = await self._next()
                if outcome is None:
                    break
                yield outcome
        finally:
            # Also reached when the consumer breaks out (the generator is finalised) or is
            # cancelled: nothing of the run may outlive its consumer.
            await self.aclose()
        if self._source_error is not None:
            raise self._source_error

    def _ack(self) -> None:
        """The consumer is done with the last outcome it took: journal it now."""
        entry = self._unacked
        if entry is not None:
            self._unacked = None
            self._journal_outcome(entry[2], entry[3])

    def _journal_outcome(self, key: str | None, state: State | None) -> None:
        journal = self._journal
        if key is None or journal is None:
            return
        self._claimed.discard(key)
        if state is None:
            journal.forget(key)
        else:
            journal.record(key, state)

    async def _next(self) -> JobOutcome | None:
        self._ack()
        out = self._out
        assert out is not None
        while True:
            if self._ordered and self._next_emit in self._reorder:
                entry = self._reorder.pop(self._next_emit)
                self._next_emit += 1
                self._room.set()
                self._unacked = entry
                return entry[1]
            if self._late:
                got: Any = self._late.popleft()
            elif self._done_seen or (self._all_done and out.empty()):
                self._done_seen = True
                if self._ordered and self._reorder:  # gaps: jobs stopped before dispatch
                    self._next_emit = min(self._reorder)
                    continue
                self._t_end = asyncio.get_running_loop().time()
                return None
            else:
                got = await out.get()
                if got is _DONE:
                    self._done_seen = True
                    continue
            if not self._ordered:
                self._unacked = got
                return got[1]  # type: ignore[no-any-return]
            self._reorder[got[0]] = got

    # -- feeding -----------------------------------------------------------------------------

    def _full(self) -> bool:
        if self._buffered >= self._lookahead:
            return True
        return self._ordered and self._next_index - self._next_emit >= self._lookahead

    async def _feed(self) -> None:
        try:
            jobs = self._jobs
            if isinstance(jobs, AsyncIterable):
                async for raw in jobs:
                    if await self._accept(raw):
                        break
            else:
                for raw in jobs:
                    if await self._accept(raw):
                        break
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._source_error = exc
            self._stop(f"reading the jobs failed: {type(exc).__name__}: {exc}")
        finally:
            self._source_done = True
            self._notify()

    async def _accept(self, raw: ExecuteJob | Mapping[str, Any]) -> bool:
        """Queue one job; True when dispatch has stopped and reading should end."""
        while self._full() and not self._stopping:
            self._room.clear()
            await self._room.wait()
        if self._stopping:
            return True
        index = self._next_index
        job: Any = raw
        preset: BaseException | None = None
        try:
            if not isinstance(job, ExecuteJob):
                job = ExecuteJob.from_mapping(job)
            key = job.effective_key if self._journal is not None else None
        except (InvalidRequestError, TypeError, ValueError) as exc:
            # One bad job is one failed outcome, never the end of the run.
            field = exc.field if isinstance(exc, InvalidRequestError) else "request_body"
            if not isinstance(exc, InvalidRequestError):
                exc = InvalidRequestError(f"the job cannot be encoded as JSON: {exc}")
            preset = InvalidRequestError(f"job at index {index}: {exc}", field=field)
            given = raw.get("key") if isinstance(raw, Mapping) else getattr(raw, "key", None)
            key = given if isinstance(given, str) and self._journal is not None else None
        if key is not None:
            skip = self._lookup(key)
            if skip == "intent":
                preset = preset or OutcomeUnknownError(
                    "an earlier run stopped while this job may have been in flight; "
                    "it is not sent again"
                )
            elif skip is not None:
                if skip == "duplicate":
                    self._duplicates += 1
                else:
                    self._skipped += 1
                if self._s.on_skip is not None:
                    self._s.on_skip(job, skip)
                return False
            self._claimed.add(key)
        self._next_index += 1
        self._buffered += 1
        if preset is not None:
            item = _Item(index, job, key, (), "", "")
            item.preset = preset
            self._immediate.append(item)
            self._notify()
            return False
        user = job.user_id or self._s.default_user or ""
        keys = self.limiter.keys_for({"user": user or None, "connector": job.connector_id})
        item = _Item(index, job, key, keys, self._scope(job), user)
        queue = self._users.get(user)
        if queue is None:
            queue = self._users[user] = deque()
        queue.append(item)
        self._enter_rotation(user)
        self._notify()
        # A sync iterable never yields otherwise: let the workers start on what is queued.
        if self._next_index % 256 == 0:
            await asyncio.sleep(0)
        return False

    def _lookup(self, key: str) -> str | None:
        """None (run it), "intent" (an earlier run died mid-call), "duplicate" or "done"."""
        if key in self._claimed:
            return "duplicate"
        assert self._journal is not None
        found = self._journal.lookup(key)
        if found is None:
            return None
        state, run = found
        if run == self._run_id:
            return "duplicate"
        return "intent" if state == "intent" else "done"

    # -- scheduling --------------------------------------------------------------------------

    def _notify(self) -> None:
        self._wake.set()

    def _enter_rotation(self, user: str) -> None:
        if user not in self._in_rr and user not in self._user_blocked and self._users.get(user):
            self._rr.append(user)
            self._in_rr.add(user)

    def _park(self, key: Any, item: _Item) -> None:
        parked = self._parked.get(key)
        if parked is None:
            parked = self._parked[key] = deque()
        parked.append(item)

    def _unpark(self, key: Any, count: int = 1) -> None:
        parked = self._parked.get(key)
        if parked is None:
            return
        while parked and count:
            self._priority.append(parked.popleft())
            count -= 1
        if not parked:
            del self._parked[key]
        self._notify()

    def _cooled(self, scope: str) -> None:
        self._timers.pop(scope, None)
        # Wake only as many parked jobs as the scope can take: waking them all made every
        # cool-down cost O(buffered jobs), quadratic under sustained throttling. The rest are
        # woken one per release in the scope.
        room = self.adaptive.room(scope) if self.adaptive is not None else -1
        self._unpark(("scope", scope), count=max(1, room) if room >= 0 else -1)

    def _try_start(self, item: _Item) -> str | None:
        """Acquire every slot ``item`` needs: None on success, else "user" or "parked"."""
        adaptive = self.adaptive
        if adaptive is not None:
            wait = adaptive.blocked_for(item.scope)
            if wait is not None:
                self._park(("scope", item.scope), item)
                if wait != float("inf") and item.scope not in self._timers:
                    loop = asyncio.get_running_loop()
                    self._timers[item.scope] = loop.call_later(wait, self._cooled, item.scope)
                return "parked"
        blocker = self.limiter.try_acquire(item.keys)
        if blocker is None:
            if adaptive is not None:
                adaptive.try_acquire(item.scope)
            return None
        if blocker[0] == "user":
            return "user"
        self._park(blocker, item)
        return "parked"

    def _user_full(self, item: _Item) -> None:
        user = item.user
        queue = self._users.get(user)
        if queue is None:
            queue = self._users[user] = deque()
        queue.appendleft(item)
        self._user_blocked.add(user)

    def _pick(self) -> _Item | None:
        if self._immediate:
            return self._immediate.popleft()
        priority = self._priority
        while priority:
            item = priority.popleft()
            status = self._try_start(item)
            if status is None:
                return item
            if status == "user":
                self._user_full(item)
        rr = self._rr
        for _ in range(len(rr)):
            user = rr.popleft()
            self._in_rr.discard(user)
            queue = self._users.get(user)
            if not queue or user in self._user_blocked:
                continue
            item = queue.popleft()
            status = self._try_start(item)
            if status == "user":
                queue.appendleft(item)
                self._user_blocked.add(user)
                continue
            if not queue:
                del self._users[user]
            else:
                self._enter_rotation(user)
            if status is None:
                return item
        return None

    def _release(self, item: _Item, success: bool | None) -> None:
        self.limiter.release(item.keys)
        if self.adaptive is not None:
            self.adaptive.release(item.scope, success=success)
            self._unpark(("scope", item.scope))
        for key in item.keys:
            if key[0] == "user":
                if key[1] in self._user_blocked:
                    self._user_blocked.discard(key[1])
                    self._enter_rotation(key[1])
            else:
                self._unpark(key)
        self._unpark(GLOBAL_KEY)
        self._notify()

    # -- workers -----------------------------------------------------------------------------

    async def _work(self) -> None:
        try:
            while True:
                item = None if self._stopping else self._pick()
                if item is None:
                    if self._stopping or (
                        self._source_done and self._buffered == 0 and self._in_flight == 0
                    ):
                        return
                    if self._in_flight == 0 and self._parked and not self._timers:
                        # Slots held outside this run (a shared limiter): poll for room.
                        for key in list(self._parked):
                            self._unpark(key, count=-1)
                        await asyncio.sleep(0.05)
                        continue
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                self._buffered -= 1
                self._room.set()
                self._in_flight += 1
                try:
                    if item.preset is not None:
                        await self._emit(item, None, item.preset, 0.0)
                    else:
                        await self._run(item)
                finally:
                    self._in_flight -= 1
        except Exception as exc:  # a bug in stop_when or scope: end the run, raise it after
            self._source_error = self._source_error or exc
            self._stop(f"{type(exc).__name__}: {exc}")
        finally:
            self._live_workers -= 1
            self._notify()
            if self._live_workers == 0 and not self._closed:
                self._finish_run()

    def _finish_run(self) -> None:
        self._not_dispatched += self._buffered
        self._buffered = 0
        self._all_done = True
        assert self._out is not None
        if not self._out.full():  # else the consumer sees _all_done once it has drained it
            self._out.put_nowait(_DONE)

    async def _run(self, item: _Item) -> None:
        job = item.job
        stats = CallStats()
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        journal = self._journal if item.key is not None else None
        sent = intended = False
        error: BaseException | None = None
        result: Any = None
        started = 0.0
        try:
            if self.rate is not None:
                self._permit_waiters.add(task)
                try:
                    await self.rate.acquire()
                finally:
                    self._permit_waiters.discard(task)
            if self._stopping:  # stopped while this worker got its permit
                raise asyncio.CancelledError
            if journal is not None:
                intended = True
                try:
                    await journal.intend(item.key)  # type: ignore[arg-type]
                except JournalError as exc:
                    # Never send what the journal could not record; nothing else can be.
                    self._release(item, None)
                    self._claimed.discard(item.key)
                    self._stop(f"the journal failed: {exc}")
                    await self._emit(item, None, exc, 0.0, journaled=False)
                    return
                if self._stopping:  # stopped while the intent was committing: not sent
                    raise asyncio.CancelledError
            started = loop.time()
            sent = True
            self._sending.add(task)
            try:
                result = await self._execute_one(job, stats)
            except Exception as exc:
                error = exc
            finally:
                self._sending.discard(task)
        except asyncio.CancelledError:
            self._release(item, None)
            if not sent:
                self._not_dispatched += 1
                if item.key is not None:
                    self._claimed.discard(item.key)
                    if intended and journal is not None:
                        with contextlib.suppress(JournalError):
                            journal.forget(item.key)  # queued after the intent: ordered
                raise
            item.attempts += max(1, stats.attempts)
            why = "given up at stop" if self._giving_up and not self._closed else "cancelled"
            unknown = OutcomeUnknownError(f"{why} while in flight; the action may have run")
            self._tally(item, unknown)
            outcome = JobOutcome(
                job=job, ok=False, result=None, error=unknown, attempts=item.attempts,
                elapsed=loop.time() - started, index=item.index,
            )  # fmt: skip
            entry = (item.index, outcome, item.key, "outcome_unknown")
            if self._closed:  # nobody will take it: journal it now, never re-sent
                with contextlib.suppress(JournalError):
                    self._journal_outcome(item.key, "outcome_unknown")
            else:
                self._late.append(entry)  # type: ignore[arg-type]
            raise
        item.attempts += max(1, stats.attempts)
        item.throttled += stats.throttled
        if isinstance(error, RateLimitError) and self.adaptive is not None:
            self.adaptive.on_throttle(item.scope, error.retry_after)
            if item.requeues < self._s.max_requeues and not self._stopping:
                item.requeues += 1
                self._release(item, False)
                if journal is not None:
                    journal.forget(item.key)  # type: ignore[arg-type]  # 429: not handled
                self._buffered += 1
                self._priority.append(item)  # parks on the scope until its cool-down ends
                return
        self._release(item, error is None)
        if isinstance(error, InvalidRequestError):  # refused before sending: say which job
            error = _at_index(error, item.index)
        await self._emit(item, result, error, loop.time() - started)

    async def _emit(
        self,
        item: _Item,
        result: Any,
        error: BaseException | None,
        elapsed: float,
        *,
        journaled: bool = True,
    ) -> None:
        self._tally(item, error)
        outcome = JobOutcome(
            job=item.job, ok=error is None, result=result, error=error, attempts=item.attempts,
            elapsed=elapsed, index=item.index,
        )  # fmt: skip
        key = item.key if journaled else None
        if self._s.stop_when is not None and not self._stopping and self._s.stop_when(self.report):
            self._stop(f"stop_when returned True after {sum(self._counts.values())} outcomes")
        assert self._out is not None
        await self._out.put((item.index, outcome, key, _journal_state(error)))


def _at_index(error: InvalidRequestError, index: int) -> InvalidRequestError:
    if str(error).startswith("job at index "):
        return error
    located = InvalidRequestError(f"job at index {index}: {error}", field=error.field)
    located.__cause__ = error
    return located


def _connector_scope(job: ExecuteJob) -> str:
    return f"execute:{job.connector_id}"  # the scope the pipeline reports for execute calls


def execute_many(
    execute_one: ExecuteOne,
    jobs: Jobs,
    *,
    concurrency: int = 32,
    per_user: int | None = None,
    per_connector: int | None = None,
    rate: float | RateLimiter | None = None,
    ordered: bool = False,
    deadline: float | None = None,
    stop_when: Callable[[BulkReport], bool] | None = None,
    checkpoint: str | os.PathLike[str] | Journal | None = None,
    adaptive: AdaptiveLimiter | bool = True,
    scope: Callable[[ExecuteJob], str] | None = None,
    lookahead: int | None = None,
    max_requeues: int = 3,
    default_user: str | None = None,
    on_skip: Callable[[ExecuteJob, str], None] | None = None,
) -> BulkRun:
    """Run ``execute_one`` over ``jobs`` with bounded, fair concurrency; see :class:`BulkRun`.

    Args:
        execute_one: runs one job (``actions.execute`` wired to the pipeline).
        jobs: an iterable or async iterable of :class:`ExecuteJob` or mappings (camelCase or
            snake_case keys), read lazily.
        concurrency: worker tasks, and so the global cap on calls in flight.
        per_user / per_connector: caps on calls in flight per user id / connector id.
        rate: calls per second (a float, or a shared :class:`RateLimiter`).
        ordered: yield outcomes in input order (a reorder window of ``lookahead`` jobs).
        deadline: seconds for the run; then nothing more is dispatched (in-flight calls end
            under their own deadline) and the report says so.
        stop_when: called with the report after each outcome; True stops dispatch.
        checkpoint: the write-ahead journal: a path (a :class:`SqliteJournal`) or any
            :class:`Journal`; see the module docs. Locked for the run: a second run on the
            same journal raises :class:`~alloy_async.errors.JournalLockedError`.
        adaptive: True for an :class:`AdaptiveLimiter` of ``concurrency`` per scope, or your
            own (wire its ``on_throttle`` into the pipeline's throttle listener), or False.
        scope: the adaptive scope of a job; default ``"execute:<connector_id>"``, the scope
            ``actions.execute`` reports to the throttle listener.
        lookahead: jobs read ahead of dispatch (the reach of fairness; bounds memory).
        max_requeues: times a job that ended with a 429 is re-queued after the cool-down.
        default_user: the user of jobs without ``user_id`` (the client's ``x-alloy-userid``):
            their fairness and ``per_user`` key.
        on_skip: called with ``(job, reason)`` for each job not run because the journal has
            its key: ``"duplicate"`` (earlier in this run) or ``"done"`` (an earlier run).
    """
    settings = _Settings(
        concurrency, per_user, per_connector, rate, ordered, deadline, stop_when, checkpoint,
        adaptive, scope, lookahead, max_requeues, default_user, on_skip,
    )  # fmt: skip
    return BulkRun(execute_one, jobs, settings)
