"""RetryPolicy: what is retried, how long to wait, and what is never retried.

This module decides and does no I/O: :func:`decide` turns one attempt's outcome (an answer, or
the transport's error) into what follows: the response to return, the error to raise, or a
:class:`Retry` after some seconds. The retry loop that acts on it is ``Requester.send``
(``_core.py``). The waits come from :mod:`backoff`'s public wait generators (``expo`` with
``full_jitter``); ``Retry-After`` is read by ``_wire.parse_retry_after`` (re-exported here).

Side-effect rules (DESIGN.md section 5):

* Reads (GET, and the idempotent PUT / DELETE) are retried on connection errors, timeouts,
  408, 429 and every transient 5xx: 500, 502, 503, 504 and the 520-524 a CDN such as
  Cloudflare answers when the origin failed, refused, timed out or was unreachable. 501, 505 and
  the like are not transient (the same request gets the same answer) and are raised at once.
* A POST (``actions.execute``, ``users.create``, ``credentials.create``) is retried only when
  the server cannot have acted: the connection could not be made or the request was not
  written, or the answer was 429 or 503. After the request was written and no answer came it
  is never re-sent (:class:`~alloy_async.errors.OutcomeUnknownError`); a 500/502/504 is raised.
* ``retry_unsafe=True`` is the opt-in for callers who know their action is idempotent.

A bad argument raises :class:`~alloy_async.errors.InvalidRequestError` (an ``AlloyError`` and a
``ValueError``) whose ``field`` names it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any

import attrs
import backoff

from ._checks import check_number
from ._http import Request, Response

# ``parse_retry_after`` is part of the sans-I/O wire layer; this name stays for importers.
from ._wire import error_from_response, parse_retry_after
from .errors import (
    AlloyError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    InvalidRequestError,
    OutcomeUnknownError,
    RateLimitError,
)

__all__ = ["RetryPolicy", "parse_retry_after"]


#: Statuses retried for idempotent requests: 408, 429 and the transient 5xx, CDN ones included
#: (Cloudflare's 520 unknown error, 521 origin down, 522 connection timed out, 523 origin
#: unreachable, 524 origin timeout).
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524})
#: Statuses that prove the server did not act: even a POST is retried on them.
_UNSAFE_RETRY_STATUSES = frozenset({429, 503})
#: 5xx answers that say the request was not handled: 503, and a CDN that could not reach the
#: origin (521 down, 522 connect timeout, 523 unreachable). Any other 5xx may have acted.
_NOT_HANDLED_5XX = frozenset({503, 521, 522, 523})


def _number(
    **rules: Any,
) -> Callable[[object, attrs.Attribute[Any], Any], None]:
    """An attrs validator from the SDK's one number check (``_checks.check_number``)."""

    def check(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        check_number(attribute.name, value, **rules)

    return check


_non_negative_count = _number(low=0, integer=True)
_deadline = _number(low=0, strict=True, optional=True)


def _non_negative(*, finite: bool) -> Callable[[object, attrs.Attribute[Any], Any], None]:
    return _number(low=0, finite=finite)


def _flag(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, bool):
        raise InvalidRequestError(
            f"{attribute.name} must be True or False, got {value!r}", field=attribute.name
        )


def _statuses(name: str, value: Iterable[int]) -> frozenset[int]:
    try:
        statuses = frozenset(value)
    except TypeError:
        statuses = None
    if statuses is None or not all(
        isinstance(s, int) and not isinstance(s, bool) and 400 <= s <= 599 for s in statuses
    ):
        raise InvalidRequestError(
            f"{name} must be a set of HTTP error statuses (integers 400-599), got {value!r}",
            field=name,
        )
    return statuses


def _retry_statuses(value: Iterable[int]) -> frozenset[int]:
    return _statuses("retry_statuses", value)


def _unsafe_retry_statuses(value: Iterable[int]) -> frozenset[int]:
    return _statuses("unsafe_retry_statuses", value)


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How a call is retried.

    Attributes:
        max_retries: retries after the first attempt (0 disables retrying).
        backoff_base: the first backoff wait, in seconds; it doubles each retry.
        backoff_max: the largest backoff wait before jitter.
        max_retry_after: the longest ``Retry-After`` the SDK will wait; a longer one raises
            :class:`~alloy_async.errors.RateLimitError` at once, with ``retry_after`` set.
        deadline: seconds for the whole call (attempts and waits together), or None.
        retry_statuses: statuses that are retried for idempotent requests: 408, 429, 500,
            502, 503, 504 and 520-524 (a CDN's "origin failed / down / timed out /
            unreachable").
        unsafe_retry_statuses: statuses that prove the server did not act, so that even a
            POST is retried (429 and 503). A POST is retried on a status only when it is in
            both sets.
        retry_unsafe: retry non-idempotent requests as if they were idempotent. Only for
            actions the caller knows are safe to repeat.
    """

    max_retries: int = attrs.field(default=3, validator=_non_negative_count)
    backoff_base: float = attrs.field(default=0.5, validator=_non_negative(finite=True))
    backoff_max: float = attrs.field(default=8.0, validator=_non_negative(finite=False))
    max_retry_after: float = attrs.field(default=60.0, validator=_non_negative(finite=False))
    deadline: float | None = attrs.field(default=None, validator=_deadline)
    retry_statuses: frozenset[int] = attrs.field(default=_RETRY_STATUSES, converter=_retry_statuses)
    unsafe_retry_statuses: frozenset[int] = attrs.field(
        default=_UNSAFE_RETRY_STATUSES, converter=_unsafe_retry_statuses
    )
    retry_unsafe: bool = attrs.field(default=False, validator=_flag)

    def backoff_wait(self, retry_number: int) -> float:
        """The jittered wait before retry ``retry_number`` (1-based), in seconds."""
        if isinstance(retry_number, bool) or not isinstance(retry_number, int) or retry_number < 1:
            raise InvalidRequestError(
                f"retry_number must be an integer >= 1, got {retry_number!r}",
                field="retry_number",
            )
        gen = backoff.expo(base=2, factor=self.backoff_base, max_value=self.backoff_max)
        next(gen)  # backoff primes its generators with one None send
        raw = next(itertools.islice(gen, retry_number - 1, None))
        return float(backoff.full_jitter(raw))

    def is_retryable(self, error: AlloyError, *, idempotent: bool) -> bool:
        """Whether ``error`` may be retried at all, ignoring the retry budget."""
        if getattr(error, "retryable", True) is False:  # TLS, proxy auth: no retry can fix it
            return False
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


def not_handled(status: int) -> bool:
    """The server said it did not act on the request: 429 or 503, the answers after which a
    POST may be sent again (a CDN's 521-523 count as "may have acted" for a POST)."""
    return status == 429 or status == 503


def may_have_acted(outcome: Response | AlloyError) -> bool:
    """Whether the attempt that ended in ``outcome`` may have reached the server and acted:
    sent, then no answer; or a 5xx that does not say it was not handled."""
    if isinstance(outcome, Response):
        return outcome.status >= 500 and outcome.status not in _NOT_HANDLED_5XX
    return isinstance(outcome, OutcomeUnknownError) or (
        isinstance(outcome, APITimeoutError) and outcome.sent
    )


@attrs.frozen(slots=True)
class Attempt:
    """What :func:`decide` knows of a call after one of its attempts."""

    request: Request
    #: 1 for the first attempt, 2 for the first retry, ...
    number: int
    #: Whether the request may be sent again after it may have acted (GET, PUT, DELETE).
    idempotent: bool
    #: This attempt or an earlier one may have acted (:func:`may_have_acted`).
    maybe_acted: bool = False
    #: Seconds left before the call's deadline (None: the call has none).
    remaining: float | None = None


@attrs.frozen(slots=True)
class Retry:
    """Attempt again after ``delay`` seconds; ``reason`` is the failed attempt's error."""

    delay: float
    reason: AlloyError


#: What follows an attempt: return the response, raise the error, or :class:`Retry`.
Decision = Response | AlloyError | Retry


def decide(policy: RetryPolicy, attempt: Attempt, outcome: Response | AlloyError) -> Decision:
    """What follows an attempt that ended in ``outcome`` (the server's answer, or the error of
    an attempt that got none), by ``policy``'s rules.

    No I/O and no event loop: besides its arguments it reads only the backoff's random jitter
    and, for a ``Retry-After`` given as a date, the wall clock.
    """
    request = attempt.request
    retry_after = None
    if isinstance(outcome, Response):
        if outcome.status < 300:
            return outcome
        if outcome.status == 404 and attempt.maybe_acted and request.method == "DELETE":
            # Retried after an attempt that may have deleted it: gone, as the caller asked.
            # The call succeeds as 204 No Content (the 404's headers kept, its body dropped).
            return Response(204, outcome.headers, b"")
        error: AlloyError = error_from_response(outcome, request)
        retry_after = parse_retry_after(outcome.headers)
    else:
        error = outcome
    if not policy.is_retryable(error, idempotent=attempt.idempotent):
        return _final_error(policy, attempt, error)
    if isinstance(error, RateLimitError) and error.retry_after is not None:
        retry_after = error.retry_after
    if retry_after is not None and retry_after > policy.max_retry_after:
        return error  # RateLimitError carries retry_after for the caller to schedule
    if attempt.number > policy.max_retries:
        return _final_error(policy, attempt, error)
    delay = retry_after if retry_after is not None else policy.backoff_wait(attempt.number)
    if attempt.remaining is not None and delay >= attempt.remaining:
        return _final_error(policy, attempt, error)
    return Retry(delay, error)


def _final_error(policy: RetryPolicy, attempt: Attempt, error: AlloyError) -> AlloyError:
    """The error the caller sees: a sent-then-silent POST becomes OutcomeUnknownError."""
    safe = attempt.idempotent or policy.retry_unsafe
    if isinstance(error, APITimeoutError) and error.sent and not safe:
        unknown = OutcomeUnknownError(
            "timed out after the request was sent; the action may have run",
            method=error.method,
            path=error.path,
        )
        unknown.__cause__ = error
        return unknown
    return error


def deadline_error(
    policy: RetryPolicy, request: Request, *, idempotent: bool, sent: bool
) -> AlloyError:
    """The error of a call whose deadline ran out; ``sent``: the request may have been sent
    (then a non-idempotent call is :class:`~alloy_async.errors.OutcomeUnknownError`)."""
    deadline = policy.deadline
    if sent and not (idempotent or policy.retry_unsafe):
        return OutcomeUnknownError(
            f"deadline of {deadline:g} s ran out after the request was sent; "
            "the action may have run",
            method=request.method,
            path=request.path,
        )
    return APITimeoutError(
        f"deadline of {deadline:g} s ran out", method=request.method, path=request.path, sent=sent
    )
