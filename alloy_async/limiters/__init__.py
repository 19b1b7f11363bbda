"""Limiters for fan-out: concurrency (global and keyed), rate, and adaptive (AIMD per scope).

* :class:`ConcurrencyLimiter` — a global cap plus caps per key kind (``{"user": 4,
  "connector": 8}``); one acquisition takes several keys at once. Keyed state exists only
  while a key is held or waited on, so a million distinct users cost nothing once idle.
* :class:`RateLimiter` — requests per second with a burst: a moving window (at most ``burst``
  permits in any ``burst / rate`` seconds), on the event loop's clock, in a few lines of its
  own. Importing it changes no other package: no dependency is patched or subclassed.
* :class:`AdaptiveLimiter` — per scope: a 429 / ``Retry-After`` cools the whole scope and
  halves its concurrency; successes then raise it back step by step. ``on_throttle`` is a
  ``ThrottleListener`` for the request pipeline.

All three are single-loop objects (no thread safety) and offer ``statistics()`` snapshots (the
``*Statistics`` classes, exported here). A bad argument raises
:class:`~alloy_async.errors.InvalidRequestError` (an ``AlloyError`` and a ``ValueError``) whose
``field`` names it.

The package is named ``limiters`` so that it never shadows the third-party ``limits`` package.
"""

from __future__ import annotations

from .adaptive import AdaptiveLimiter, AdaptiveStatistics, ScopeStatistics
from .concurrency import GLOBAL_KEY, ConcurrencyLimiter, ConcurrencyStatistics, Key
from .rate import RateLimiter, RateStatistics

__all__ = [
    "GLOBAL_KEY",
    "AdaptiveLimiter",
    "AdaptiveStatistics",
    "ConcurrencyLimiter",
    "ConcurrencyStatistics",
    "Key",
    "RateLimiter",
    "RateStatistics",
    "ScopeStatistics",
]
