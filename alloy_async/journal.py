"""Moved to :mod:`alloy_async.engine.journal` (kept: README and 0.1 code import it here)."""

from .engine.journal import Journal, SqliteJournal, State, read_journal

__all__ = ["Journal", "SqliteJournal", "State", "read_journal"]
