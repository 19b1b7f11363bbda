"""The ``alloy-async bulk`` command: checks, a streaming JSON Lines reader, signals, outcomes.

The click command itself (options, help text) lives in :mod:`alloy_async.cli`; it calls
:func:`run_bulk`. Everything here runs in the command's own process.

Input is read by a daemon thread (:class:`JobReader`) in chunks of raw bytes, split into lines,
decoded and parsed there, and handed to the event loop in batches through a bounded queue: the
loop never blocks on input, a job written to a pipe is executed while the pipe stays open, and
memory stays bounded whatever the size of the input (back-pressure: the thread waits while the
queue is full). One bad byte spoils only its own line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import selectors
import signal
import stat
import sys
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any, NoReturn, TextIO

import attrs
import click
import orjson
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .bulk import BulkRun
from .client import AlloyClient
from .errors import AlloyError, APIStatusError, JournalError
from .journal import SqliteJournal, State
from .models import ExecuteJob, JobOutcome

__all__ = [
    "BadLine",
    "BulkOptions",
    "BulkUsageError",
    "JobReader",
    "outcome_json",
    "parse_line",
    "run_bulk",
]

#: A line longer than this is reported as bad (and skipped) without being held in memory.
MAX_LINE_BYTES = 16 * 1024 * 1024
#: Bytes read from the input at a time; also the most one batch of lines holds.
CHUNK_BYTES = 64 * 1024
#: Batches waiting for the event loop before the reader thread waits (back-pressure).
QUEUE_BATCHES = 8

_BOM = b"\xef\xbb\xbf"

console = Console(stderr=True)

ClientFactory = Callable[..., AbstractAsyncContextManager[AlloyClient]]


def say(text: str, style: str | None = None) -> None:
    """One line on stderr: never wrapped, never read as rich markup."""
    shown = escape(text) if style is None else f"[{style}]{escape(text)}[/]"
    console.print(shown, soft_wrap=True, highlight=False)


class BulkUsageError(click.ClickException):
    """A bad option or an unusable file: one line on stderr and exit code 2, like click's own
    usage errors (but without the usage block)."""

    exit_code = 2


def _usage(message: str) -> NoReturn:
    raise BulkUsageError(message)


@attrs.frozen
class BulkOptions:
    """The bulk command's arguments, as click parsed them."""

    jobs_file: str
    out_path: str
    concurrency: int
    per_user: int | None
    per_connector: int | None
    rate: float | None
    checkpoint: str | None
    grace: float
    ordered: bool


# -- parsing one line ----------------------------------------------------------------------


@attrs.frozen
class BadLine:
    """An input line that is not a job: its number and why."""

    number: int
    message: str


def _json_type(value: object) -> str:
    names = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def parse_line(number: int, raw: bytes) -> ExecuteJob | BadLine | None:
    """Parse line ``number`` (bytes, newline included or not): a job, a bad line, or None
    for a blank line. Never raises for bad input."""
    if number == 1 and raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return BadLine(
            number, f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1})"
        )
    if not text.strip():
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return BadLine(number, f"not JSON: {exc.msg} (column {exc.colno})")
    except RecursionError:
        return BadLine(number, "not a job: the JSON is nested too deeply")
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        return BadLine(number, f"not JSON: {exc}")
    if not isinstance(value, dict):
        return BadLine(number, f"a job must be a JSON object, got {_json_type(value)}")
    try:
        job = ExecuteJob.from_mapping(value)
    except (AlloyError, ValueError, TypeError) as exc:
        return BadLine(number, str(exc))
    try:
        # Requests and the checkpoint journal are written with orjson: a job it cannot write
        # (nested deeper than 254, an integer beyond 64 bits, a lone surrogate) is refused
        # here, by line number, instead of failing later mid-run.
        orjson.dumps(value)
        _ = job.effective_key
    except (TypeError, ValueError) as exc:
        return BadLine(number, f"cannot be sent as JSON: {exc}")
    except RecursionError:
        return BadLine(number, "cannot be sent as JSON: nested too deeply")
    return job


# -- the reader thread ---------------------------------------------------------------------


Item = tuple[int, ExecuteJob] | BadLine


