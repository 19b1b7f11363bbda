"""The escape hatch for extra keys a schema allows and a TypedDict cannot declare."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

__all__ = ["with_extra"]

T = TypeVar("T", bound=Mapping[str, object])


def with_extra(value: T, extra: Mapping[str, Any]) -> T:
    """``value`` with ``extra``'s keys added, typed as ``value``.

    A generated TypedDict lists the keys the schema declares, and mypy refuses any other key
    (a typo is caught). Where the schema allows more (``additionalProperties``: the
    TypedDict's docstring says so and gives the values' type), build the declared part with
    the TypedDict (so mypy still checks it) and add the others::

        custom=with_extra(CreateContactBodyCustom({"source": "web"}), {"utm_campaign": 3})

    (A bare dict literal as ``value`` is inferred as ``dict[str, str]``, not the TypedDict.)

    Raises:
        ValueError: ``extra`` repeats a key of ``value`` (set declared keys in ``value``,
            where their types are checked).
    """
    repeated = sorted(set(value) & set(extra))
    if repeated:
        raise ValueError(f"with_extra: keys given in both parts: {', '.join(repeated)}")
    return cast(T, {**value, **extra})
