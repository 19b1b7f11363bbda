"""The steps a distributed coordinator adds before a job is sent: peek, lease, claim.

With the in-process coordinator these are no-ops (its journal is locked to one run and its
slots are this process's own). With a shared one (``alloy_async.distributed``) a job first
asks the journal whether another run has recorded its key (a resumed run spends no slot and
no rate permit on done jobs), then leases its shared caps, and finally claims its key
atomically instead of writing a plain intent: two runs that read the same key never both
send it.
"""

from __future__ import annotations

from typing import Any

from ..limiters import Key
from .coordinator import KeyedSlots, LeasedSlots, SharedJournal, Verdict
from .journal import Journal
from .scheduler import Slot

__all__ = ["SharedGate"]


class SharedGate:
    """The shared steps of one run, or nothing (``active`` is False) for a local coordinator."""

    def __init__(self, slots: KeyedSlots, journal: Journal | None, *, rate: bool) -> None:
        # Any: mypy cannot intersect the protocols (it would call the shared branch unreachable)
        either: Any = slots
        self.leased: LeasedSlots | None = either if isinstance(either, LeasedSlots) else None
        either = journal
        self.journal: SharedJournal | None = either if isinstance(either, SharedJournal) else None
        self.active = self.leased is not None or self.journal is not None
        self._rate = rate

    async def before(self, slot: Slot) -> Verdict | Key | None:
        """None when ``slot`` may go on; else what another run recorded of its key, or the
        shared key that is at its cap (the slot holds no lease then)."""
        # Peek only when a lease or a rate permit would come before the claim: the claim
        # itself answers the same question, in the same round trip.
        costly = self._rate or (self.leased is not None and bool(slot.keys))
        if costly and self.journal is not None and slot.key is not None:
            verdict = await self.journal.peek(slot.key)
            if verdict is not None:
                return verdict
        if self.leased is not None and slot.keys:
            blocker = await self.leased.lease(slot.keys)
            if blocker is not None:
                return blocker
            slot.leased = True
        return None

    async def claim(self, journal: Journal, key: str) -> Verdict | None:
        """Write ``key``'s intent (atomically when shared); None once it is ours."""
        if self.journal is not None:
            return await self.journal.claim(key)
        await journal.intend(key)
        return None

    def release(self, slot: Slot) -> None:
        """Give back ``slot``'s leases, if it holds any."""
        if slot.leased and self.leased is not None:
            slot.leased = False
            self.leased.unlease(slot.keys)
