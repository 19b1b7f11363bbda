"""Credentials: a user's stored authentication with a third party, and how to create one."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

from ._base import extra_field, redact_url, repr_masked

__all__ = ["Credential", "CredentialCreated", "CredentialMetadata"]


@attrs.frozen(kw_only=True)
class Credential:
    """A stored credential of one user for one connector.

    Attributes:
        credential_id: the id to pass as ``credential_id`` when executing.
        name: the display name (e.g. ``"Jane Merchant's Hubspot"``).
        type: the credential type, e.g. ``hubspot-oauth2``.
        connector_id: the connector, when the answer says.
        user_id: the owning user, when the answer says.
        created_at: creation time (aware datetime), or None.
        updated_at: last update time (aware datetime), or None.
        extra: response keys this SDK does not know (or unparseable timestamps), read-only.
    """

    credential_id: str
    name: str | None = None
    type: str | None = None
    connector_id: str | None = None
    user_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    extra: Mapping[str, Any] = extra_field()


@attrs.frozen(kw_only=True)
class CredentialCreated:
    """The answer to creating a credential: an OAuth URL, or the new credential's id.

    Attributes:
        credential_id: the new credential (API key / HTTP auth), or None for OAuth.
        oauth_url: where to send the end-user to authorize (OAuth), or None. It carries a
            ``token`` query parameter: the repr masks every query value.
        success: the ``success`` flag, when the answer has one.
        extra: response keys this SDK does not know, read-only.
    """

    credential_id: str | None = None
    oauth_url: str | None = attrs.field(default=None, repr=redact_url)
    success: bool | None = None
    extra: Mapping[str, Any] = extra_field()

    @property
    def needs_redirect(self) -> bool:
        """True when the user must visit ``oauth_url`` before a credential exists."""
        return self.credential_id is None and self.oauth_url is not None


@attrs.frozen(kw_only=True)
class CredentialMetadata:
    """One way to authenticate with a connector, from ``.../credentials/metadata``.

    Attributes:
        authentication_type: e.g. ``oauth2``, ``apiKey``, ``http-basic``.
        auth_config_required: whether a custom Auth Config (``auth_config_id``) is mandatory.
        input_schema: the JSON Schema of the create-credential body, when given.
        required_fields: the names of the fields the create-credential call requires (from
            ``requiredFields``, else the ``properties`` list, else ``inputSchema.required``).
        sample_input: an example create-credential body, when given.
        extra: response keys this SDK does not know (e.g. ``properties``), read-only.
    """

    authentication_type: str | None = None
    auth_config_required: bool | None = None
    input_schema: Mapping[str, Any] | None = attrs.field(default=None, hash=False)
    required_fields: tuple[str, ...] = ()
    sample_input: Mapping[str, Any] | None = attrs.field(default=None, hash=False, repr=repr_masked)
    extra: Mapping[str, Any] = extra_field()

    @property
    def is_oauth(self) -> bool:
        """Whether this is an OAuth flow (the answer to create will be an ``oauth_url``)."""
        return (self.authentication_type or "").lower().startswith("oauth")

    @property
    def data_fields(self) -> tuple[str, ...]:
        """Connector-specific fields expected under ``data`` (e.g. ``subdomain``)."""
        props = (self.input_schema or {}).get("properties")
        data = props.get("data") if isinstance(props, Mapping) else None
        inner = data.get("properties") if isinstance(data, Mapping) else None
        return tuple(inner) if isinstance(inner, Mapping) else ()
