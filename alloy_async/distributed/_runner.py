"""The worker's side: :class:`ChunkRunner` runs the chunks a worker takes from the queue.

One client per process; one :class:`RedisCoordinator` per namespace and per-worker cap, kept
while chunks of that run keep coming and closed once idle when more than
:data:`KEEP_IDLE` are open (a long-lived worker serves many runs).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from typing import Any

from ..client import AlloyClient
from .chunk import run_chunk
from .coordinator import RedisCoordinator

__all__ = ["KEEP_IDLE", "ChunkRunner", "ClientFactory"]

log = logging.getLogger("alloy_async.distributed")

#: Idle coordinators (no chunk of theirs running) a worker keeps open for the next chunks.
KEEP_IDLE = 4


ClientFactory = Callable[[], AbstractAsyncContextManager[AlloyClient]]


class ChunkRunner:
    """Runs chunks in a worker process: one client, one coordinator per namespace.

    Args:
        url: the Redis URL the coordinators use.
        client: opens the process's client (entered on the first chunk, left by ``aclose``).
        concurrency: calls in flight in this process. Two chunks run at once and share them
            (so that one chunk's slow last jobs do not leave the process idle).
    """

    def __init__(self, url: str, client: ClientFactory, *, concurrency: int) -> None:
        self.url = url
        self.concurrency = concurrency
        self.chunks_at_once = 2 if concurrency >= 2 else 1
        self.chunks = self.jobs = self.ok = self.failed = self.errors = 0
        self.running: set[asyncio.Task[Any]] = set()
        self._client_factory = client
        self._stack = AsyncExitStack()
        self._alloy: AlloyClient | None = None
        self._coords: dict[tuple[str, int], RedisCoordinator] = {}
        self._using: Counter[tuple[str, int]] = Counter()  # chunks running per coordinator
        self._opening = asyncio.Lock()

    async def run(
        self, namespace: str, jobs: list[dict[str, Any]], limits: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """One chunk: one row per job, in order (raises CoordinatorError if Redis is down)."""
        task = asyncio.current_task()
        if task is not None:
            self.running.add(task)
        try:
            rows = await self._run(namespace, jobs, limits)
        except Exception as exc:
            self.errors += 1
            log.error("a chunk of %d job(s) failed: %s: %s", len(jobs), type(exc).__name__, exc)
            raise
        finally:
            if task is not None:
                self.running.discard(task)
        self.chunks += 1
        self.jobs += len(rows)
        good = sum(1 for r in rows if r.get("ok") is True)
        self.ok += good
        self.failed += len(rows) - good
        return rows

    async def _run(
        self, namespace: str, jobs: list[dict[str, Any]], limits: dict[str, Any]
    ) -> list[dict[str, Any]]:
        # Calls in flight here: the worker's --concurrency, or fewer if the run asks; the
        # coordinator's cap holds across the chunks running at once (one per namespace and cap).
        cap = min(self.concurrency, _number(limits, "concurrency", int) or self.concurrency)
        options = {
            "concurrency": cap,
            "rate": _number(limits, "rate", float),
            "burst": _number(limits, "burst", int),
            "per_user": _number(limits, "per_user", int),
            "per_connector": _number(limits, "per_connector", int),
        }
        alloy = await self.open()
        key = (namespace, cap)
        coord = self._coords.pop(key, None)  # re-inserted last: the dict is in LRU order
        if coord is None:
            coord = RedisCoordinator(self.url, namespace=namespace, concurrency=cap)
        self._coords[key] = coord
        self._using[key] += 1
        try:
            return await run_chunk(alloy, coord, jobs, **options)
        finally:
            self._using[key] -= 1
            if not self._using[key]:
                del self._using[key]
                await self._close_idle()

    async def _close_idle(self) -> None:
        """Close the least recently used idle coordinators beyond :data:`KEEP_IDLE`."""
        idle = [key for key in self._coords if key not in self._using]
        for key in idle[: max(0, len(idle) - KEEP_IDLE)]:
            coord = self._coords.pop(key)
            await coord.aclose()  # flushes its queued writes first

    async def open(self) -> AlloyClient:
        """The client, opened on first use (:func:`serve` opens it before taking chunks, so
        that a missing key stops the worker instead of failing every chunk)."""
        async with self._opening:
            if self._alloy is None:
                self._alloy = await self._stack.enter_async_context(self._client_factory())
            return self._alloy

    async def cut_short(self) -> None:
        """Cancel the chunks still running and wait for them."""
        tasks = list(self.running)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def aclose(self) -> None:
        """Close the coordinators and the client."""
        coords, self._coords = list(self._coords.values()), {}
        for coord in coords:
            await coord.aclose()
        self._alloy = None
        await self._stack.aclose()


def _number(limits: dict[str, Any], name: str, kind: type[float] | type[int]) -> Any:
    value = limits.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise TypeError(f"limit {name!r} must be a number or null, got {value!r}")
    return None if value is None else kind(value)
