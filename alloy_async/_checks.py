"""Argument checks shared by the whole SDK: one number validator, one clock check.

A bad argument raises :class:`~alloy_async.errors.InvalidRequestError` (an ``AlloyError`` and a
``ValueError``) whose ``field`` names it.
"""

from __future__ import annotations

import math
import numbers

from .errors import InvalidRequestError

__all__ = ["check_clock", "check_number"]


def check_number(
    name: str,
    value: object,
    *,
    low: float,
    strict: bool = False,
    integer: bool = False,
    finite: bool = True,
    optional: bool = False,
    field: str | None = None,
) -> None:
    """Raise an :class:`InvalidRequestError` naming ``name`` (or ``field``) unless ``value`` is a
    real number >= ``low`` (> when ``strict``), not NaN, nor infinite when ``finite``.

    ``integer``: it must be an ``int`` (bool is refused everywhere). ``optional``: None passes.
    """
    if value is None and optional:
        return
    number: float = math.nan  # a wrong type fails as NaN does
    if isinstance(value, bool):
        pass
    elif integer and isinstance(value, int):
        number = value  # kept an int: compared exactly, never converted (no overflow)
    elif not integer and isinstance(value, numbers.Real):
        number = float(value)
    if (
        number != number  # NaN; unlike math.isnan, never converts an int
        or (finite and number in (math.inf, -math.inf))
        or number < low
        or (strict and number == low)
    ):
        bound = f"> {low:g}" if strict else f">= {low:g}"
        kind = "an integer" if integer else "a finite number" if finite else "a number"
        hint = " or None" if optional else ""
        raise InvalidRequestError(
            f"{name} must be {kind} {bound}{hint}, got {value!r}", field=field or name
        )


def check_clock(clock: object) -> None:
    """Raise an :class:`InvalidRequestError` unless ``clock`` is None or callable."""
    if clock is not None and not callable(clock):
        raise InvalidRequestError(
            f"clock must be a callable returning seconds, got {clock!r}", field="clock"
        )
