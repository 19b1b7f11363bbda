"""The fair scheduler: plain, loop-free code (no asyncio), testable on its own.

Ready jobs wait in one FIFO per user. Starting a job is the caller's ``try_start(slot)``, which
answers one of:

* ``None``: the job holds its slots now; ``pick`` returns it;
* :data:`USER_FULL`: its user is at the per-user cap; the user leaves the rotation (it never
  holds a worker) until :meth:`FairScheduler.unblock_user`;
* any other value: a key the job is parked on (a connector at its cap, a scope cooling down);
  only :meth:`FairScheduler.unpark` of that key brings it back, so nobody queues behind it.

Jobs decided without sending (a bad job, an intent an earlier run left) come first
(:meth:`add_decided`), then re-queued and unparked ones, then the users' queues, in one of two
schedules:

* ``"round_robin"``: one job per user per round of a rotation over the users that have room,
  so a user with 50,000 queued jobs gets one turn per round like a user with 5.
* ``"makespan"`` (``execute_many``'s default): longest remaining time first, kept fair. The
  users are ranked by their queued jobs (by power of two; the per-user cap is the same for
  all, so that is their remaining time at the cap). A user whose queue would outlast all the
  others' at its cap (``queued(user) / cap > queued(all) / slots``) gets every other pick
  while it is below its cap: it runs at its cap from the start instead of getting 1/users of
  the turns and finishing alone, at its cap, long after the rest. The other picks go to the
  rotation, so every user still gets a turn each round (a user waits at most one round of it,
  twice as many picks, for its next job), and when nobody would outlast the rest the
  schedule is the rotation alone. Users without a per-user cap (no ``per_user``, or no user
  id: ``""``) are never ranked: nothing bounds them, so no order shortens the run.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any, Final, Literal, get_args

import attrs

__all__ = [
    "DONE",
    "INTENDED",
    "PICKED",
    "QUEUED",
    "SCHEDULES",
    "SENDING",
    "USER_FULL",
    "FairScheduler",
    "Schedule",
    "Slot",
    "Stage",
]

#: ``try_start`` answer: the slot's user is at its cap.
USER_FULL = "user-full"

#: How the scheduler orders the users' queues (module docstring).
Schedule = Literal["makespan", "round_robin"]
#: The schedules ``execute_many(schedule=...)`` accepts.
SCHEDULES: tuple[str, ...] = get_args(Schedule)


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


# The stages as module names too: a job's life reads or sets its stage about five times, and
# on Python 3.11 an enum member lookup (``Stage.PICKED``) costs ~90 ns against ~10 ns for a
# module global (benchmarks/RESULTS.md, issue 23).
QUEUED: Final = Stage.QUEUED
PICKED: Final = Stage.PICKED
INTENDED: Final = Stage.INTENDED
SENDING: Final = Stage.SENDING
DONE: Final = Stage.DONE


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
    stage: Stage = QUEUED
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
    """Per-user FIFOs, a round-robin rotation, the users ranked by their queued work (the
    ``"makespan"`` schedule), and jobs parked on saturated keys.

    Args:
        schedule: ``"round_robin"`` or ``"makespan"`` (module docstring).
        cap / slots: the per-user cap and the run's slots (its concurrency): a ranked user
            gets picks ahead of the rotation only while, at its cap, it would outlast the rest
            (``queued(user) * slots > queued(all) * cap``). ``cap=0``: always.
    """

    def __init__(self, schedule: Schedule = "round_robin", *, cap: int = 0, slots: int = 1):
        self._users: dict[str, deque[Slot]] = {}
        self._rotation: deque[str] = deque()
        self._in_rotation: set[str] = set()
        #: Users whose cap is full (out of the rotation until a release of theirs).
        self.blocked: set[str] = set()
        #: Jobs waiting for a key (a cap, a cooling scope) to be released, by key.
        self.parked: dict[Hashable, deque[Slot]] = {}
        self._priority: deque[Slot] = deque()
        self._decided: deque[Slot] = deque()
        #: Jobs in the users' queues (not parked, re-queued or decided ones).
        self._queued = 0
        self._ranked = schedule == "makespan"
        self._cap = cap
        self._slots = slots
        #: ``_rank[r]``: the users with ``2**r`` to ``2**(r+1) - 1`` jobs queued (rank
        #: ``(queued >> 1).bit_length()``: none for one job), in insertion order (the last one
        #: is served first). A user's rank changes only when its count crosses a power of
        #: two, so keeping this costs O(1) per job. Every user not blocked is in its rank; a
        #: blocked one may still be (it is dropped when it comes up, put back when unblocked):
        #: a user at its cap, blocked and unblocked once per job, costs nothing here.
        self._rank: list[dict[str, None]] = [{} for _ in range(64)]
        #: Bit ``r`` set while ``_rank[r]`` is not empty: the top rank is one bit_length away.
        self._ranks = 0
        #: The next pick may go to the top rank (picks alternate with the rotation).
        self._rank_turn = True

    def add(self, slot: Slot) -> None:
        """Queue a ready job behind its user's others."""
        user = slot.user
        queue = self._users.get(user)
        if queue is None:
            queue = self._users[user] = deque()
        queue.append(slot)
        self._queued += 1
        n = len(queue)
        if n & (n - 1) == 0 and n > 1 and self._ranked:
            self._rerank(user, n - 1, n)
        if user not in self._in_rotation:
            self._enter(user)

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
        """The user's cap has room again: back into the rotation (and its rank)."""
        if user in self.blocked:
            self.blocked.discard(user)
            n = len(self._users[user])
            if n > 1 and self._ranked and user:
                rank = (n >> 1).bit_length()
                bucket = self._rank[rank]
                if user not in bucket:
                    bucket[user] = None
                    self._ranks |= 1 << rank
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
        if self._ranks and self._rank_turn:
            ranked = self._pick_ranked(try_start)
            if ranked is not None:
                self._rank_turn = False
                return ranked
        rotation = self._rotation
        for _ in range(len(rotation)):
            user = rotation.popleft()
            self._in_rotation.discard(user)
            queue = self._users.get(user)
            if not queue or user in self.blocked:
                continue
            taken = self._take(user, queue, try_start)
            if queue:
                self._enter(user)  # not when blocked
            else:
                del self._users[user]
            if taken is not None:
                self._rank_turn = True
                return taken
        return None

    def hold(self, key: Hashable, slot: Slot) -> None:
        """Put ``slot`` back, waiting on ``key``: its user leaves the rotation when ``key`` is
        the user's (until :meth:`unblock_user`), else it parks on ``key``."""
        if isinstance(key, tuple) and key and key[0] == "user":
            self._hold_user(slot)
        else:
            self.park(key, slot)

    def _pick_ranked(self, try_start: TryStart) -> Slot | None:
        """The next job of the top-ranked user (not blocked) that can start, if that user would
        outlast the rest at its cap."""
        ranks = self._rank
        while self._ranks:
            top = self._ranks.bit_length() - 1
            bucket = ranks[top]
            # popitem takes the last user and drops the holes deletions left behind it, so
            # finding it stays O(1); it goes back at once (it keeps its place).
            user = bucket.popitem()[0]
            if user in self.blocked:  # full since it was ranked: out until unblocked
                if not bucket:
                    self._ranks &= ~(1 << top)
                continue
            bucket[user] = None
            queue = self._users[user]
            if len(queue) * self._slots <= self._queued * self._cap:
                return None  # it would not outlast the rest at its cap: the rotation's turn
            slot = self._take(user, queue, try_start)
            if slot is not None or user not in self.blocked:
                # Started, or parked (its connector is full): one at a time, as the rotation
                # would, so that its queue does not end up ahead of everyone else's there.
                return slot
        return None

    def _take(self, user: str, queue: deque[Slot], try_start: TryStart) -> Slot | None:
        """Try the next job of ``user`` (not blocked): the job if it started; None if it parked
        on its key, or if its user is full (it goes back first and the user waits)."""
        slot = queue.popleft()
        answer = try_start(slot)
        if answer == USER_FULL:
            queue.appendleft(slot)
            self.blocked.add(user)
            return None
        self._queued -= 1
        n = len(queue)
        if n & (n + 1) == 0 and n and self._ranked:  # it had a power of two (2 or more)
            self._rerank(user, n + 1, n)
        if answer is None:
            return slot
        self.park(answer, slot)
        return None

    def _rerank(self, user: str, was: int, now: int) -> None:
        """``user`` had ``was`` jobs queued, now ``now``. A job without a user (``""``) has no
        per-user cap: never ranked."""
        old, new = (was >> 1).bit_length(), (now >> 1).bit_length()
        if old == new or not user:
            return
        ranks = self._rank
        if old:
            bucket = ranks[old]
            bucket.pop(user, None)  # (a blocked user may have been dropped already)
            if not bucket:
                self._ranks &= ~(1 << old)
        if new:
            ranks[new][user] = None
            self._ranks |= 1 << new

    def _hold_user(self, slot: Slot) -> None:
        user = slot.user
        queue = self._users.get(user)
        if queue is None:
            queue = self._users[user] = deque()
        self.blocked.add(user)
        queue.appendleft(slot)
        self._queued += 1
        n = len(queue)
        if n & (n - 1) == 0 and n > 1 and self._ranked:
            self._rerank(user, n - 1, n)

    def _enter(self, user: str) -> None:
        if user not in self._in_rotation and user not in self.blocked and self._users.get(user):
            self._rotation.append(user)
            self._in_rotation.add(user)
