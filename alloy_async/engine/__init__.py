"""The fan-out engine behind ``actions.execute_many``.

``run`` (BulkRun, execute_many) drives workers over a loop-free ``scheduler`` and hands
outcomes on through ``outcomes``; the limits and the write-ahead ``journal`` come from a
``coordinator`` (protocols, and the in-process default).
"""

from .._core import CallStats
from .api import check_caps, check_options, check_rate, execute_many
from .coordinator import (
    CoolDown,
    Coordinator,
    InProcessCoordinator,
    KeyedSlots,
    RateBudget,
)
from .journal import Journal, SqliteJournal, State, read_journal
from .run import BulkRun
from .scheduler import Schedule
from .state import ExecuteOne, Jobs

__all__ = [
    "BulkRun",
    "CallStats",
    "CoolDown",
    "Coordinator",
    "ExecuteOne",
    "InProcessCoordinator",
    "Jobs",
    "Journal",
    "KeyedSlots",
    "RateBudget",
    "Schedule",
    "SqliteJournal",
    "State",
    "check_caps",
    "check_options",
    "check_rate",
    "execute_many",
    "read_journal",
]
