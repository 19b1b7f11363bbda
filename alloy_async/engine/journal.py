"""The write-ahead journal behind ``execute_many(checkpoint=...)``: never twice, never lost.

One row per job key: ``intent`` before the job's request reaches the transport, then its
outcome (``succeeded``, ``failed`` or ``outcome_unknown``) once the consumer has taken it. A
job that turned out never to have been sent (429, 503, no connection) has its row removed, so a
rerun tries it again. On resume an ``intent`` with no outcome means the process died while the
request may have been in flight: that job is reported as outcome-unknown and never sent again.

:class:`SqliteJournal` is the default: SQLite in WAL mode, written by one thread that commits
whatever is queued in one transaction (group commit), so the event loop never waits on disk
and a burst of intents costs one commit. Reads are single-key look-ups on the primary key
(microseconds), so memory stays flat whatever the number of keys and a journal of a million
keys opens at once. A lock file (``<path>.lock``, held with ``flock``) keeps a second run off
the same journal; the operating system drops the lock when its holder dies, even by SIGKILL.

Durability: with ``durability="process"`` (the default) a committed intent is in the
operating system's page cache when the request is sent, so it survives the process being
killed (SIGKILL, the OOM killer) but not a power loss or kernel crash, which can lose the
intents of the last moments: after one, jobs that were in flight may run again.
``durability="power"`` fsyncs every group commit, so even a power loss loses nothing: the
cost is one fsync per commit (see ``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import fcntl
import os
import queue
import socket
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any, Literal, Protocol, runtime_checkable

import orjson

from ..errors import JournalError, JournalLockedError

__all__ = ["Journal", "SqliteJournal", "State", "read_journal"]

#: What the journal knows of a key.
State = Literal["intent", "succeeded", "failed", "outcome_unknown"]
_FINAL = frozenset({"succeeded", "failed", "outcome_unknown"})
_SQLITE_MAGIC = b"SQLite format 3\x00"


@runtime_checkable
class Journal(Protocol):
    """What ``execute_many`` needs of a journal (default: :class:`~alloy_async.SqliteJournal`).

    One record per job key. For "never twice" a backend must guarantee: :meth:`intend` returns
    only once the intent is durable and visible to every run that may later read the key
    (another process, after this one is killed); writes for one key are applied in call order;
    and :meth:`open` excludes any other run on the same journal (a lock that dies with its
    holder, or a lease). :meth:`lookup` must see this run's own writes at once (keep a local
    overlay) and may be stale only for keys no other live run is writing, which the lock
    guarantees. :meth:`record` and :meth:`forget` may be asynchronous (queued), durable by the
    next :meth:`flush` or :meth:`aclose`. All methods but :meth:`open`,
    :meth:`intend`, :meth:`flush` and :meth:`aclose` are called on the event loop and must not
    block it.
    """

    async def open(self, run_id: str) -> None:
        """Take the journal for one run; raise :class:`~alloy_async.JournalLockedError` if
        another run has it."""

    def lookup(self, key: str) -> tuple[State, str] | None:
        """``(state, run_id)`` of ``key``, including writes not yet durable, or None."""

    async def intend(self, key: str) -> None:
        """Record that ``key`` is about to be sent; return only once that is durable."""

    def record(self, key: str, state: State) -> None:
        """Record ``key``'s outcome (queued; durable by the next :meth:`flush`)."""

    def forget(self, key: str) -> None:
        """Remove ``key``: it was never sent, a rerun may send it (queued)."""

    async def flush(self) -> None:
        """Wait until every earlier write is durable."""

    async def aclose(self) -> None:
        """Flush, release the lock and close. Idempotent."""


_STOP = object()


class _Gone:
    """A queued delete in the overlay; one object per delete, so a commit clears only its own."""

    __slots__ = ()


