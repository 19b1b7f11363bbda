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
    "redact_url",
    "repr_extra",
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


def repr_extra(value: Mapping[str, Any]) -> str:
    """Repr of an ``extra`` mapping with the values of secret-looking keys masked."""
    if not value:
        return "{}"
    shown = {k: (_MASK if _is_secret(k) else v) for k, v in value.items()}
    return repr(shown)


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
