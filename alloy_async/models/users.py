"""Users: the end-users (tenants) of your app, each with their own credentials."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from ._base import extra_field

__all__ = ["User"]


@attrs.frozen(kw_only=True)
class User:
    """An Alloy user.

    ``POST /users`` answers with ``userId`` only, so ``username`` and ``full_name`` may be None.

    Attributes:
        user_id: the user's id (a 24-hex ObjectId in Alloy's examples).
        username: your unique name for the user (an email or your own id).
        full_name: the display name, when set.
        extra: response keys this SDK does not know (e.g. ``createdAt``), read-only.
    """

    user_id: str
    username: str | None = None
    full_name: str | None = None
    extra: Mapping[str, Any] = extra_field()

    @property
    def display_name(self) -> str:
        """The best human label (the full name, else the username, else the id)."""
        return self.full_name or self.username or self.user_id
