"""Connectors and their resources: what can be integrated and which actions each offers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from ._base import extra_field

__all__ = ["ActionSummary", "Connector", "Resource"]


@attrs.frozen(kw_only=True)
class Connector:
    """A packaged integration with a third-party app (e.g. ``hubspot``, ``slack``).

    Attributes:
        id: the connector id, used as ``connector_id`` in every other call.
        name: the display name.
        icon_url: the logo URL (``icon`` or ``iconUrl`` in the answer).
        categories: the categories (``category`` may come as one string or a list).
        action_count: how many actions the connector offers, when the API says.
        extra: response keys this SDK does not know (e.g. ``group``), read-only.
    """

    id: str
    name: str | None = None
    icon_url: str | None = None
    categories: tuple[str, ...] = ()
    action_count: int | None = None
    extra: Mapping[str, Any] = extra_field()

    @property
    def category(self) -> str | None:
        """The first category, or None."""
        return self.categories[0] if self.categories else None

    def in_category(self, category: str) -> bool:
        """Whether the connector is in ``category`` (case-insensitive)."""
        wanted = category.casefold()
        return any(c.casefold() == wanted for c in self.categories)


@attrs.frozen(kw_only=True)
class ActionSummary:
    """One action as listed under a resource.

    Attributes:
        id: the action id (case-sensitive), used as ``action_id``.
        name: the human-readable name.
        description: what the action does.
        extra: response keys this SDK does not know, read-only.
    """

    id: str
    name: str | None = None
    description: str | None = None
    extra: Mapping[str, Any] = extra_field()


@attrs.frozen(kw_only=True)
class Resource:
    """A connector-defined entity (e.g. ``contacts``) and the actions available on it.

    Attributes:
        name: the resource's machine name (``resourceId`` when the answer has one).
        display_name: the human label, when given apart from ``name``.
        description: what the resource is.
        actions: the actions on this resource.
        extra: response keys this SDK does not know, read-only.
    """

    name: str
    display_name: str | None = None
    description: str | None = None
    actions: tuple[ActionSummary, ...] = ()
    extra: Mapping[str, Any] = extra_field()

    @property
    def label(self) -> str:
        """The display name, falling back to the name."""
        return self.display_name or self.name

    @property
    def action_ids(self) -> tuple[str, ...]:
        """The ids of this resource's actions, in order."""
        return tuple(a.id for a in self.actions)