class JobReader:
    """Reads JSON Lines jobs from a file descriptor in a daemon thread; on the loop,
    ``async for item in reader.items()`` yields ``(line number, job)`` or :class:`BadLine`.

    ``close()`` (idempotent, from the loop) ends the thread: it wakes a thread waiting for
    room in the queue or (where the descriptor can be polled) for input. A thread blocked
    reading a descriptor that cannot be polled is left behind as a daemon, never joined.
    """

    def __init__(
        self,
        fd: int,
        loop: asyncio.AbstractEventLoop,
        *,
        close_fd: bool = False,
        queue_batches: int = QUEUE_BATCHES,
        chunk_bytes: int = CHUNK_BYTES,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> None:
        self._fd = fd
        self._loop = loop
        self._close_fd = close_fd
        self._chunk = chunk_bytes
        self._max_line = max_line_bytes
        self._queue_batches = queue_batches
        self._slots = threading.Semaphore(queue_batches)
        self._batches: deque[list[Item] | BaseException | None] = deque()
        self._ready = asyncio.Event()
        self._stopping = False
        self._closed = False
        self._selector: selectors.BaseSelector | None = None
        self._wake_r = self._wake_w = -1
        self._regular = stat.S_ISREG(os.fstat(fd).st_mode)
        if not self._regular:  # a pipe, a terminal, a socket: poll it
            self._selector = self._make_selector()
        self._thread = threading.Thread(
            target=self._main, name="alloy-async-bulk-reader", daemon=True
        )
        self._thread.start()

    def _make_selector(self) -> selectors.BaseSelector | None:
        try:
            sel = selectors.DefaultSelector()
        except (OSError, ValueError):  # pragma: no cover - no selector on this platform
            return None
        try:
            self._wake_r, self._wake_w = os.pipe()
            sel.register(self._wake_r, selectors.EVENT_READ)
            sel.register(self._fd, selectors.EVENT_READ)
        except (OSError, ValueError):  # e.g. /dev/null under epoll, a file on Windows
            sel.close()
            self._close_wake_pipe()
            return None
        return sel

    def _close_wake_pipe(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1

    # -- loop side -------------------------------------------------------------------------

    async def items(self) -> AsyncIterator[Item]:
        """Every job and bad line, in input order; raises OSError if reading failed."""
        while True:
            while not self._batches:
                self._ready.clear()
                await self._ready.wait()
            got = self._batches.popleft()
            self._slots.release()
            if got is None:
                return
            if isinstance(got, BaseException):
                raise got
            for item in got:
                yield item

    def _arrive(self, got: list[Item] | BaseException | None) -> None:
        self._batches.append(got)
        self._ready.set()

    def close(self, timeout: float = 5.0) -> None:
        """Stop reading and end the thread (waits up to ``timeout`` for it)."""
        if self._closed:
            return
        self._closed = True
        self._stopping = True
        if self._wake_w >= 0:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
        self._slots.release(self._queue_batches + 1)  # a thread waiting for room wakes up
        if self._selector is not None or self._regular:
            self._thread.join(timeout)
        if self._thread.is_alive():  # blocked on a descriptor that cannot be polled
            return  # pragma: no cover - daemon thread; its descriptors stay open
        if self._selector is not None:
            self._selector.close()
        self._close_wake_pipe()
        if self._close_fd:
            os.close(self._fd)

    @property
    def thread(self) -> threading.Thread:
        return self._thread

    # -- thread side -----------------------------------------------------------------------

    def _main(self) -> None:
        try:
            for batch in self._read_batches():
                if not self._hand_over(batch):
                    return
        except Exception as exc:
            self._hand_over(exc)
            return
        self._hand_over(None)

    def _hand_over(self, got: list[Item] | BaseException | None) -> bool:
        self._slots.acquire()
        if self._stopping:
            return False
        try:
            self._loop.call_soon_threadsafe(self._arrive, got)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            return False
        return True

    def _read_chunk(self) -> bytes | None:
        """The next bytes; b"" at the end of the input; None when closed."""
        while not self._stopping:
            if self._selector is not None:
                events = self._selector.select()
                if self._stopping or any(key.fd == self._wake_r for key, _ in events):
                    return None
            try:
                return os.read(self._fd, self._chunk)
            except BlockingIOError:  # a non-blocking descriptor with nothing to read yet
                if self._selector is None:
                    raise
        return None

    def _read_batches(self) -> Iterator[list[Item]]:
        number = 0
        tail: list[bytes] = []  # the start of a line not yet ended
        tail_len = 0
        too_long = False
        while True:
            chunk = self._read_chunk()
            if chunk is None:
                return
            if not chunk:
                break
            parts = chunk.split(b"\n")
            rest = parts.pop()  # after the last newline: the start of the next line
            batch: list[Item] = []
            for part in parts:
                number += 1
                line = part
                if tail:
                    line = b"".join([*tail, part])
                    tail.clear()
                if too_long or len(line) > self._max_line:
                    too_long = False
                    batch.append(BadLine(number, self._too_long()))
                else:
                    self._add(batch, number, line)
                tail_len = 0
            if rest and not too_long:
                tail.append(rest)
                tail_len += len(rest)
                if tail_len > self._max_line:  # stop holding it; skip to its end
                    too_long = True
                    tail.clear()
                    tail_len = 0
            if batch:
                yield batch
        if tail or too_long:  # a last line without a newline
            batch = []
            number += 1
            if too_long:
                batch.append(BadLine(number, self._too_long()))
            else:
                self._add(batch, number, b"".join(tail))
            if batch:
                yield batch

    def _too_long(self) -> str:
        return f"longer than {self._max_line} bytes"

    @staticmethod
    def _add(batch: list[Item], number: int, line: bytes) -> None:
        parsed = parse_line(number, line)
        if isinstance(parsed, ExecuteJob):
            batch.append((number, parsed))
        elif parsed is not None:
            batch.append(parsed)


# -- checks before anything runs -----------------------------------------------------------


def _check_numbers(o: BulkOptions) -> None:
    if o.concurrency < 1:
        _usage(f"--concurrency must be at least 1, got {o.concurrency}")
    for name, value in (("--per-user", o.per_user), ("--per-connector", o.per_connector)):
        if value is not None and value < 1:
            _usage(f"{name} must be at least 1, got {value}")
    if o.rate is not None and not (o.rate > 0 and math.isfinite(o.rate)):
        _usage(f"--rate must be a number of requests per second above 0, got {o.rate:g}")
    if not (o.grace >= 0 and math.isfinite(o.grace)):
        _usage(f"--grace must be a number of seconds, 0 or more, got {o.grace:g}")


def _open_input(path: str) -> tuple[int, bool]:
    """The jobs' file descriptor and whether it is ours to close."""
    if path == "-":
        try:
            fd = sys.stdin.fileno()
            os.fstat(fd)
        except (AttributeError, ValueError, OSError):
            _usage("cannot read the jobs from stdin: it is closed")
        return fd, False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        _usage(f"cannot read the jobs file {path!r}: {exc.strerror or exc}")
    if stat.S_ISDIR(os.fstat(fd).st_mode):
        os.close(fd)
        _usage(f"cannot read the jobs file {path!r}: it is a directory")
    return fd, True


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist yet
        return os.path.realpath(a) == os.path.realpath(b)


def _check_checkpoint(path: str, o: BulkOptions) -> None:
    if os.path.isdir(path):
        _usage(f"--checkpoint {path!r} is a directory; give a file path")
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        _usage(f"--checkpoint {path!r}: the folder {folder!r} does not exist")
    target, mode = (path, os.R_OK | os.W_OK) if os.path.exists(path) else (folder, os.W_OK)
    if not os.access(target, mode):
        _usage(f"--checkpoint {path!r} is not writable")
    for name, other in (("the jobs file", o.jobs_file), ("--out", o.out_path)):
        if other != "-" and _same_file(path, other):
            _usage(f"--checkpoint {path!r} is the same file as {name}")


def _open_out(path: str, jobs_file: str) -> TextIO:
    if path == "-":
        return sys.stdout
    if os.path.isdir(path):
        _usage(f"cannot write --out {path!r}: it is a directory")
    if jobs_file != "-" and _same_file(path, jobs_file):
        _usage(f"--out {path!r} is the jobs file: the outcomes would be read as jobs")
    try:
        return open(path, "a", encoding="utf-8")
    except OSError as exc:
        _usage(f"cannot write --out {path!r}: {exc.strerror or exc}")


# -- signals -------------------------------------------------------------------------------


class _Stopper:
    """SIGTERM / SIGINT handlers on the loop while the run is active.

    First signal: ``run.stop(grace=...)``: nothing new is dispatched, calls in flight get
    ``grace`` seconds. Second signal: ``grace=0``: they are given up now (OutcomeUnknownError).
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, loop: asyncio.AbstractEventLoop, grace: float) -> None:
        self._loop = loop
        self._grace = grace
        self._installed: list[signal.Signals] = []
        self.signum: int | None = None
        self.run: BulkRun | None = None
        self.finished = False

    def stopped_by(self) -> int | None:
        """The first SIGINT / SIGTERM received before the run ended, if any."""
        return self.signum

    def install(self) -> None:
        for sig in self.SIGNALS:
            try:
                self._loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError, ValueError):  # pragma: no cover
                continue  # Windows, or not the main thread: Ctrl-C cancels instead
            self._installed.append(sig)

    def remove(self) -> None:
        for sig in self._installed:
            with contextlib.suppress(RuntimeError, ValueError):
                self._loop.remove_signal_handler(sig)
        self._installed.clear()

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.finished:
            return  # the run is over; we are about to exit anyway
        name = sig.name
        if self.signum is None:
            self.signum = int(sig)
            if self.run is None:
                say(f"{name} received before the run started: nothing was executed", "yellow")
                return
            if self._grace > 0:
                say(
                    f"{name} received: dispatch stopped; jobs in flight get {self._grace:g} s "
                    f"to finish (send {name} again to give up on them now)",
                    "yellow",
                )
            else:
                say(f"{name} received: dispatch stopped; giving up on jobs in flight", "yellow")
            self.run.stop(f"{name} received", grace=self._grace)
        elif self.run is not None:
            say(
                f"{name} received again: giving up on jobs in flight now "
                "(each is reported as OutcomeUnknownError and never re-sent)",
                "yellow",
            )
            self.run.stop(f"{name} received", grace=0)


# -- the run -------------------------------------------------------------------------------


@attrs.define
class _Tally:
    bad: int = 0
    duplicates: int = 0


def run_bulk(opts: BulkOptions, client: ClientFactory) -> int:
    """Check everything, run, return the exit code (raises :class:`BulkUsageError`)."""
    _check_numbers(opts)
    fd, close_fd = _open_input(opts.jobs_file)
    try:
        if opts.checkpoint is not None:
            _check_checkpoint(opts.checkpoint, opts)
        out = _open_out(opts.out_path, opts.jobs_file)
    except BaseException:
        if close_fd:
            os.close(fd)
        raise
    try:
        return asyncio.run(_bulk(opts, fd, close_fd, out, client))
    except AlloyError as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
    finally:
        if out is not sys.stdout:
            out.close()


async def _bulk(
    opts: BulkOptions, fd: int, close_fd: bool, out: TextIO, client: ClientFactory
) -> int:
    loop = asyncio.get_running_loop()
    stopper = _Stopper(loop, opts.grace)
    stopper.install()
    try:
        reader = JobReader(fd, loop, close_fd=close_fd)
    except BaseException:
        if close_fd:
            os.close(fd)
        stopper.remove()
        raise
    try:
        return await _execute(opts, reader, out, client, stopper)
    finally:
        reader.close()
        stopper.remove()


async def _execute(
    opts: BulkOptions, reader: JobReader, out: TextIO, client: ClientFactory, stopper: _Stopper
) -> int:
    tally = _Tally()
    # id(job) -> (line number, job): the job is held so its id cannot be reused while listed;
    # an entry leaves when the job's outcome or skip arrives, so the map stays small.
    lines_of: dict[int, tuple[int, ExecuteJob]] = {}

    async def jobs() -> AsyncIterator[ExecuteJob]:
        async for item in reader.items():
            if isinstance(item, BadLine):
                tally.bad += 1
                say(f"line {item.number}: {item.message}", "red")
                continue
            number, job = item
            lines_of[id(job)] = (number, job)
            yield job

    def on_skip(job: ExecuteJob, reason: str) -> None:
        entry = lines_of.pop(id(job), None)
        if reason == "duplicate":
            tally.duplicates += 1
            where = f"line {entry[0]}" if entry is not None else "a line"
            say(
                f"{where}: duplicate of an earlier job with key {job.effective_key}, skipped",
                "red",
            )

    async with client(max_connections=opts.concurrency) as alloy:
        early = stopper.stopped_by()
        if early is not None:  # stopped while connecting: nothing was sent
            return 128 + early
        run = alloy.actions.execute_many(
            jobs(),
            concurrency=opts.concurrency,
            per_user=opts.per_user,
            per_connector=opts.per_connector,
            rate=opts.rate,
            ordered=opts.ordered,
            checkpoint=opts.checkpoint,
            on_skip=on_skip,
        )
        stopper.run = run
        try:
            await _drain(run, out, lines_of, opts)
        finally:
            stopper.finished = True
        report = run.report
    say(report.summary())
    if tally.bad:
        say(f"{tally.bad} bad line(s) skipped")
    signum = stopper.stopped_by()
    if signum is not None:
        name = signal.Signals(signum).name
        if opts.checkpoint is not None:
            say(
                f"stopped by {name}: rerun with the same --checkpoint to run the jobs not "
                "dispatched (finished and outcome-unknown jobs are not sent again)"
            )
        else:
            say(f"stopped by {name}; without --checkpoint a rerun executes every job again")
        return 128 + signum
    if tally.bad or tally.duplicates or report.failed or report.outcome_unknown:
        return 1
    return 0


async def _drain(
    run: BulkRun,
    out: TextIO,
    lines_of: dict[int, tuple[int, ExecuteJob]],
    opts: BulkOptions,
) -> None:
    """Write one line per outcome, flushed before the next outcome is asked for: the engine
    journals an outcome when the next one is asked for, so its line always exists first."""
    progress = (
        Progress(
            TextColumn("[bold]bulk"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        if console.is_terminal
        else None
    )
    where = "stdout" if opts.out_path == "-" else repr(opts.out_path)
    with progress if progress is not None else contextlib.nullcontext():
        task = progress.add_task("jobs", total=None) if progress is not None else None
        opened = False
        try:
            async with run:  # opens and locks the journal before anything is sent
                opened = True
                # No await between opening and this: no job has been looked up yet.
                settled = _settle(run, opts.out_path)
                if settled:
                    say(
                        f"{len(settled)} job(s) an earlier run wrote to --out but did not "
                        "journal before it stopped: taken as done, not reported again"
                    )
                async for outcome in run:
                    entry = lines_of.pop(id(outcome.job), None)
                    row = outcome_json(outcome, entry[0] if entry is not None else None)
                    try:
                        out.write(dumps_line(row) + "\n")
                        out.flush()
                    except OSError as exc:
                        raise click.ClickException(
                            f"writing the outcomes to {where} failed: {exc.strerror or exc}; "
                            "stopped (jobs in flight were given up)"
                        ) from None
                    if progress is not None and task is not None:
                        progress.advance(task)
        except JournalError as exc:
            if opened:  # failed mid-run: the engine stopped; not a usage error
                raise
            await run.aclose()
            # In use by another run (the message names it), or a file that is not a journal.
            raise BulkUsageError(str(exc)) from None


def _settle(run: BulkRun, out_path: str) -> set[str]:
    """Journal the outcomes an earlier, killed run wrote to ``--out`` but did not journal.

    The line is written before the journal entry (so no outcome is ever lost); a process
    killed between the two leaves an intent without an outcome, which the engine would report
    a second time, as outcome-unknown. The journal lists those keys (few: the calls in flight
    and the last outcomes at the kill); the ``--out`` file settles the ones it has a line for.
    Jobs whose line says the server did not act (429, 503, no connection) are forgotten, so
    the rerun sends them, as it would had the journal caught up.
    """
    journal = run.journal
    if out_path == "-" or not isinstance(journal, SqliteJournal):
        return set()
    dangling = set(journal.dangling())
    if not dangling:
        return set()
    found: dict[str, State | None] = {}
    with contextlib.suppress(FileNotFoundError), open(out_path, "rb") as lines:
        for raw in lines:
            try:
                row = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue  # a torn last line
            key = row.get("key") if isinstance(row, dict) else None
            if isinstance(key, str) and key in dangling:
                found[key] = _settled_state(row)  # the last line of a key wins
    for key, state in found.items():
        if state is None:
            journal.forget(key)
        else:
            journal.settle(key, state)
    return set(found)


_NOT_HANDLED = frozenset({"RateLimitError", "APIConnectionError", "APITimeoutError"})


def _settled_state(row: dict[str, Any]) -> State | None:
    if row.get("ok") is True:
        return "succeeded"
    error = row.get("error")
    if not isinstance(error, dict):
        return None
    if error.get("type") == "OutcomeUnknownError":
        return "outcome_unknown"
    if error.get("type") in _NOT_HANDLED or error.get("status") == 503:
        return None
    return "failed"


def dumps_line(row: Any) -> str:
    """One JSON line; orjson, or ``json`` for what orjson refuses (integers past 64 bits in
    an answer, which the SDK decodes exactly)."""
    try:
        return orjson.dumps(row, default=str).decode()
    except TypeError:
        return json.dumps(row, default=str, ensure_ascii=False, separators=(",", ":"))


def outcome_json(outcome: JobOutcome, line: int | None) -> dict[str, Any]:
    """One JSON object per outcome: the job key, ok, the result or a typed error."""
    job = outcome.job
    row: dict[str, Any] = {
        "line": line,
        "key": job.key or job.effective_key,
        "userId": job.user_id,
        "connectorId": job.connector_id,
        "actionId": job.action_id,
        "ok": outcome.ok,
        "attempts": outcome.attempts,
        "elapsed": round(outcome.elapsed, 6),
    }
    if outcome.ok:
        result = outcome.result
        row["data"] = getattr(result, "data", result)
        row["requestId"] = getattr(result, "request_id", None)
    else:
        err = outcome.error
        row["error"] = {"type": type(err).__name__, "message": str(err)}
        if isinstance(err, APIStatusError):
            row["error"].update(status=err.status, code=err.code, requestId=err.request_id)
    return row
