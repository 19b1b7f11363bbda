"""``alloy-async bulk --redis``: the driver of a run on worker processes (``alloy-async worker``).

It reads the jobs as they come (``bulk``'s reader), sends them in chunks of :data:`CHUNK_JOBS`
through the queue on Redis with at most :data:`WINDOW` chunks outstanding (back-pressure),
reads the chunks' rows back and writes one line per job to ``--out``. The namespace's journal
on Redis is the checkpoint: no job is ever sent twice; a rerun skips the keys ``--out`` has
and gets the stored row of every other finished job. Memory: the outstanding chunks, and one
entry per key seen (to skip those in ``--out`` and refuse duplicates), about 100 bytes a job.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import attrs
import click
from rich.progress import Progress, TaskID, TextColumn, TimeElapsedColumn

from ..engine.rows import dumps_line
from ..models import ExecuteJob
from ..models._fields import CAMEL, OPTIONAL
from ._bulk_input import BadLine, JobReader
from ._bulk_options import (
    BulkOptions,
    BulkUsageError,
    RedisOptions,
    check_numbers,
    check_redis,
    check_redis_reachable,
    run_on_files,
)
from ._bulk_output import Tally, keys_in_out, say_quarantined
from ._common import err_console, say
from ._signals import Signals

if TYPE_CHECKING:
    from ..distributed.taskiq import ChunkBroker, ChunkResult

__all__ = ["CHUNK_JOBS", "WINDOW", "run_redis_bulk"]

T = TypeVar("T")

#: Jobs per chunk: small, so a chunk runs for seconds, not minutes, and a crashed worker's
#: chunks cost little to hand over; large enough that queue overhead is a small share.
CHUNK_JOBS = 50
#: Chunks outstanding at once (sent, rows not yet written): enough for 16 workers running two
#: chunks each, few enough that the driver's memory is flat.
WINDOW = 32
#: Seconds a partial chunk waits for more input (a pipe that writes slowly) before it is sent.
FLUSH_AFTER = 0.2
#: Result polling interval bounds (seconds): fast while rows arrive, backing off when idle.
POLL_MIN, POLL_MAX = 0.02, 0.25
#: Seconds without any row before the driver looks at the queue (lost chunks, no workers).
STALL = 15.0
#: A chunk lost this many times (acked without a result, or Redis lost the queue) is failed.
MAX_RESENDS = 3


def run_redis_bulk(opts: BulkOptions, where: RedisOptions) -> int:
    """Check everything, drive the run, return the exit code (usage errors: exit 2)."""
    check_numbers(opts)
    check_redis(opts, where)
    try:
        from ..distributed import taskiq as _distributed  # noqa: F401
    except ImportError as exc:
        raise BulkUsageError(
            f"--redis needs the taskiq extra: pip install 'alloy-async[taskiq]' ({exc})"
        ) from None
    done, torn = keys_in_out(opts.out_path)
    return run_on_files(
        opts, lambda fd, close_fd, out: _Driver(opts, where, out, done, torn).main(fd, close_fd)
    )


def _job_mapping(job: ExecuteJob, line: int) -> dict[str, Any]:
    """The job as the task message carries it, with its key made explicit and its line."""
    mapping: dict[str, Any] = {
        "connectorId": job.connector_id,
        "actionId": job.action_id,
        "credentialId": job.credential_id,
        "key": job.effective_key,
        "_line": line,
    }
    values = {CAMEL[name]: getattr(job, name) for name in OPTIONAL}
    return mapping | {name: value for name, value in values.items() if value is not None}


@attrs.define
class _Chunk:
    jobs: list[dict[str, Any]]  # kept to send again if the queue loses the chunk
    resends: int = 0
    entry: bytes | str | None = None  # its stream entry (an ack deletes it)


class _Bar:
    """The lines written so far, on a terminal (like ``bulk``: else only the summary)."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    @contextlib.contextmanager
    def shown(self) -> Iterator[None]:
        """Show it while the block runs."""
        if not err_console.is_terminal:
            yield
            return
        self._progress = Progress(
            TextColumn("[bold]bulk --redis"),
            TextColumn("{task.completed} written"),
            TimeElapsedColumn(),
            console=err_console,
        )
        with self._progress:
            self._task = self._progress.add_task("jobs", total=None)
            yield

    def advance(self, lines: int) -> None:
        """``lines`` more were written."""
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, lines)


