"""The fair scheduler: plain, loop-free code (no asyncio), testable on its own.

Ready jobs wait in one FIFO per user; :meth:`FairScheduler.pick` takes the next one round-robin
over the users that have room, so a user with 50,000 queued jobs gets one turn per round like a
user with 5. Starting a job is the caller's ``try_start(slot)``, which answers one of:

* ``None``: the job holds its slots now; ``pick`` returns it;
* :data:`USER_FULL`: its user is at the per-user cap; the user leaves the rotation (it never
  holds a worker) until :meth:`FairScheduler.unblock_user`;
* any other value: a key the job is parked on (a connector at its cap, a scope cooling down);
  only :meth:`FairScheduler.unpark` of that key brings it back, so nobody queues behind it.

Jobs decided without sending (a bad job, an intent an earlier run left) come first
(:meth:`add_decided`), then re-queued and unparked ones, then the rotation.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any

import attrs

__all__ = ["USER_FULL", "FairScheduler", "Slot", "Stage"]

#: ``try_start`` answer: the slot's user is at its cap.
USER_FULL = "user-full"


class Stage(enum.IntEnum):
    """Where a job is in its life (``engine/life.py`` tells the whole of it)."""

    #: Waiting in the scheduler; it holds nothing.
    QUEUED = 0
    #: Picked by a worker: it holds its slots (and, on a shared coordinator, its leases).
    PICKED = 1
    #: Its intent is durable: from here a stop takes the intent back, a crash leaves it.
    INTENDED = 2
    #: Its request may reach the server: from here it is never sent again.
    SENDING = 3
    #: Its slots are given back; its outcome is on its way (or it is queued again).
    DONE = 4


@attrs.define(eq=False)
class Slot:
    """One job on its way through the engine: what it needs, where it is, what it cost."""

    index: int
    job: Any
    #: Its journal key (None: no journal, or a bad job without one).
    key: str | None
    #: The capped keys it needs (``("user", id)``, ``("connector", id)``).
    keys: Any
    #: Its cool-down scope (a connector).
    scope: str
    user: str
    stage: Stage = Stage.QUEUED
    attempts: int = 0
    requeues: int = 0
    throttled: float = 0.0
    #: It holds leases of a shared coordinator.
    leased: bool = False
    #: When it was queued, and how long it waited for its rate permit (read when traced).
    t_in: float = 0.0
    rate_wait: float = 0.0
    #: An outcome decided without sending: a bad job, or an intent an earlier run left.
    preset: BaseException | None = None


TryStart = Callable[[Slot], Hashable | None]


class FairScheduler:
    """Per-user FIFOs, a round-robin rotation, and jobs parked on saturated keys."""

    def __init__(self) -> None:
        self._users: dict[str, deque[Slot]] = {}
        self._rotation: deque[str] = deque()
        self._in_rotation: set[str] = set()
        #: Users whose cap is full (out of the rotation until a release of theirs).
        self.blocked: set[str] = set()
        #: Jobs waiting for a key (a cap, a cooling scope) to be released, by key.
        self.parked: dict[Hashable, deque[Slot]] = {}
        self._priority: deque[Slot] = deque()
        self._decided: deque[Slot] = deque()

    def add(self, slot: Slot) -> None:
        """Queue a ready job behind its user's others."""
        queue = self._users.get(slot.user)
        if queue is None:
            queue = self._users[slot.user] = deque()
        queue.append(slot)
        if slot.user not in self._in_rotation:
            self._enter(slot.user)

    def add_decided(self, slot: Slot) -> None:
        """Queue a job whose outcome is already known (it takes no slot): first out."""
        self._decided.append(slot)

    def requeue(self, slot: Slot) -> None:
        """Queue a job again ahead of the rotation (it parks if its key is still busy)."""
        self._priority.append(slot)

    def park(self, key: Hashable, slot: Slot) -> None:
        """Hold ``slot`` until ``key`` is released."""
        parked = self.parked.get(key)
        if parked is None:
            parked = self.parked[key] = deque()
        parked.append(slot)

    def unpark(self, key: Hashable, count: int = 1) -> bool:
        """Let ``count`` jobs parked on ``key`` (all with -1) be picked again; True if any."""
        parked = self.parked.get(key)
        if parked is None:
            return False
        while parked and count:
            self._priority.append(parked.popleft())
            count -= 1
        if not parked:
            del self.parked[key]
        return True

    def retry_all(self) -> None:
        """Let every parked job and blocked user be tried again (slots held by someone else,
        e.g. another run sharing the coordinator, may have been freed)."""
        for key in list(self.parked):
            self.unpark(key, count=-1)
        for user in list(self.blocked):
            self.unblock_user(user)

    @property
    def waiting(self) -> bool:
        """Whether any job waits on a key or a full user (not only on a free worker)."""
        return bool(self.parked or self.blocked)

    def unblock_user(self, user: str) -> None:
        """The user's cap has room again: back into the rotation."""
        if user in self.blocked:
            self.blocked.discard(user)
            self._enter(user)

    def pick(self, try_start: TryStart) -> Slot | None:
        """The next job that could start (its slots taken by ``try_start``), or None."""
        if self._decided:
            return self._decided.popleft()
        priority = self._priority
        while priority:
            slot = priority.popleft()
            answer = try_start(slot)
            if answer is None:
                return slot
            if answer == USER_FULL:
                self._hold_user(slot)
            else:
                self.park(answer, slot)
        rotation = self._rotation
        for _ in range(len(rotation)):
            user = rotation.popleft()
            self._in_rotation.discard(user)
            queue = self._users.get(user)
            if not queue or user in self.blocked:
                continue
            slot = queue.popleft()
            answer = try_start(slot)
            if answer == USER_FULL:
                queue.appendleft(slot)
                self.blocked.add(user)
                continue
            if not queue:
                del self._users[user]
            else:
                self._enter(user)
            if answer is None:
                return slot
            self.park(answer, slot)
        return None

    def hold(self, key: Hashable, slot: Slot) -> None:
        """Put ``slot`` back, waiting on ``key``: its user leaves the rotation when ``key`` is
        the user's (until :meth:`unblock_user`), else it parks on ``key``."""
        if isinstance(key, tuple) and key and key[0] == "user":
            self._hold_user(slot)
        else:
            self.park(key, slot)

    def _hold_user(self, slot: Slot) -> None:
        queue = self._users.get(slot.user)
        if queue is None:
            queue = self._users[slot.user] = deque()
        queue.appendleft(slot)
        self.blocked.add(slot.user)

    def _enter(self, user: str) -> None:
        if user not in self._in_rotation and user not in self.blocked and self._users.get(user):
            self._rotation.append(user)
            self._in_rotation.add(user)
