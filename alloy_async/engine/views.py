"""A run's read-only views: its limits, its journal and its report (``BulkRun`` has them)."""

from __future__ import annotations

import asyncio

from ..models.bulk import BulkReport
from .admission import Admission
from .coordinator import CoolDown, Coordinator, KeyedSlots, RateBudget
from .journal import Journal
from .life import JobLife
from .outcomes import Tally
from .state import Flow

__all__ = ["RunViews"]


class RunViews:
    """What a run shows of itself; the state comes from :class:`~alloy_async.engine.BulkRun`."""

    _c: Coordinator
    _admission: Admission
    _flow: Flow
    _tally: Tally
    _life: JobLife

    @property
    def limiter(self) -> KeyedSlots:
        """The concurrency caps (``statistics()`` on the in-process one)."""
        return self._c.slots

    @property
    def rate(self) -> RateBudget | None:
        """The rate budget, if any."""
        return self._c.rate

    @property
    def adaptive(self) -> CoolDown | None:
        """The adaptive limit per scope, if any."""
        return self._c.cooldown

    @property
    def journal(self) -> Journal | None:
        """The run's write-ahead journal (``checkpoint=``), or None."""
        return self._admission.journal

    @property
    def report(self) -> BulkReport:
        """The counts so far (final once iteration has ended or the run is closed)."""
        flow = self._flow
        if flow.t0 is None:
            wall = 0.0
        else:
            end = flow.t_end if flow.t_end is not None else asyncio.get_running_loop().time()
            wall = end - flow.t0
        return self._tally.report(
            waiting=flow.buffered if flow.stopping else 0,
            wall_time=wall,
            quarantined=self._life.quarantine.refused,
            quarantined_credentials=tuple(self._life.quarantine.credentials),
        )
