"""The escape hatches (``extra_headers``, ``extra_query``, ``extra_body``) of paginators."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._http import Timeout, check_header
from ._base import check_mapping, extras

__all__ = ["checked_extras"]


def checked_extras(
    extra_headers: Mapping[str, str] | None,
    extra_query: Mapping[str, Any] | None,
    extra_body: Mapping[str, Any] | None,
    timeout: float | Timeout | None = None,
) -> dict[str, Any]:
    """The escape hatches (and ``timeout``) of a paginator factory, copied and checked now (its
    requests are built later, while iterating), so a bad one is refused by the call that was
    given it."""
    headers = check_mapping("extra_headers", extra_headers)
    for name, value in (headers or {}).items():
        check_header(name, value)  # the same error a request built with it would raise
    return extras(
        headers,
        check_mapping("extra_query", extra_query),
        check_mapping("extra_body", extra_body),
        timeout,
    )
