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

Side effects: a job is executed at most once per run. A job that ends with
:class:`~alloy_async.errors.OutcomeUnknownError` (or is cancelled while in flight) is reported,
never re-sent. A job that ends with a 429 (:class:`~alloy_async.errors.RateLimitError`, which means
"not handled") is fed to the adaptive limiter and re-queued behind its scope's cool-down, up to
``max_requeues`` times.

Checkpoint journal (``checkpoint=path``): one JSON line ``{"key", "outcome"}`` per finished job,
appended, flushed and fsync'ed per batch of ``checkpoint_batch`` and when the run ends or is
closed. Journaled (so skipped by a rerun): successes, definitive failures (4xx, 500/502/504, a
bad job, an exception from ``execute_one``) and outcome-unknown jobs — including jobs cancelled
while in flight — so nothing that may have reached the server is re-sent automatically. Not
journaled (a rerun tries them again): jobs never dispatched, and failures that prove the server
did not act (429, 503, a connection never made). A torn last line (crash mid-write) is ignored on
reload. After a hard crash (SIGKILL) the last unflushed batch may run again; every clean stop
(break, cancel, ``aclose``, an exception) flushes first.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

import attrs
import orjson

from ._core import CallStats
from .errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    OutcomeUnknownError,
    RateLimitError,
)
from .limits import GLOBAL_KEY, AdaptiveLimiter, ConcurrencyLimiter, RateLimiter
from .models.bulk import BulkReport, ExecuteJob, JobOutcome

__all__ = ["BulkRun", "ExecuteOne", "execute_many"]

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
    checkpoint: str | os.PathLike[str] | None
    adaptive: AdaptiveLimiter | bool
    scope: Callable[[ExecuteJob], str] | None
    lookahead: int | None
    max_requeues: int
    checkpoint_batch: int


class _Item:
    """One job on its way through the scheduler."""

    __slots__ = ("attempts", "index", "job", "key", "keys", "requeues", "scope", "throttled")

    def __init__(self, index: int, job: ExecuteJob, key: str | None, keys: Any, scope: str):
        self.index = index
        self.job = job
        self.key = key
        self.keys = keys
        self.scope = scope
        self.attempts = 0
        self.requeues = 0
        self.throttled = 0.0


def _kind(error: BaseException | None) -> str:
    if error is None:
        return "succeeded"
    if isinstance(error, OutcomeUnknownError):
        return "outcome_unknown"
    return "failed"


def _journaled(error: BaseException | None) -> bool:
    """Whether a finished job goes into the checkpoint (see the module docstring)."""
    if isinstance(error, OutcomeUnknownError):
        return True
    if isinstance(error, APIStatusError):
        return not isinstance(error, RateLimitError) and error.status != 503
    if isinstance(error, APITimeoutError):
        return error.sent
    return not isinstance(error, APIConnectionError)


class _Journal:
    """The append-only checkpoint file."""

    def __init__(self, path: str | os.PathLike[str], batch: int) -> None:
        self.done: set[str] = set()
        self._pending: list[bytes] = []
        self._batch = batch
        tail = b"\n"
        try:
            with open(path, "rb") as f:
                for line in f:
                    tail = line[-1:]
                    try:
                        self.done.add(orjson.loads(line)["key"])
                    except (orjson.JSONDecodeError, KeyError, TypeError):
                        continue  # a torn last line from a crash mid-write
        except FileNotFoundError:
            pass
        self._file = open(path, "ab")  # noqa: SIM115 - kept open for the whole run
        if tail != b"\n":
            self._file.write(b"\n")  # keep the torn fragment on a line of its own

    def record(self, key: str, outcome: str) -> None:
        self._pending.append(orjson.dumps({"key": key, "outcome": outcome}) + b"\n")
        if len(self._pending) >= self._batch:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self._file.write(b"".join(self._pending))
            self._pending.clear()
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self.flush()
            self._file.close()