def _holder(fd: int) -> str:
    """Who holds the lock, as it wrote in the lock file.

    The holder writes its line just after taking the lock, so for a moment the file is empty
    or still names the previous (finished) holder: read again, briefly, until it names a live
    process. Runs in the executor (opening a journal never blocks the loop).
    """
    text = ""
    for _ in range(100):
        text = os.pread(fd, 512, 0).decode("utf-8", "replace").strip()
        pid = text.split()[1] if text.startswith("pid ") and len(text.split()) > 1 else ""
        if pid.isdigit() and _alive(int(pid)):
            return text
        time.sleep(0.01)
    return text or "another run"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_journal(path: str | os.PathLike[str]) -> Iterator[tuple[str, State]]:
    """Yield ``(key, state)`` for every job in a :class:`SqliteJournal` file, read-only.

    For inspection (what did a stopped run leave?) and tests; safe while a run holds the
    journal (it reads a consistent snapshot).
    """
    uri = "file:" + urllib.parse.quote(os.path.abspath(os.fspath(path))) + "?mode=ro"
    db = sqlite3.connect(uri, uri=True)
    try:
        found = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'jobs'")
        if found.fetchone() is not None:
            yield from db.execute("SELECT key, state FROM jobs ORDER BY key")
    finally:
        db.close()


