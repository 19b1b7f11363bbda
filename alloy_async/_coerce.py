"""Scalar coercion for :mod:`alloy_async._convert`: JSON values to the types models declare.

Each ``_to_*`` function returns None when the value has no sensible meaning as that type (the
converter then drops it, or raises for a required field). Pure functions, no cattrs here.
"""

from __future__ import annotations

import re
import types
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Union, get_args, get_origin

# What _convert.py uses.
__all__ = ["_COERCERS", "_coercer_for", "_is_datetime", "_optional_arg", "_to_bool", "_to_datetime"]


def _to_str(value: Any) -> str | None:
    if type(value) is str:
        return value
    # Ids sometimes arrive as numbers; a bool or an object is not a string in any sense.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def _to_int(value: Any) -> int | None:
    if type(value) is int:
        return value
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            try:
                number = float(value)
            except ValueError:
                return None
            return int(number) if number.is_integer() else None
    return None


_TRUE = frozenset({"true", "1", "yes", "y", "on"})
_FALSE = frozenset({"false", "0", "no", "n", "off"})


def _to_bool(value: Any) -> bool | None:
    if type(value) is bool:
        return value
    if type(value) is int and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    return None


_FRACTION = re.compile(r"\.(\d+)")
_COMPACT_OFFSET = re.compile(r"([+-]\d{2})(\d{2})$")


def _parse_iso(text: str) -> datetime:
    text = text.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        # Python 3.10 accepts only 3 or 6 fraction digits and only "+HH:MM" offsets.
        text = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], text, count=1)
        if "T" in text or " " in text:
            text = _COMPACT_OFFSET.sub(r"\1:\2", text)
        return datetime.fromisoformat(text)


def _to_datetime(value: Any) -> datetime | None:
    try:
        if isinstance(value, datetime):
            parsed = value
        elif isinstance(value, str) and value:
            parsed = _parse_iso(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            # Epoch seconds, or milliseconds when too large to be seconds.
            seconds = value / 1000 if abs(value) > 1e11 else value
            return datetime.fromtimestamp(seconds, tz=UTC)
        else:
            return None
    except (ValueError, OverflowError, OSError):
        return None
    # A timestamp without an offset is taken as UTC, so every datetime we return is aware.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _to_mapping(value: Any) -> Any:
    return value if isinstance(value, dict) else None


_COERCERS: dict[Any, Callable[[Any], Any]] = {
    str: _to_str,
    int: _to_int,
    bool: _to_bool,
    datetime: _to_datetime,
}


def _optional_arg(tp: Any) -> Any:
    """``X`` for ``X | None`` (or ``Optional[X]``), else None."""
    if get_origin(tp) in (Union, types.UnionType):
        args = get_args(tp)
        if len(args) == 2 and type(None) in args:
            return args[0] if args[1] is type(None) else args[1]
    return None


def _coercer_for(tp: Any) -> Callable[[Any], Any] | None:
    if tp in _COERCERS:
        return _COERCERS[tp]
    if get_origin(tp) is Mapping:
        return _to_mapping
    return None


def _is_datetime(tp: Any) -> bool:
    return tp is datetime or _optional_arg(tp) is datetime
