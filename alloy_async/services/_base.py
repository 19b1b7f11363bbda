"""What every service shares: the requester, and argument checks that name the field."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._core import Requester
from .._http import Timeout, check_timeout
from ..errors import InvalidRequestError

__all__ = ["Extras", "Service", "check_id", "check_mapping", "extras"]

#: The per-call escape hatches every service method accepts.
Extras = dict[str, Any]


class Service:
    """Base of the resource services: holds the client's requester, nothing else.

    Every method that sends a request takes a keyword-only ``timeout``: seconds per attempt
    or an :class:`~alloy_async.Timeout` for this call, replacing the client's own (None: the
    client's).
    """

    __slots__ = ("_requester",)

    def __init__(self, requester: Requester) -> None:
        self._requester = requester

    def __repr__(self) -> str:
        return f"<{type(self).__name__} base_url={self._requester.base_url!r}>"


def extras(
    extra_headers: Mapping[str, str] | None,
    extra_query: Mapping[str, Any] | None,
    extra_body: Mapping[str, Any] | None,
    timeout: float | Timeout | None = None,
) -> Extras:
    """Keyword arguments for :meth:`Requester.build` from the escape hatches and the call's
    ``timeout`` (checked here: a paginator factory refuses a bad one when called)."""
    return {
        "extra_headers": extra_headers,
        "extra_query": extra_query,
        "extra_body": extra_body,
        "timeout": check_timeout(timeout),
    }


def check_id(name: str, value: object) -> str:
    """A non-empty string id, or :class:`InvalidRequestError` naming ``name``."""
    if not isinstance(value, str):
        raise InvalidRequestError(
            f"{name} must be a string, got {type(value).__name__}", field=name
        )
    if not value.strip():
        raise InvalidRequestError(f"{name} must be a non-empty string", field=name)
    return value


def check_mapping(name: str, value: object) -> dict[str, Any] | None:
    """None or a mapping with string keys (copied to a dict), else :class:`InvalidRequestError`."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidRequestError(
            f"{name} must be a mapping (dict), got {type(value).__name__}", field=name
        )
    for key in value:
        if not isinstance(key, str):
            raise InvalidRequestError(f"{name} keys must be strings, got {key!r}", field=name)
    return dict(value)
