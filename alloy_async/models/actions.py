"""Actions: an action's schema, one execution's result, and the cross-connector catalog."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from ._base import extra_field, repr_masked

__all__ = ["Action", "CatalogAction", "ExecutionResult"]


@attrs.frozen(kw_only=True)
class Action:
    """An action's full schema, from ``GET /connectors/{id}/actions/{actionId}``.

    Attributes:
        id: the action id (case-sensitive).
        display_name: the human label.
        description: what the action does.
        http_method: the third party's HTTP method, as the API gives it (often lower-case).
        path: the third party's path, with ``{placeholders}`` for ``path_params``.
        parameters: OpenAPI-style parameter objects (``name``, ``in``, ``required``, ``schema``).
        request_body: the JSON Schema of the body to send as ``request_body``.
        sample_success_response: an example of what the third party answers.
        extra: response keys this SDK does not know, read-only.
    """

    id: str
    display_name: str | None = None
    description: str | None = None
    http_method: str | None = None
    path: str | None = None
    parameters: tuple[Mapping[str, Any], ...] = attrs.field(default=(), hash=False)
    request_body: Mapping[str, Any] | None = attrs.field(default=None, hash=False)
    sample_success_response: Any = attrs.field(default=None, hash=False, repr=repr_masked)
    extra: Mapping[str, Any] = extra_field()

    @property
    def method(self) -> str | None:
        """The HTTP method in upper case (``POST``), or None."""
        return self.http_method.upper() if self.http_method else None

    @property
    def required_parameters(self) -> tuple[str, ...]:
        """Names of the parameters marked ``required``."""
        return tuple(
            p["name"] for p in self.parameters if p.get("required") is True and "name" in p
        )

    def parameters_in(self, location: str) -> tuple[Mapping[str, Any], ...]:
        """The parameters sent in ``location`` (``path``, ``query``, ``header``)."""
        return tuple(p for p in self.parameters if p.get("in") == location)

    @property
    def required_body_fields(self) -> tuple[str, ...]:
        """Top-level fields the request body schema marks as required."""
        required = (self.request_body or {}).get("required")
        if not isinstance(required, list):
            return ()
        return tuple(name for name in required if isinstance(name, str))


@attrs.frozen(kw_only=True)
class ExecutionResult:
    """The answer to one executed action.

    The sources disagree on the body (``{success, result}``, ``{executionId, status,
    responseData}``, ``{success, data}``, ``{data, pagination}``), so ``raw`` always holds it
    whole and ``data`` holds the third party's payload whichever key carried it.

    Attributes:
        success: whether Alloy reports success (True for a 2xx answer that does not say).
        data: the third-party payload (``result``, ``responseData`` or ``data``); the repr
            masks the values of secret-looking keys (``accessToken``...) at any depth.
        raw: the whole decoded body (left out of the repr: it repeats ``data``).
        status_code: the HTTP status of the answer.
        request_id: the answer's request id header, if any.
        extra: body keys other than the payload and the success flag, read-only.
    """

    success: bool
    data: Any = attrs.field(default=None, hash=False, repr=repr_masked)
    raw: Any = attrs.field(default=None, repr=False, hash=False)
    status_code: int
    request_id: str | None = None
    extra: Mapping[str, Any] = extra_field()

    @property
    def execution_id(self) -> str | None:
        """Alloy's execution id, when the body carries one (``executionId``)."""
        value = self.extra.get("executionId")
        return value if isinstance(value, str) else None

    @property
    def pagination(self) -> Mapping[str, Any] | None:
        """The ``pagination`` object (``hasMore``, ``nextOffset``) when the body has one."""
        value = self.extra.get("pagination")
        return value if isinstance(value, Mapping) else None


@attrs.frozen(kw_only=True)
class CatalogAction:
    """One action in the cross-connector catalog (``actions.catalog``).

    Attributes:
        connector_id: the connector the action belongs to.
        action_id: the action id, for ``actions.execute``.
        slug: a stable unique key for the action across connectors, when known.
        name: the human-readable name.
        description: what the action does.
        resource: the name of the resource the action is listed under.
        is_connected: whether the user holds a credential for the connector.
        extra: keys this SDK does not know, read-only.
    """

    connector_id: str
    action_id: str
    slug: str | None = None
    name: str | None = None
    description: str | None = None
    resource: str | None = None
    is_connected: bool | None = None
    extra: Mapping[str, Any] = extra_field()
