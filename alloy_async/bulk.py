"""Moved to :mod:`alloy_async.engine` (kept so that 0.1 imports keep working)."""

from .engine import BulkRun, ExecuteOne, check_caps, execute_many

__all__ = ["BulkRun", "ExecuteOne", "check_caps", "execute_many"]
