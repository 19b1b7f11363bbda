"""Which job starts next: the fair scheduler, the coordinator's slots and the timers between.

:class:`Dispatch` answers the scheduler's ``try_start`` (cool-down first, then the slots),
gives slots back when a call ends (waking what waited on them) and keeps the timers that bring
parked jobs back: a scope's cool-down ending, or a shared cap another process holds (no
release of ours will tell when that one frees up).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Hashable, Mapping
from typing import Any

from ..limiters import GLOBAL_KEY, Key
from .coordinator import Coordinator
from .scheduler import USER_FULL, FairScheduler, Schedule, Slot
from .shared import SharedGate

__all__ = ["Bell", "Dispatch"]

#: How soon a job refused by a shared cap is tried again when the coordinator does not say.
_SHARED_RETRY = 0.05


def _user_cap(slots: Any) -> int | None:
    """The per-user cap of ``slots`` (None: none); 1 when it has one but does not say which
    (``statistics().caps`` is not part of :class:`KeyedSlots`)."""
    if not any(key[0] == "user" for key in slots.keys_for({"user": "-"})):
        return None
    statistics = getattr(slots, "statistics", None)
    caps = getattr(statistics(), "caps", None) if callable(statistics) else None
    cap = caps.get("user") if isinstance(caps, Mapping) else None
    return cap if isinstance(cap, int) and cap >= 1 else 1


class Bell:
    """Wakes idle workers one at a time; a worker that gets a job rings again (a chain), so
    every job that can start finds a worker while a freed slot costs O(1) wake-ups, not one
    per idle worker (256 workers idle behind a full per-user cap each woke, found nothing
    and slept again on every release: ~20x the cost of a job).
    """

    def __init__(self) -> None:
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def wait(self) -> None:
        """Sleep until rung."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if not waiter.done():  # cancelled: no ring is owed to it
                waiter.cancel()

    def ring(self) -> bool:
        """Wake one idle worker, if any; False when there was none."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return True
        return False

    def ring_all(self) -> None:
        """Wake every idle worker (the run is stopping, or its input ended)."""
        waiters, self._waiters = self._waiters, deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


class Dispatch:
    """The scheduler and the slots of one run; ``wake`` rings whenever a job may start."""

    def __init__(
        self,
        coordinator: Coordinator,
        wake: Bell,
        schedule: Schedule = "makespan",
        concurrency: int = 1,
    ) -> None:
        self._c = coordinator
        self._wake = wake
        cap = _user_cap(coordinator.slots)
        # Ranking users by their queued work pays only when a per-user cap bounds them below
        # the run's own concurrency.
        if cap is None or cap >= concurrency:
            schedule = "round_robin"
        self.sched = FairScheduler(schedule, cap=cap or 0, slots=concurrency)
        self.gate = SharedGate(
            coordinator.slots, coordinator.journal, rate=coordinator.rate is not None
        )
        self.timers: dict[Hashable, asyncio.TimerHandle] = {}

    def try_start(self, slot: Slot) -> Any:
        """Take every slot ``slot`` needs: None, USER_FULL, or the key to park it on."""
        cooldown = self._c.cooldown
        if cooldown is not None:
            wait = cooldown.blocked_for(slot.scope)
            if wait is not None:
                if wait != float("inf"):
                    self._later(slot.scope, wait, self._cooled, slot.scope)
                return ("scope", slot.scope)
        blocker = self._c.slots.try_acquire(slot.keys)
        if blocker is None:
            if cooldown is not None:
                cooldown.try_acquire(slot.scope)
            return None
        if isinstance(blocker, tuple) and blocker[0] == "user":
            return USER_FULL
        return blocker

    def release(self, slot: Slot, success: bool | None) -> None:
        """``slot``'s call ended (``success`` None: it was not sent): free what it held."""
        self._c.slots.release(slot.keys)
        self.gate.release(slot)
        sched = self.sched
        cooldown = self._c.cooldown
        if cooldown is not None:
            cooldown.release(slot.scope, success=success)
        # Guarded: nothing is parked or blocked in most releases (once per job).
        if sched.parked or sched.blocked:
            if cooldown is not None:
                sched.unpark(("scope", slot.scope))
            for key in slot.keys:
                if key[0] == "user":
                    sched.unblock_user(key[1])
                else:
                    sched.unpark(key)
            sched.unpark(GLOBAL_KEY)
        self._wake.ring()

    def hold(self, key: Key, slot: Slot) -> None:
        """``slot`` (holding nothing) waits for ``key``, at its cap in another process."""
        self.sched.hold(key, slot)
        retry = self.gate.leased.retry_after if self.gate.leased is not None else _SHARED_RETRY
        self._later(key, retry, self._shared_free, key)

    def cancel_timers(self) -> None:
        """The run is closing: no parked job will be woken again."""
        for timer in self.timers.values():
            timer.cancel()
        self.timers.clear()

    def _later(self, name: Hashable, delay: float, fn: Any, arg: Any) -> None:
        if name not in self.timers:
            self.timers[name] = asyncio.get_running_loop().call_later(delay, fn, arg)

    def _cooled(self, scope: str) -> None:
        self.timers.pop(scope, None)
        # Wake only as many parked jobs as the scope can take: waking them all made every
        # cool-down cost O(buffered jobs), quadratic under sustained throttling. The rest are
        # woken one per release in the scope.
        room = self._c.cooldown.room(scope) if self._c.cooldown is not None else -1
        self.sched.unpark(("scope", scope), count=max(1, room) if room >= 0 else -1)
        self._wake.ring()

    def _shared_free(self, key: Key) -> None:
        self.timers.pop(key, None)
        if key[0] == "user":
            self.sched.unblock_user(key[1])
        else:
            self.sched.unpark(key, count=-1)
        self._wake.ring_all()