class SqliteJournal:
    """The embedded write-ahead journal: one SQLite file (WAL) and a lock file beside it.

    Args:
        path: the journal file; created if missing. A checkpoint written by alloy-async
            0.1 (JSON lines) is imported and kept beside it as ``<path>.v0``.
        durability: ``"process"`` (survives a killed process) or ``"power"`` (also a power
            loss; one fsync per group commit).
    """

    def __init__(
        self, path: str | os.PathLike[str], *, durability: Literal["process", "power"] = "process"
    ) -> None:
        if durability not in ("process", "power"):
            raise ValueError(f'durability must be "process" or "power", got {durability!r}')
        self.path = os.fspath(path)
        self.durability = durability
        self._run_id = ""
        self._lock_fd: int | None = None
        self._reader: sqlite3.Connection | None = None
        self._writer: sqlite3.Connection | None = None
        self._thread: threading.Thread | None = None
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # Writes queued but not yet committed, so look-ups see them at once; an entry leaves
        # when the batch that carries it has committed (None marks a queued delete).
        self._overlay: dict[str, tuple[State, str] | _Gone] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._failure: BaseException | None = None
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("open" if self._thread else "new")
        return f"<SqliteJournal {self.path!r} {state} durability={self.durability}>"

    # -- opening -------------------------------------------------------------------------

    async def open(self, run_id: str) -> None:
        """Lock the journal and open it (off the event loop); see
        :class:`~alloy_async.engine.Journal`."""
        if self._thread is not None or self._closed:
            raise JournalError(f"journal {self.path} was already opened; use one per run")
        self._run_id = run_id
        self._loop = asyncio.get_running_loop()
        opening = self._loop.run_in_executor(None, self._open_sync)
        try:
            await asyncio.shield(opening)
        except asyncio.CancelledError:
            # The thread goes on and may take the lock: wait for it, then let go of it.
            with contextlib.suppress(Exception):
                await opening
            self._closed = True
            self._release()
            raise
        self._thread = threading.Thread(
            target=self._write_loop, name=f"alloy-journal:{self.path}", daemon=True
        )
        self._thread.start()

    def _open_sync(self) -> None:
        try:
            self._lock()
            self._migrate_v0()
            self._writer = self._connect()
            self._writer.execute(
                "CREATE TABLE IF NOT EXISTS jobs (key TEXT PRIMARY KEY, state TEXT NOT NULL, "
                "run TEXT NOT NULL, at REAL NOT NULL) WITHOUT ROWID"
            )
            self._reader = self._connect()
        except sqlite3.Error as exc:
            self._release()
            raise JournalError(f"cannot open the journal {self.path}: {exc}") from None
        except BaseException:
            self._release()
            raise

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        if db.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() != "wal":
            raise JournalError(f"the journal {self.path} cannot use write-ahead logging")
        sync = "FULL" if self.durability == "power" else "NORMAL"
        db.execute(f"PRAGMA synchronous={sync}")
        db.execute("PRAGMA busy_timeout=5000")
        return db

    def _lock(self) -> None:
        lock_path = self.path + ".lock"
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise JournalError(f"cannot create the journal lock {lock_path}: {exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise JournalLockedError(
                f"the checkpoint {self.path} is in use by {holder}; wait for that run to end "
                "or use another checkpoint",
                path=self.path,
                holder=holder,
            ) from None
        started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        holder = f"pid {os.getpid()} on {socket.gethostname()} (run {self._run_id}, {started})"
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.encode(), 0)
        self._lock_fd = fd

    def _migrate_v0(self) -> None:
        """Import a 0.1 checkpoint (JSON lines of ``{"key", "outcome"}``) into SQLite."""
        try:
            with open(self.path, "rb") as f:
                head = f.read(len(_SQLITE_MAGIC))
        except FileNotFoundError:
            return
        if not head or head == _SQLITE_MAGIC:
            return
        if not head.lstrip().startswith(b"{"):
            raise JournalError(
                f"{self.path} is neither an alloy-async journal nor a 0.1 checkpoint; "
                "refusing to overwrite it"
            )
        backup = self.path + ".v0"
        os.replace(self.path, backup)
        rows = []
        with open(backup, "rb") as f:
            for line in f:
                try:
                    entry = orjson.loads(line)
                    key, outcome = entry["key"], entry.get("outcome", "failed")
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    continue  # a torn last line from a crash mid-write
                if isinstance(key, str):
                    state = outcome if outcome in _FINAL else "failed"
                    rows.append((key, state, "v0", 0.0))
        db = self._connect()
        try:
            db.execute(
                "CREATE TABLE IF NOT EXISTS jobs (key TEXT PRIMARY KEY, state TEXT NOT NULL, "
                "run TEXT NOT NULL, at REAL NOT NULL) WITHOUT ROWID"
            )
            db.execute("BEGIN")
            db.executemany("INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?)", rows)
            db.execute("COMMIT")
        finally:
            db.close()

    # -- reading -------------------------------------------------------------------------

    def lookup(self, key: str) -> tuple[State, str] | None:
        """``(state, run_id)`` of ``key`` or None; see :class:`~alloy_async.engine.Journal`."""
        if key in self._overlay:
            found = self._overlay[key]
            return None if isinstance(found, _Gone) else found
        reader = self._reader
        if reader is None:
            raise JournalError("the journal is not open")
        row = reader.execute("SELECT state, run FROM jobs WHERE key = ?", (key,)).fetchone()
        return None if row is None else (row[0], row[1])

    def dangling(self) -> list[str]:
        """Keys whose intent an earlier run left without an outcome (it died mid-call).

        A consumer that keeps its own record of outcomes (the CLI's ``--out`` file) can
        settle them with :meth:`settle` before the run starts: a process killed between
        writing an outcome and journaling it would otherwise report that job a second time,
        as outcome-unknown (it is never sent again either way).
        """
        reader = self._reader
        if reader is None:
            raise JournalError("the journal is not open")
        rows = reader.execute(
            "SELECT key FROM jobs WHERE state = 'intent' AND run != ?", (self._run_id,)
        )
        return [key for (key,) in rows if key not in self._overlay]  # not settled since

    # -- writing -------------------------------------------------------------------------

    def _put(self, key: str | None, value: tuple[State, str] | _Gone | None, waiter: Any) -> None:
        if self._failure is not None:
            raise JournalError(f"the journal {self.path} failed: {self._failure}")
        if self._thread is None or self._closed:
            raise JournalError(f"the journal {self.path} is not open")
        if key is not None and value is not None:
            self._overlay[key] = value
        self._queue.put((key, value, waiter))

    async def intend(self, key: str) -> None:
        """Record the intent to send ``key``; return once it is durable."""
        assert self._loop is not None
        waiter = self._loop.create_future()
        self._put(key, ("intent", self._run_id), waiter)
        await waiter

    def record(self, key: str, state: State) -> None:
        """Record ``key``'s outcome; see :class:`~alloy_async.engine.Journal`."""
        self._put(key, (state, self._run_id), None)

    def settle(self, key: str, state: State) -> None:
        """Record the outcome of a :meth:`dangling` key from the caller's own records.

        Unlike :meth:`record` it is filed under no run of its own, so the run that follows
        skips the key as done by an earlier run (not as a duplicate of its own).
        """
        self._put(key, (state, "settled"), None)

    def forget(self, key: str) -> None:
        """Remove ``key`` (never sent); see :class:`~alloy_async.engine.Journal`."""
        self._put(key, _Gone(), None)

    async def flush(self) -> None:
        """Wait until every earlier write has committed."""
        if self._thread is None or self._closed:
            return
        assert self._loop is not None
        waiter = self._loop.create_future()
        self._put(None, None, waiter)
        await waiter

    async def aclose(self) -> None:
        """Commit what is queued, stop the writer, release the lock. Idempotent."""
        if self._closed:
            return
        thread = self._thread
        try:
            if thread is not None:
                assert self._loop is not None
                waiter = self._loop.create_future()
                self._queue.put((None, _STOP, waiter))
                with contextlib.suppress(JournalError):
                    await asyncio.shield(waiter)
        finally:
            # Even when the caller is cancelled while waiting: the writer ends after the STOP
            # batch (a few ms), and the lock must never outlive the run.
            self._closed = True
            if thread is not None:
                thread.join()
            self._release()

    def _release(self) -> None:
        for db in (self._reader, self._writer):
            if db is not None:
                db.close()
        self._reader = self._writer = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    # -- the writer thread ---------------------------------------------------------------

    def _write_loop(self) -> None:
        db = self._writer
        assert db is not None and self._loop is not None
        get, get_nowait, empty = self._queue.get, self._queue.get_nowait, queue.Empty
        failed: BaseException | None = None  # sticky: after a failed commit nothing is written
        stop = False
        while not stop:
            batch = [get()]
            with contextlib.suppress(empty):
                while len(batch) < 4096:
                    batch.append(get_nowait())
            now = time.time()
            upserts: dict[str, tuple[str, str, str, float]] = {}
            deletes: set[str] = set()
            for key, value, _ in batch:
                if value is _STOP:
                    stop = True
                elif key is None:
                    continue
                elif isinstance(value, _Gone):
                    upserts.pop(key, None)
                    deletes.add(key)
                else:
                    deletes.discard(key)
                    upserts[key] = (key, value[0], value[1], now)
            if failed is None and (upserts or deletes):
                try:
                    db.execute("BEGIN IMMEDIATE")
                    if deletes:
                        db.executemany("DELETE FROM jobs WHERE key = ?", [(k,) for k in deletes])
                    db.executemany(
                        "INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?)", upserts.values()
                    )
                    db.execute("COMMIT")
                except Exception as exc:  # disk full, I/O error, a key SQLite cannot store:
                    failed = exc  # every waiter learns of it, the thread lives on to STOP
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
            try:
                self._loop.call_soon_threadsafe(self._committed, batch, failed)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                return

    def _committed(self, batch: list[Any], error: BaseException | None) -> None:
        if error is not None and self._failure is None:
            self._failure = error
        overlay = self._overlay
        for key, value, waiter in batch:
            if key is not None and error is None and overlay.get(key, _STOP) is value:
                del overlay[key]  # unless a later write for the key is still queued
            if waiter is not None and not waiter.done():
                if error is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(
                        JournalError(f"cannot write the journal {self.path}: {error}")
                    )
