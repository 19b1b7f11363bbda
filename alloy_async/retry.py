"""RetryPolicy: what is retried, how long to wait, and what is never retried.

The waits come from :mod:`backoff` (``expo`` with ``full_jitter``) and the retry loop itself is
``backoff.on_exception`` (see ``_core.py``); this module only decides.

Side-effect rules (DESIGN.md section 5):

* Reads (GET, and the idempotent PUT / DELETE) are retried on connection errors, timeouts,
  408, 429 and 5xx.
* A POST (``actions.execute``, ``users.create``, ``credentials.create``) is retried only when
  the server cannot have acted: the connection could not be made or the request was not
  written, or the answer was 429 or 503. After the request was written and no answer came it
  is never re-sent (:class:`~alloy_async.errors.OutcomeUnknownError`); a 500/502/504 is raised.
* ``retry_unsafe=True`` is the opt-in for callers who know their action is idempotent.
"""

from __future__ import annotations

import email.utils
import itertools
import time
from collections.abc import Mapping
from typing import Any

import attrs
import backoff

from .errors import (
    AlloyError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    OutcomeUnknownError,
)

__all__ = ["RetryPolicy", "parse_retry_after"]


def _positive(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


def _optional_positive(_: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"{attribute.name} must be > 0 or None, got {value!r}")


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How a call is retried.

    Args:
        max_retries: retries after the first attempt (0 disables retrying).
        backoff_base: the first backoff wait, in seconds; it doubles each retry.
        backoff_max: the largest backoff wait before jitter.
        max_retry_after: the longest ``Retry-After`` the SDK will wait; a longer one raises
            :class:`~alloy_async.errors.RateLimitError` at once, with ``retry_after`` set.
        deadline: seconds for the whole call (attempts and waits together), or None.
        retry_statuses: statuses that are retried for idempotent requests.
        unsafe_retry_statuses: statuses that prove the server did not act, so that even a
            POST is retried (429 and 503).
        retry_unsafe: retry non-idempotent requests as if they were idempotent. Only for
            actions the caller knows are safe to repeat.
    """

    max_retries: int = attrs.field(default=3, validator=_positive)
    backoff_base: float = attrs.field(default=0.5, validator=_positive)
    backoff_max: float = attrs.field(default=8.0, validator=_positive)
    max_retry_after: float = attrs.field(default=60.0, validator=_positive)
    deadline: float | None = attrs.field(default=None, validator=_optional_positive)
    retry_statuses: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504})
    unsafe_retry_statuses: frozenset[int] = frozenset({429, 503})
    retry_unsafe: bool = False

    def backoff_wait(self, retry_number: int) -> float:
        """The jittered wait before retry ``retry_number`` (1-based), in seconds."""
        gen = backoff.expo(base=2, factor=self.backoff_base, max_value=self.backoff_max)
        next(gen)  # backoff primes its generators with one None send
        raw = next(itertools.islice(gen, retry_number - 1, None))
        return float(backoff.full_jitter(raw))

    def is_retryable(self, error: AlloyError, *, idempotent: bool) -> bool:
        """Whether ``error`` may be retried at all, ignoring the retry budget."""
        safe = idempotent or self.retry_unsafe
        if isinstance(error, APIStatusError):
            if error.status not in self.retry_statuses:
                return False
            return safe or error.status in self.unsafe_retry_statuses
        if isinstance(error, OutcomeUnknownError):
            return safe
        if isinstance(error, APITimeoutError):
            return safe or not error.sent
        return isinstance(error, APIConnectionError)


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date).

    Returns None when there is no usable header. A date in the past gives 0.
    """
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000.0
        except ValueError:
            value = -1.0
        if value >= 0 and value == value and value != float("inf"):
            return value
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        value = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        now = time.time() if now is None else now
        try:
            return max(0.0, when.timestamp() - now)
        except (OverflowError, ValueError, OSError):
            return None
    if value != value or value < 0 or value == float("inf"):
        return None
    return value
