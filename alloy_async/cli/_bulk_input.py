"""The ``bulk`` command's input: one line parsed into a job, and the reader thread.

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
import os
import selectors
import stat
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator

import attrs
import orjson

from ..errors import AlloyError
from ..models import ExecuteJob

__all__ = [
    "CHUNK_BYTES",
    "MAX_LINE_BYTES",
    "QUEUE_BATCHES",
    "BadLine",
    "Item",
    "JobReader",
    "parse_line",
]

#: A line longer than this is reported as bad (and skipped) without being held in memory.
MAX_LINE_BYTES = 16 * 1024 * 1024
#: Bytes read from the input at a time; also the most one batch of lines holds.
CHUNK_BYTES = 64 * 1024
#: Batches waiting for the event loop before the reader thread waits (back-pressure).
QUEUE_BATCHES = 8

_BOM = b"\xef\xbb\xbf"


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
