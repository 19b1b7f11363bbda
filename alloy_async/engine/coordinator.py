"""The seams of the engine: what ``execute_many`` needs from limits and the journal.

The engine talks to its limits only through three protocols, bundled with a
:class:`~alloy_async.engine.journal.Journal` as one ``coordinator=``. The default,
:class:`InProcessCoordinator`, holds them in this process; a distributed backend (Redis, issue
12) implements the same protocols over shared state. Each protocol says what must be atomic
and what may be stale, so a second backend can be built from these docstrings alone.

Every method but :meth:`RateBudget.acquire` is called on the event loop and must not block it
(a networked backend keeps a local view and refreshes it in the background, or answers from
the last known state: the engine only needs the guarantees written here).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal, Protocol, runtime_checkable

import attrs

from .._checks import check_number
from ..errors import InvalidRequestError
from ..limiters import AdaptiveLimiter, ConcurrencyLimiter, Key, RateLimiter
from .journal import Journal, SqliteJournal

__all__ = [
    "Configurable",
    "CoolDown",
    "Coordinator",
    "InProcessCoordinator",
    "KeyedSlots",
    "LeasedSlots",
    "RateBudget",
    "SharedJournal",
    "SharedQuarantine",
    "Verdict",
    "check_rate",
]

#: What a shared journal says of a key another run has touched, one of three words.
#: ``"done"``: an outcome is recorded, skip it. ``"claimed"``: a live run holds its intent;
#: skip it, that run reports it. ``"intent"``: the run that wrote the intent is gone; the
#: outcome is unknown and the job is never sent.
Verdict = Literal["done", "claimed", "intent"]


@runtime_checkable
class RateBudget(Protocol):
    """Requests per second shared by everything that sends under it."""

    async def acquire(self) -> Any:
        """Wait for one permit and take it.

        Atomic: two callers never get the same permit, and over any window the permits
        handed out never exceed the budget. Cancellation while waiting must take no permit
        (the engine cancels workers waiting here when a run stops).
        """


@runtime_checkable
class KeyedSlots(Protocol):
    """Concurrency caps: a global one and per key (``("user", id)``, ``("connector", id)``)."""

    def keys_for(self, keys: Mapping[str, str | None]) -> tuple[Key, ...]:
        """The slot keys a job with these ``{"user": ..., "connector": ...}`` values needs."""

    def try_acquire(self, keys: tuple[Key, ...]) -> Key | None:
        """Take a slot for every key at once, or none: the first saturated key, else None.

        Never blocks. Atomic across the keys (all or nothing). A key whose kind is
        ``"user"`` makes the engine drop that user from the rotation until a release of
        that user; any other key parks the job until that key is released. May be stale
        towards refusal (answering "full" when a slot was just freed elsewhere), never
        towards admission (the cap is a promise).
        """

    def release(self, keys: tuple[Key, ...]) -> None:
        """Give back the slots of one earlier successful :meth:`try_acquire`."""


@runtime_checkable
class LeasedSlots(Protocol):
    """Caps shared with other processes (a distributed coordinator's :class:`KeyedSlots`).

    The engine first takes the local slot
    (:meth:`~alloy_async.engine.KeyedSlots.try_acquire`, which keeps this process's own
    count), then, before the rate permit, leases every key where the caps are
    shared. A lease expires unless its holder keeps renewing it, so the slots of a process
    that died come back on their own.
    """

    #: Seconds before a key :meth:`lease` refused is tried again (another process must
    #: release it; no local release will say so).
    retry_after: float

    async def lease(self, keys: tuple[Key, ...]) -> Key | None:
        """Lease one slot of every key at once, or none: the first saturated key, else None.

        Atomic across processes. Raises :class:`~alloy_async.errors.CoordinatorError` when
        the shared state cannot be reached (the engine then sends nothing).
        """

    def unlease(self, keys: tuple[Key, ...]) -> None:
        """Give back the leases of one earlier successful :meth:`lease` (may be queued)."""


@runtime_checkable
class CoolDown(Protocol):
    """The adaptive limit per scope (a connector): 429s cool the scope and shrink its room."""

    def blocked_for(self, scope: str) -> float | None:
        """None when ``scope`` may start a call now, else seconds to wait (inf: until a
        release). May be stale by a fraction of a second."""

    def room(self, scope: str) -> int:
        """How many more calls ``scope`` may start now (-1: unlimited)."""

    def try_acquire(self, scope: str) -> float | None:
        """Count one call in flight in ``scope``; called after :meth:`blocked_for` said None."""

    def release(self, scope: str, *, success: bool | None = True) -> None:
        """A call in ``scope`` ended: grow the room on success, shrink it on failure."""

    def on_throttle(self, scope: str, retry_after: float | None) -> None:
        """The API throttled ``scope`` (429/503): cool it for ``retry_after`` or a default.
        Must reach every process that shares the scope (a throttle seen by one slows all)."""


@runtime_checkable
class SharedJournal(Protocol):
    """A journal that many runs write at once (a distributed coordinator's).

    No lock keeps other runs off it; instead :meth:`claim` takes a key atomically, so two
    runs that read the same key never both send it. The engine calls :meth:`peek` before a
    job takes its slots and rate permit (a resumed run spends nothing on done jobs), and
    :meth:`claim` instead of :meth:`~alloy_async.engine.Journal.intend`.
    """

    async def peek(self, key: str) -> Verdict | None:
        """What other runs have recorded of ``key`` (None: nothing, run it). May be stale."""

    async def claim(self, key: str) -> Verdict | None:
        """Write the intent of ``key`` for this run, atomically, if no run has recorded it;
        None once it is durable and ours, else what is recorded (nothing was written)."""


@runtime_checkable
class SharedQuarantine(Protocol):
    """The credential quarantine of every run sharing a coordinator (a distributed one's).

    A coordinator that has one says so with a ``quarantine`` attribute; without it each run
    keeps its own (``engine/quarantine.py``). Runs in other processes quarantine credentials
    too, so this is a view that other processes change.
    """

    @property
    def bad(self) -> Mapping[str, BaseException]:
        """Credential id -> the error that quarantined it.

        Read for every job, so answered locally. It may be stale by a message's latency (a
        few more jobs of a credential another process just quarantined may be sent; never one
        of a credential known here).
        """

    def add(self, credential_id: str, user_id: str | None, error: BaseException) -> bool:
        """Quarantine ``credential_id`` for every run sharing it, at once in :attr:`bad` (the
        write to other processes may be queued); False when it already was."""


def check_rate(rate: object, burst: object = None) -> None:
    """Refuse a ``rate`` that is neither a number of calls per second above 0 nor a
    :class:`RateBudget`, naming ``rate``; then a ``burst`` that is not an integer >= 1, or
    that goes with no numeric ``rate`` (none, or a rate budget of your own, which has its own
    burst), naming ``burst``."""
    if rate is not None and not isinstance(rate, RateBudget):
        check_number("rate", rate, low=0.0, strict=True)
    if burst is None:
        return
    check_number("burst", burst, low=1, integer=True)
    if rate is None:
        raise InvalidRequestError("burst needs rate= (calls per second)", field="burst")
    if not isinstance(rate, (int, float)):
        raise InvalidRequestError(
            "burst goes with a numeric rate; a rate budget of your own sets its own burst",
            field="burst",
        )


@runtime_checkable
class Configurable(Protocol):
    """A coordinator that takes its limits from ``execute_many``'s own arguments.

    ``execute_many(jobs, rate=120, per_user=2, coordinator=c)`` calls
    ``c.configure(concurrency=..., per_user=..., per_connector=..., rate=...)`` and runs
    with what it returns (a coordinator without this method refuses those arguments). With
    ``burst=``, ``burst`` is passed too: a ``configure`` without that keyword refuses it.
    """

    def configure(
        self,
        *,
        concurrency: int,
        per_user: int | None,
        per_connector: int | None,
        rate: float | None,
        burst: int | None = None,
    ) -> Coordinator:
        """The coordinator of one run with these limits (``burst``: the rate's, None for the
        budget's default)."""


@runtime_checkable
class Coordinator(Protocol):
    """What ``execute_many(coordinator=...)`` takes: the limits and the journal of a run."""

    @property
    def slots(self) -> KeyedSlots:
        """The concurrency caps."""

    @property
    def rate(self) -> RateBudget | None:
        """The rate budget, or None."""

    @property
    def cooldown(self) -> CoolDown | None:
        """The adaptive cool-down per scope, or None."""

    @property
    def journal(self) -> Journal | None:
        """The write-ahead journal, or None."""


@attrs.define
class InProcessCoordinator:
    """The default coordinator: limiters and an optional journal in this process.

    ``InProcessCoordinator.build(...)`` makes one from ``execute_many``'s arguments; build one
    yourself to share limiters between runs in one process.

    Attributes:
        slots: the concurrency caps (a :class:`~alloy_async.ConcurrencyLimiter` by default).
        rate: the rate budget (a :class:`~alloy_async.RateLimiter` by default), or None.
        cooldown: the adaptive limit per scope (a :class:`~alloy_async.AdaptiveLimiter` by
            default), or None.
        journal: the write-ahead journal (a :class:`~alloy_async.SqliteJournal` by default),
            or None.
    """

    slots: KeyedSlots
    rate: RateBudget | None = None
    cooldown: CoolDown | None = None
    journal: Journal | None = None

    @classmethod
    def build(
        cls,
        *,
        concurrency: int,
        per_user: int | None = None,
        per_connector: int | None = None,
        rate: float | RateBudget | None = None,
        adaptive: CoolDown | bool = True,
        checkpoint: str | os.PathLike[str] | Journal | None = None,
        burst: int | None = None,
    ) -> InProcessCoordinator:
        """The limits ``execute_many`` documents, from its arguments (``burst`` goes with a
        numeric ``rate``: refused, naming it, otherwise)."""
        check_rate(rate, burst)
        caps = {"user": per_user, "connector": per_connector}
        slots = ConcurrencyLimiter(concurrency, per_key={k: v for k, v in caps.items() if v})
        budget = RateLimiter(rate, burst=burst) if isinstance(rate, (int, float)) else rate
        cooldown = AdaptiveLimiter(concurrency) if adaptive is True else (adaptive or None)
        journal = (
            None
            if checkpoint is None
            else checkpoint
            if isinstance(checkpoint, Journal)
            else SqliteJournal(checkpoint)
        )
        return cls(slots=slots, rate=budget, cooldown=cooldown, journal=journal)