class BulkRun:
    """A running ``execute_many``: an async iterable of :class:`JobOutcome`, then ``report``.

    Iterate it once (``async for outcome in run``), preferably inside ``async with run:``.
    Breaking out of the loop, cancelling the consuming task or ``await run.aclose()`` stops
    dispatch, cancels in-flight calls and waits for every task of the run to end.
    """

    def __init__(self, execute_one: ExecuteOne, jobs: Jobs, settings: _Settings) -> None:
        concurrency = settings.concurrency
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be a positive int, got {concurrency!r}")
        if settings.deadline is not None and not settings.deadline > 0:
            raise ValueError(f"deadline must be > 0 seconds, got {settings.deadline!r}")
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
        # scheduler state (see the module docstring)
        self._users: dict[str, deque[_Item]] = {}
        self._rr: deque[str] = deque()
        self._in_rr: set[str] = set()
        self._user_blocked: set[str] = set()
        self._parked: dict[Any, deque[_Item]] = {}
        self._priority: deque[_Item] = deque()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._all_done = False
        self._buffered = 0
        self._in_flight = 0
        self._next_index = 0
        self._next_emit = 0
        self._reorder: dict[int, JobOutcome] = {}
        self._source_done = False
        self._source_error: BaseException | None = None
        self._stopping = False
        self._closed = False
        self._started = False
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._out: asyncio.Queue[Any] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._journal: _Journal | None = None
        self._live_workers = 0
        # report tally
        self._counts = {"succeeded": 0, "failed": 0, "outcome_unknown": 0}
        self._by_error: dict[str, int] = {}
        self._skipped = 0
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
            not_dispatched=self._not_dispatched + (self._buffered if self._stopping else 0),
            by_error=dict(self._by_error),
            attempts=self._attempts,
            retries=self._retries,
            throttled_seconds=self._throttled,
            wall_time=wall,
            stopped_early=self._stop_reason is not None,
            stop_reason=self._stop_reason,
        )

    def _tally(self, item: _Item, error: BaseException | None) -> None:
        kind = _kind(error)
        self._counts[kind] += 1
        if error is not None:
            name = type(error).__name__
            self._by_error[name] = self._by_error.get(name, 0) + 1
        self._attempts += item.attempts
        self._retries += max(0, item.attempts - 1)
        self._throttled += item.throttled
        if self._journal is not None and item.key is not None and _journaled(error):
            self._journal.record(item.key, kind)

    def _stop(self, reason: str) -> None:
        if not self._stopping:
            self._stopping = True
            self._stop_reason = reason
            self._notify()
            self._room.set()

    # -- lifecycle ---------------------------------------------------------------------------

    def _start(self) -> None:
        if self._started:
            return
        self._started = True
        loop = asyncio.get_running_loop()
        self._t0 = loop.time()
        self._out = asyncio.Queue(maxsize=2 * self._concurrency)
        if self._s.checkpoint is not None:
            self._journal = _Journal(self._s.checkpoint, max(1, self._s.checkpoint_batch))
        if self._s.deadline is not None:
            self._deadline_timer = loop.call_later(
                self._s.deadline, self._stop, f"deadline of {self._s.deadline:g} s reached"
            )
        self._tasks.append(loop.create_task(self._feed()))
        self._live_workers = self._concurrency
        self._tasks.extend(loop.create_task(self._work()) for _ in range(self._concurrency))

    async def aclose(self) -> None:
        """Stop dispatch, cancel in-flight calls, wait for every task, flush the checkpoint."""
        if self._closed:
            return
        self._closed = True
        if self._started and self._t_end is None:
            self._stop("closed before the input was exhausted")
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        # A consumer waiting in `async for` (another task) must learn that the run ended; the
        # workers' own end-of-run path is skipped once the run is closed.
        if self._out is not None and not self._all_done:
            self._all_done = True
            if not self._out.full():
                self._out.put_nowait(_DONE)
        self._finish()

    def _finish(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
        if self._journal is not None:
            self._journal.close()
        if self._t_end is None and self._t0 is not None:
            self._t_end = asyncio.get_running_loop().time()

    async def __aenter__(self) -> BulkRun:
        self._start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def __aiter__(self) -> AsyncIterator[JobOutcome]:
        """Yield outcomes as jobs finish (or in input order with ``ordered=True``)."""
        if self._closed:
            return
        self._start()
        try:
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

    async def _next(self) -> JobOutcome | None:
        out = self._out
        assert out is not None
        while True:
            if self._ordered and self._next_emit in self._reorder:
                outcome: JobOutcome = self._reorder.pop(self._next_emit)
                self._next_emit += 1
                self._room.set()
                return outcome
            if self._all_done and out.empty():
                got: Any = _DONE
            else:
                got = await out.get()
            if got is _DONE:
                if self._ordered and self._reorder:  # gaps: jobs stopped before dispatch
                    self._next_emit = min(self._reorder)
                    continue
                self._t_end = asyncio.get_running_loop().time()
                return None
            index: int = got[0]
            outcome = got[1]
            if not self._ordered:
                return outcome
            self._reorder[index] = outcome

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
        job = raw if isinstance(raw, ExecuteJob) else ExecuteJob.from_mapping(raw)
        key = None
        if self._journal is not None:
            key = job.effective_key
            if key in self._journal.done:
                self._skipped += 1
                return False
        user = job.user_id or ""
        keys = self.limiter.keys_for({"user": job.user_id, "connector": job.connector_id})
        item = _Item(self._next_index, job, key, keys, self._scope(job))
        self._next_index += 1
        self._buffered += 1
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
        user = item.job.user_id or ""
        queue = self._users.get(user)
        if queue is None:
            queue = self._users[user] = deque()
        queue.appendleft(item)
        self._user_blocked.add(user)

    def _pick(self) -> _Item | None:
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
        sent = False
        error: BaseException | None = None
        result: Any = None
        try:
            if self.rate is not None:
                await self.rate.acquire()
            started = loop.time()
            sent = True
            try:
                result = await self._execute_one(job, stats)
            except Exception as exc:
                error = exc
        except asyncio.CancelledError:
            self._release(item, None)
            if sent:  # may have reached the server: journal it so it is never re-sent
                item.attempts += max(1, stats.attempts)
                self._tally(item, OutcomeUnknownError("cancelled while in flight"))
            else:
                self._not_dispatched += 1
            raise
        item.attempts += max(1, stats.attempts)
        item.throttled += stats.throttled
        if isinstance(error, RateLimitError) and self.adaptive is not None:
            self.adaptive.on_throttle(item.scope, error.retry_after)
            if item.requeues < self._s.max_requeues and not self._stopping:
                item.requeues += 1
                self._release(item, False)
                self._buffered += 1
                self._priority.append(item)  # parks on the scope until its cool-down ends
                return
        self._release(item, error is None)
        self._tally(item, error)
        outcome = JobOutcome(
            job=job,
            ok=error is None,
            result=result,
            error=error,
            attempts=item.attempts,
            elapsed=loop.time() - started,
        )
        if self._s.stop_when is not None and not self._stopping and self._s.stop_when(self.report):
            self._stop(f"stop_when returned True after {sum(self._counts.values())} outcomes")
        assert self._out is not None
        await self._out.put((item.index, outcome))


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
    checkpoint: str | os.PathLike[str] | None = None,
    adaptive: AdaptiveLimiter | bool = True,
    scope: Callable[[ExecuteJob], str] | None = None,
    lookahead: int | None = None,
    max_requeues: int = 3,
    checkpoint_batch: int = 64,
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
        checkpoint: a journal file; jobs it lists as finished are skipped (see module docs).
        adaptive: True for an :class:`AdaptiveLimiter` of ``concurrency`` per scope, or your
            own (wire its ``on_throttle`` into the pipeline's throttle listener), or False.
        scope: the adaptive scope of a job; default ``"execute:<connector_id>"``, the scope
            ``actions.execute`` reports to the throttle listener.
        lookahead: jobs read ahead of dispatch (the reach of fairness; bounds memory).
        max_requeues: times a job that ended with a 429 is re-queued after the cool-down.
        checkpoint_batch: journal lines written per flush + fsync.
    """
    settings = _Settings(
        concurrency, per_user, per_connector, rate, ordered, deadline, stop_when, checkpoint,
        adaptive, scope, lookahead, max_requeues, checkpoint_batch,
    )  # fmt: skip
    return BulkRun(execute_one, jobs, settings)
