"""The reader of a run: input -> admission -> the fair scheduler, at most ``lookahead`` ahead.

One task per run reads the jobs lazily (an iterable or an async iterable), turns each into a
slot (:class:`~alloy_async.engine.admission.Admission`) and queues it; it waits while the
look-ahead is full, so memory stays flat whatever the input's size.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Callable, Mapping
from typing import Any

from ..errors import InvalidRequestError
from ..models.bulk import ExecuteJob
from .admission import Admission, locate
from .dispatch import Bell
from .scheduler import FairScheduler, Slot
from .state import Flow, Jobs, Settings

__all__ = ["Reader"]


class Reader:
    """Feeds one run's scheduler from its input.

    Args:
        emitted: how many outcomes the consumer has moved past (ordered mode's window).
        stop: stops the run with a reason (the input failed).
        stamp: whether to note when each job was queued (the run is traced).
        grow: starts another worker (up to the run's limits) for a job no idle one took.
    """

    def __init__(
        self,
        jobs: Jobs,
        settings: Settings,
        flow: Flow,
        admission: Admission,
        sched: FairScheduler,
        wake: Bell,
        *,
        emitted: Callable[[], int],
        stop: Callable[[str], None],
        stamp: bool,
        grow: Callable[[], None],
    ) -> None:
        self._jobs = jobs
        self._s = settings
        self._flow = flow
        self._admission = admission
        self._sched = sched
        self._wake = wake
        self._emitted = emitted
        self._stop = stop
        self._stamp = stamp
        self._grow = grow
        #: Set whenever room may have freed up (a job left the buffer, the consumer moved on).
        self.room = asyncio.Event()
        # Every job goes through _accept (ordered mode's window, the preflight's await).
        self._slow = settings.ordered or settings.preflight is not None

    def _full(self) -> bool:
        flow = self._flow
        if flow.buffered >= self._s.lookahead:
            return True
        return self._s.ordered and flow.next_index - self._emitted() >= self._s.lookahead

    async def feed(self) -> None:
        """Read every job (the run's reader task)."""
        try:
            jobs = self._jobs
            if isinstance(jobs, AsyncIterable):
                async for raw in jobs:
                    if not self._quick(raw) and await self._accept(raw):
                        break
            else:
                for raw in jobs:
                    if not self._quick(raw) and await self._accept(raw):
                        break
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._flow.source_error = exc
            self._stop(f"reading the jobs failed: {type(exc).__name__}: {exc}")
        finally:
            self._flow.source_done = True
            self._wake.ring_all()

    def _quick(self, raw: ExecuteJob | Mapping[str, Any]) -> bool:
        """Queue one job at once when nothing needs awaiting (no wait for room, no preflight,
        no turn to yield); False leaves it to :meth:`_accept`. Once per job: no coroutine."""
        flow = self._flow
        if (
            self._slow
            or flow.stopping
            or flow.buffered >= self._s.lookahead
            or flow.next_index % 256 == 255
        ):
            return False
        slot = self._admission.admit(raw, flow.next_index)
        if slot is not None:
            self._queue(slot)
        return True

    async def _accept(self, raw: ExecuteJob | Mapping[str, Any]) -> bool:
        """Queue one job; True when dispatch has stopped and reading should end."""
        flow = self._flow
        while self._full() and not flow.stopping:
            self.room.clear()
            await self.room.wait()
        if flow.stopping:
            return True
        slot = self._admission.admit(raw, flow.next_index)
        if slot is None:
            return False
        preflight = self._s.preflight
        if preflight is not None and slot.preset is None:
            refused = await preflight(slot.job)
            if isinstance(refused, InvalidRequestError):
                slot.preset = locate(refused, slot.index)  # journaled as failed
            elif refused is not None:
                # Not the job's fault (its schema could not be fetched or used): journaled
                # as nothing, so a rerun checks and sends it.
                slot.preset = refused
                if slot.key is not None:
                    self._admission.claimed.discard(slot.key)
                    slot.key = None
        self._queue(slot)
        # A sync iterable never yields otherwise: let the workers start on what is queued.
        if flow.next_index % 256 == 0:
            await asyncio.sleep(0)
        return False

    def _queue(self, slot: Slot) -> None:
        flow = self._flow
        if self._stamp:
            slot.t_in = asyncio.get_running_loop().time()
        flow.next_index += 1
        flow.buffered += 1
        if slot.preset is not None:
            self._sched.add_decided(slot)
        else:
            self._sched.add(slot)
        if not self._wake.ring():
            self._grow()
