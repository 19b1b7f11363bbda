"""Shared building blocks of the models: the read-only ``extra`` field and secret-safe reprs.

Models import only attrs and the standard library; turning JSON into models is the job of
``alloy_async._convert``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import attrs

__all__ = [
    "EMPTY",
    "SECRET_KEYS",
    "extra_field",
    "freeze",
    "mask_secrets",
    "non_finite_path",
    "redact_url",
    "repr_extra",
    "repr_masked",
]

EMPTY: Mapping[str, Any] = MappingProxyType({})
"""The shared, empty, read-only mapping every model's ``extra`` starts as."""

SECRET_KEYS = frozenset(
    {
        "token",
        "accesstoken",
        "refreshtoken",
        "idtoken",
        "apikey",
        "secret",
        "clientsecret",
        "password",
        "authorization",
        "xamzsignature",
        "xamzcredential",
        "xamzsecuritytoken",
        "signature",
        "xapikey",
        "privatekey",
        "sessiontoken",
        "cookie",
        "setcookie",
        "proxyauthorization",
        "xalloyusertoken",
    }
)
"""Key names (lower-case, without ``_`` or ``-``) whose values a repr must never show."""

_MASK = "***"


def _is_secret(key: object) -> bool:
    return isinstance(key, str) and key.lower().replace("_", "").replace("-", "") in SECRET_KEYS


def freeze(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """Return ``value`` as a read-only mapping (``None`` becomes the shared empty one)."""
    if type(value) is MappingProxyType:
        return value
    if not value:
        return EMPTY
    return MappingProxyType(dict(value))


#: How deep :func:`mask_secrets` looks; anything deeper is shown as ``...`` (never in the clear).
MASK_DEPTH = 32


class _Elided:
    """Stands for what a masked repr does not show: a cycle, or nesting past MASK_DEPTH."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "..."


_ELIDED = _Elided()


def mask_secrets(value: Any) -> Any:
    """A copy of a JSON-like value for display, with the values of secret-looking keys masked
    at any depth (mappings inside lists inside mappings...).

    Mappings become dicts, lists and tuples keep their type, anything else is returned as is.
    A container met again inside itself (a cycle), or nested deeper than ``MASK_DEPTH``, is
    shown as ``...``. Only for reprs, logs and messages: never on the request path.
    """
    return _mask(value, 0, set())


def _mask(value: Any, depth: int, active: set[int]) -> Any:
    is_map = isinstance(value, Mapping)
    if not is_map and not isinstance(value, (list, tuple)):
        return value
    if depth >= MASK_DEPTH or id(value) in active:
        return _ELIDED
    active.add(id(value))
    try:
        if is_map:
            return {
                k: (_MASK if _is_secret(k) else _mask(v, depth + 1, active))
                for k, v in value.items()
            }
        items = [_mask(v, depth + 1, active) for v in value]
        return items if isinstance(value, list) else tuple(items)
    finally:
        active.discard(id(value))


def repr_masked(value: Any) -> str:
    """``repr(value)`` with the values of secret-looking keys masked at any depth."""
    return repr(mask_secrets(value))


def repr_extra(value: Mapping[str, Any]) -> str:
    """Repr of an ``extra`` mapping with the values of secret-looking keys masked (at any
    depth: ``{'auth': {'accessToken': ***}}``)."""
    if not value:
        return "{}"
    return repr(mask_secrets(value))


_INF = float("inf")
_SCALARS = frozenset({str, int, bool, type(None)})
_CONTAINERS = frozenset({dict, list, tuple})


def non_finite_path(value: Any, root: str) -> tuple[str, float] | None:
    """The path (``root.items[3].price``) and value of the first NaN or +-Infinity inside
    ``value``, or None.

    JSON has no such numbers and orjson writes them as ``null``: callers refuse them instead.
    Looks into dicts, lists, tuples and dataclasses (what orjson encodes as containers).
    """
    if not _has_non_finite(value):
        return None
    path: list[object] = []
    found = _find_non_finite(value, path)
    if found is None:
        return None
    text = root
    for step in path:
        if type(step) is int:
            text += f"[{step}]"
        elif isinstance(step, str) and step.isidentifier():
            text += f".{step}" if text else step
        else:
            text += f"[{step!r}]"
    return text, found


def _has_non_finite(value: Any) -> bool:
    """Whether ``value`` holds a NaN or +-Infinity: the fast scan, without paths."""
    if type(value) not in _CONTAINERS:
        return _find_non_finite(value, []) is not None
    stack: list[Any] = [value]
    pop, push = stack.pop, stack.append
    while stack:
        node = pop()
        for item in node.values() if type(node) is dict else node:
            kind = type(item)
            if kind in _SCALARS:
                continue
            if kind is float:
                if item - item != 0.0:  # inf - inf and nan - nan are nan
                    return True
            elif kind in _CONTAINERS:
                push(item)
            elif _find_non_finite(item, []) is not None:  # subclasses, dataclasses
                return True
    return False


def _find_non_finite(value: Any, path: list[object]) -> float | None:
    if type(value) in _SCALARS:
        return None
    if isinstance(value, float):
        return value if value != value or value in (_INF, -_INF) else None
    if isinstance(value, dict):
        pairs: Any = value.items()
    elif isinstance(value, (list, tuple)):
        pairs = enumerate(value)
    else:
        fields = getattr(type(value), "__dataclass_fields__", None)
        if not fields:
            return None
        pairs = ((name, getattr(value, name, None)) for name in fields)
    for key, item in pairs:
        if type(item) in _SCALARS:
            continue
        path.append(key)
        found = _find_non_finite(item, path)
        if found is not None:
            return found
        path.pop()
    return None


def redact_url(value: str | None) -> str:
    """Repr of a URL with every query value, the fragment and any password masked.

    OAuth and presigned URLs carry tokens and signatures in their query string; the keys stay
    visible so a log still says what kind of URL it was.
    """
    if value is None:
        return "None"
    url, _, fragment = value.partition("#")
    base, sep, query = url.partition("?")
    scheme, sep_s, rest = base.partition("://")
    if sep_s:
        host, slash, path = rest.partition("/")
        if "@" in host:
            host = _MASK + "@" + host.rpartition("@")[2]
        base = f"{scheme}://{host}{slash}{path}"
    if sep:
        parts = []
        for piece in query.split("&"):
            key, eq, _ = piece.partition("=")
            parts.append(f"{key}={_MASK}" if eq else key)
        base = f"{base}?{'&'.join(parts)}"
    if fragment:
        base = f"{base}#{_MASK}"
    return repr(base)


def extra_field() -> Any:
    """The ``extra`` field: unknown response keys, read-only, left out of hashing."""
    return attrs.field(default=EMPTY, converter=freeze, repr=repr_extra, hash=False)


def redact_header_values(value: Mapping[str, Any] | None) -> str:
    """Repr of a header mapping with every value masked (they carry third-party credentials);
    the names stay visible."""
    if value is None:
        return "None"
    return "{" + ", ".join(f"{name!r}: {_MASK!r}" for name in value) + "}"
