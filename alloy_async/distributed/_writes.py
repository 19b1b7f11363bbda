"""What a process writes to Redis in the background, as typed operations, and who sends them.

A run does not wait for Redis to hear a job's outcome, a forgotten intent, a released lease, a
throttle or a quarantined credential: it queues a write (one of the attrs classes below) and a
single :class:`Writer` task sends them in order, in batches of pipelines. Order matters: one
key's writes (an intent forgotten, then recorded by a rerun) must reach Redis as queued.

:class:`LeaseBook` is the one owner of this process's slot leases: those held (renewed in the
background) and those whose release is queued but not yet written.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import attrs

from ..engine.journal import State
from ..errors import CoordinatorError
from ._redis import Shared
from ._scripts import FORGET

__all__ = [
    "BATCH",
    "Forget",
    "LeaseBook",
    "Publish",
    "Quarantined",
    "Record",
    "Unlease",
    "Write",
    "Writer",
]

#: Writes sent in one pipeline at most.
BATCH = 512


@attrs.frozen
class Record:
    """A job's outcome: its hash ``key`` gets state ``state``, kept ``ttl_ms`` (0: forever)."""

    key: str
    state: State
    ttl_ms: int

    async def apply(self, pipe: Any, shared: Shared) -> None:
        """Queue it on ``pipe``."""
        pipe.hset(self.key, "s", self.state)
        if self.ttl_ms:
            pipe.pexpire(self.key, self.ttl_ms)


@attrs.frozen
class Forget:
    """A job that was never sent: its record goes, if it is still ``run_id``'s intent."""

    key: str
    run_id: str

    async def apply(self, pipe: Any, shared: Shared) -> None:
        """Queue it on ``pipe`` (a script: queued by awaiting it)."""
        await shared.script(FORGET)(keys=[self.key], args=[self.run_id], client=pipe)


@attrs.frozen
class Unlease:
    """Leases given back: ``member`` leaves each slot set in ``names``."""

    names: tuple[str, ...]
    member: str

    async def apply(self, pipe: Any, shared: Shared) -> None:
        """Queue it on ``pipe``."""
        for name in self.names:
            pipe.zrem(name, self.member)


@attrs.frozen
class Publish:
    """A message on the namespace's channel (a throttle, a quarantined credential)."""

    channel: str
    message: bytes

    async def apply(self, pipe: Any, shared: Shared) -> None:
        """Queue it on ``pipe``."""
        pipe.publish(self.channel, self.message)


@attrs.frozen
class Quarantined:
    """A credential quarantined: entry ``credential_id`` of hash ``key`` says ``why``."""

    key: str
    credential_id: str
    why: bytes
    ttl_ms: int

    async def apply(self, pipe: Any, shared: Shared) -> None:
        """Queue it on ``pipe``."""
        pipe.hset(self.key, self.credential_id, self.why)
        pipe.pexpire(self.key, self.ttl_ms)


Write = Record | Forget | Unlease | Publish | Quarantined


class Writer:
    """Sends queued writes in order, in batches; :meth:`flush` waits for them.

    A batch that fails past ``unavailable_timeout`` is dropped and its error kept
    (:attr:`error`, raised by :meth:`flush`): the intents stay on Redis, so a rerun reports
    those jobs outcome-unknown and never sends them.
    """

    def __init__(self, shared: Shared, *, on_queue: Callable[[], None]) -> None:
        self._shared = shared
        self._on_queue = on_queue
        self._queue: asyncio.Queue[Write] = asyncio.Queue()
        self._after: list[Callable[[list[Write]], None]] = []
        #: The last batch that could not be written.
        self.error: CoordinatorError | None = None

    def queue(self, write: Write) -> None:
        """Queue ``write``; the task running :meth:`run` sends it (``on_queue`` starts it)."""
        self._on_queue()
        self._queue.put_nowait(write)

    def after_batch(self, callback: Callable[[list[Write]], None]) -> None:
        """Call ``callback`` with each batch once it is written (or failed for good)."""
        self._after.append(callback)

    @property
    def queued(self) -> int:
        """Writes not yet sent."""
        return self._queue.qsize()

    async def flush(self) -> None:
        """Wait until every write queued so far is sent; raise the last batch's failure."""
        await self._queue.join()
        if self.error is not None:
            raise self.error

    async def run(self) -> None:
        """The writer task: forever, the next batch."""
        queue = self._queue
        while True:
            batch = [await queue.get()]
            while len(batch) < BATCH and not queue.empty():
                batch.append(queue.get_nowait())
            try:
                await self._send(batch)
            except CoordinatorError as exc:
                self.error = exc
            finally:
                for callback in self._after:
                    callback(batch)  # written or failed for good: either way, not queued
                for _ in batch:
                    queue.task_done()

    async def _send(self, batch: list[Write]) -> None:
        async def build(pipe: Any) -> None:
            for write in batch:
                await write.apply(pipe, self._shared)

        await self._shared.batch("writing outcomes and releases", build)


class LeaseBook:
    """This process's slot leases: held (renewed in the background) and being released.

    A lease refused only because of this process's own queued release waits for the writer's
    next batch (:meth:`until_released`) instead of the engine's retry timer.
    """

    def __init__(self, writer: Writer) -> None:
        self._writer = writer
        #: ``member|name`` -> slot set ``name``, for every lease held.
        self._held: dict[str, str] = {}
        self._releasing: Counter[str] = Counter()
        self._batch_written: asyncio.Event | None = None
        writer.after_batch(self._written)

    def __len__(self) -> int:
        return len(self._held)

    def took(self, member: str, names: list[str]) -> None:
        """``member`` now holds a lease in each of ``names``."""
        for name in names:
            self._held[f"{member}|{name}"] = name

    def give_back(self, member: str, names: list[str]) -> None:
        """Release ``member``'s leases in ``names`` (queued)."""
        for name in names:
            self._held.pop(f"{member}|{name}", None)
        self._releasing.update(names)
        self._writer.queue(Unlease(tuple(names), member))

    def held(self) -> tuple[list[str], list[str]]:
        """The leases to renew: their slot sets and members, in the same order."""
        items = list(self._held.items())
        return [name for _, name in items], [held.split("|", 1)[0] for held, _ in items]

    async def until_released(self, name: str) -> bool:
        """Wait for the writer's next batch if a release in slot set ``name`` is queued (True);
        False at once if none is."""
        if self._releasing[name] <= 0:
            return False
        if self._batch_written is None:
            self._batch_written = asyncio.Event()
        await self._batch_written.wait()
        return True

    def _written(self, batch: list[Write]) -> None:
        for write in batch:
            if isinstance(write, Unlease):
                self._releasing.subtract(write.names)
                for name in write.names:
                    if self._releasing[name] <= 0:
                        del self._releasing[name]
        written, self._batch_written = self._batch_written, None
        if written is not None:
            written.set()