class _Driver:
    def __init__(
        self, opts: BulkOptions, where: RedisOptions, out: TextIO, done: set[str], torn: bool
    ) -> None:
        self.opts = opts
        self.where = where
        self.out = out
        self.done = done  # keys --out has a line for: skipped
        self.sent_keys: set[str] = set()  # keys sent by this run: a second one is a duplicate
        self.torn = torn
        self.tally = Tally()
        self.outstanding: dict[str, _Chunk] = {}
        self.window = asyncio.Semaphore(WINDOW)
        self.wake = asyncio.Event()  # cuts the collector's nap short: a chunk sent, a signal
        self.fed = False  # the input is exhausted (or sending stopped)
        self.signals = Signals(self._stop, self._give_up)
        self.last_row = time.monotonic()
        self.last_look = 0.0
        self.bar = _Bar()
        self.broker: ChunkBroker  # made in the loop, by main()

    # -- the run ---------------------------------------------------------------------------

    async def main(self, fd: int, close_fd: bool) -> int:
        from ..distributed.coordinator import RedisCoordinator
        from ..distributed.taskiq import make_broker

        self.signals.install()
        reader: JobReader | None = None
        try:
            reader = JobReader(fd, asyncio.get_running_loop(), close_fd=close_fd)
            await check_redis_reachable(self.where.url)
            self.broker = make_broker(self.where.url, queue=self.where.queue)
            # A live run of the namespace for the whole run: the quarantine the workers share
            # holds between their chunks, and goes once the run is over (a rerun sends).
            async with (
                RedisCoordinator(self.where.url, namespace=self.where.namespace) as holder,
                holder.session(),
            ):
                await self.broker.startup()  # before sending: the group is created at "$"
                feeder = asyncio.create_task(self._feed(reader.items()))
                try:
                    with self.bar.shown():
                        await self._collect(feeder)
                finally:
                    feeder.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await feeder
                    await self.broker.shutdown()
        finally:
            if reader is not None:
                reader.close()
            elif close_fd:
                os.close(fd)
            self.signals.remove()
        return self._report()

    async def _redis(self, what: str, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``fn(broker, *args)``, retried while Redis is unreachable (a restart is a pause);
        past the worker's own limit a CoordinatorError (exit 1)."""
        from ..distributed.taskiq import OP_TIMEOUT, UNAVAILABLE, through_outage

        said = False

        def retrying() -> None:
            nonlocal said
            if not said:
                say(f"Redis unreachable while {what}; retrying for {UNAVAILABLE:g} s", "yellow")
                said = True

        return await through_outage(
            what,
            fn,
            self.broker,
            *args,
            url=self.where.url,
            max_time=UNAVAILABLE,
            op_timeout=OP_TIMEOUT,  # a host that vanished mid-command must not hang the run
            on_retry=retrying,
        )

    @property
    def signum(self) -> int | None:
        """The first SIGINT / SIGTERM received: sending stopped."""
        received = self.signals.received
        return None if received is None else int(received)

    def _stop(self, sig: signal.Signals) -> None:
        self.fed = True
        self.wake.set()
        say(
            f"{sig.name} received: sending stopped; the chunks outstanding get "
            f"{self.opts.grace:g} s to finish (send {sig.name} again to stop waiting)",
            "yellow",
        )

    def _give_up(self, sig: signal.Signals) -> None:
        say(f"{sig.name} received again: not waiting for the chunks outstanding", "yellow")
        self.wake.set()

    # -- sending ---------------------------------------------------------------------------

    async def _feed(self, items: AsyncIterator[BadLine | tuple[int, ExecuteJob]]) -> None:
        chunk: list[dict[str, Any]] = []
        pending: asyncio.Task[Any] | None = None
        try:
            while self.signum is None:
                if pending is None:
                    pending = asyncio.ensure_future(anext(items))
                if chunk:  # a partial chunk goes out if the input pauses
                    done, _ = await asyncio.wait({pending}, timeout=FLUSH_AFTER)
                    if not done:
                        await self._send(chunk)
                        chunk = []
                        continue
                try:
                    item = await pending
                except StopAsyncIteration:
                    break
                finally:
                    if pending.done():
                        pending = None
                job = self._admit(item)
                if job is not None:
                    chunk.append(job)
                    if len(chunk) >= CHUNK_JOBS:
                        await self._send(chunk)
                        chunk = []
            if chunk and self.signum is None:
                await self._send(chunk)
        finally:
            if pending is not None:
                pending.cancel()
            self.fed = True
            self.wake.set()

    def _admit(self, item: BadLine | tuple[int, ExecuteJob]) -> dict[str, Any] | None:
        if isinstance(item, BadLine):
            self.tally.bad_line(item)
            return None
        number, job = item
        key = job.effective_key
        if key in self.sent_keys:
            self.tally.duplicate(f"line {number}", key)
            return None
        if key in self.done:
            self.tally.already += 1
            return None
        self.sent_keys.add(key)
        return _job_mapping(job, number)

    async def _send(self, jobs: list[dict[str, Any]]) -> None:
        await self.window.acquire()
        if self.signum is not None:
            self.window.release()
            return
        await self._kiq(_Chunk(jobs))

    async def _kiq(self, chunk: _Chunk) -> None:
        from ..distributed.taskiq import TASK_NAME, SendTaskError

        limits = {
            "rate": self.opts.rate,
            "burst": self.opts.burst,
            "per_user": self.opts.per_user,
            "per_connector": self.opts.per_connector,
            "concurrency": self.where.per_worker,
        }
        task_handle = self.broker.find_task(TASK_NAME)
        assert task_handle is not None  # make_broker registers it
        # One task id for every attempt: a send retried after a lost reply may queue the chunk
        # twice, and both copies answer under that id (the journal runs each job once).
        kicker = task_handle.kicker().with_task_id(uuid.uuid4().hex)

        async def send(_: Any) -> Any:
            try:
                return await kicker.kiq(self.where.namespace, chunk.jobs, limits)
            except SendTaskError as exc:  # taskiq wraps Redis's own error: retry on that one
                raise (exc.__cause__ or exc) from None

        task = await self._redis("sending", send)
        chunk.entry = self.broker.entries.pop(task.task_id, None)
        self.outstanding[task.task_id] = chunk
        self.wake.set()

    # -- collecting ------------------------------------------------------------------------

    async def _collect(self, feeder: asyncio.Task[None]) -> None:
        """Write the rows of finished chunks until every chunk sent is done (or, after a
        signal, the grace period is over)."""
        poll = POLL_MIN
        deadline: float | None = None
        while True:
            if feeder.done():
                feeder.result()  # raises what stopped the feeder
            if self.fed and not self.outstanding:
                return
            if self.signum is not None:
                if deadline is None:
                    deadline = time.monotonic() + self.opts.grace
                if self.signals.gave_up or time.monotonic() >= deadline:
                    return
            if not self.outstanding:  # nothing to wait for until the feeder sends
                await self._nap(POLL_MAX)
                continue
            if await self._take():
                self.out.flush()
                self.last_row = time.monotonic()
                poll = POLL_MIN
            else:
                poll = min(POLL_MAX, poll * 1.5)
                await self._look_if_stalled()
            await self._nap(poll)

    async def _take(self) -> int:
        """Write the rows of the chunks whose results are ready; how many chunks were."""
        from ..distributed.taskiq import forget_results, take_results

        taken = await self._redis("reading results", take_results, list(self.outstanding))
        again: list[_Chunk] = []
        for task_id, result in taken.items():
            chunk = self.outstanding.pop(task_id)
            failed = result.rows is None or len(result.rows) != len(chunk.jobs)
            if failed and chunk.resends < MAX_RESENDS and self.signum is None:
                # Safe to run again: the journal answers for every job of it that ran.
                chunk.resends += 1
                say(f"a chunk failed in the worker ({result.error}); sending it again", "yellow")
                again.append(chunk)  # keeps its place in the window
                continue
            self._write(chunk, result)
            self.window.release()
        if taken:
            await self._redis("deleting results", forget_results, list(taken))
        for chunk in again:
            await self._kiq(chunk)
        return len(taken)

    async def _nap(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.wake.wait()
        self.wake.clear()

    def _write(self, chunk: _Chunk, result: ChunkResult) -> None:
        rows = result.rows
        if rows is None or len(rows) != len(chunk.jobs):
            why = result.error or f"{len(rows or [])} rows for {len(chunk.jobs)} jobs"
            self._fail(chunk, why)
            return
        text = "".join(dumps_line(row) + "\n" for row in rows)
        if self.torn:
            text, self.torn = "\n" + text, False
        try:
            self.out.write(text)
        except OSError as exc:
            raise click.ClickException(
                f"writing the outcomes to --out failed: {exc.strerror or exc}; stopped "
                "(rerun with the same --namespace: nothing is sent twice)"
            ) from None
        for row in rows:
            error = row.get("error")
            if row.get("ok") is True:
                self.tally.ok += 1
            elif isinstance(error, dict) and error.get("type") == "OutcomeUnknownError":
                self.tally.unknown += 1
            else:
                self.tally.failed += 1
                if isinstance(error, dict) and error.get("type") == "CredentialQuarantinedError":
                    self.tally.quarantined += 1
                    self.tally.quarantined_credentials[str(error.get("credentialId"))] = None
        self.bar.advance(len(rows))

    def _fail(self, chunk: _Chunk, why: str) -> None:
        self.tally.lost_jobs += len(chunk.jobs)
        first, last = chunk.jobs[0]["_line"], chunk.jobs[-1]["_line"]
        say(
            f"lines {first}-{last}: a chunk of {len(chunk.jobs)} job(s) failed in the worker "
            f"({why}); no line written for them (a rerun with the same --namespace runs "
            "those not sent, and never sends one twice)",
            "red",
        )

    async def _look_if_stalled(self) -> None:
        """No row for a while: chunks the queue lost are sent again; else say we wait."""
        from ..distributed.taskiq import entries_gone, queue_state

        now = time.monotonic()
        if now - self.last_row < STALL or now - self.last_look < STALL:
            return
        self.last_look = now
        before = set(self.outstanding)  # a chunk sent after the look is not judged by it
        state = await self._redis("looking at the queue", queue_state)
        if state == "busy":  # maybe other runs' chunks: look for ours one by one
            mine = [(t, c.entry) for t, c in self.outstanding.items() if c.entry is not None]
            gone = await self._redis("looking at the queue", entries_gone, [e for _, e in mine])
            before &= {t for (t, _), g in zip(mine, gone, strict=True) if g}
        if state == "busy" and not before:
            say(
                f"waiting: {len(self.outstanding)} chunk(s) queued or running, no row for "
                f"{now - self.last_row:.0f} s (are workers running on queue "
                f"{self.where.queue!r}?)",
                "yellow",
            )
            return
        if state == "gone":  # Redis restarted without its data, or the stream was deleted
            await self.broker.startup()
        # Nothing queued and nothing running (or these chunks' entries acked): results taken
        # now were stored before their ack; a chunk still without one was lost, and is sent
        # again (the journal answers for whatever of it already ran).
        await self._take()
        lost = [(task_id, c) for task_id, c in self.outstanding.items() if task_id in before]
        if lost:
            say(f"{len(lost)} chunk(s) lost by the queue ({state}): sending them again", "yellow")
        for task_id, chunk in lost:
            del self.outstanding[task_id]
            chunk.resends += 1
            if chunk.resends > MAX_RESENDS:
                self._fail(chunk, f"lost by the queue {MAX_RESENDS} times")
                self.window.release()
            else:
                await self._kiq(chunk)
        self.last_row = time.monotonic()

    # -- output ----------------------------------------------------------------------------

    def _report(self) -> int:
        t = self.tally
        say(
            f"{t.written} jobs written: {t.ok} succeeded, {t.failed} failed, "
            f"{t.unknown} outcome unknown; {t.already} already in --out, "
            f"{t.duplicates} duplicates, {t.bad} bad lines"
            + (f"; {t.lost_jobs} in failed chunks (no line)" if t.lost_jobs else "")
        )
        if t.quarantined:
            say_quarantined(
                t.quarantined, t.quarantined_credentials, " with the same --namespace and --out"
            )
        if self.signals.received is not None:
            left = sum(len(c.jobs) for c in self.outstanding.values())
            name = self.signals.received.name
            say(
                f"stopped by {name}"
                + (f"; {left} job(s) sent but not written" if left else "")
                + ": rerun with the same --namespace and --out to finish (nothing is sent "
                "twice)"
            )
            return self.signals.exit_code
        if t.failed or t.unknown or t.bad or t.duplicates or t.lost_jobs:
            return 1
        return 0
