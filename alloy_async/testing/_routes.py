"""FakeAlloy's routing table: (method, path pattern, route name, handler, allowed body keys).

The first row whose pattern and method match a request wins (files come before
``/connectors/{id}`` so ``files`` is not taken for a connector id). A path that matches some row
under another method is ``method_not_allowed``; any other path is ``not_found``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import attrs

from .._http import Request
from ..models._fields import BODY_PARTS
from ._execute import execute
from ._handlers import (
    Body,
    Params,
    Query,
    actions_get,
    connectors_get,
    connectors_list,
    connectors_resources,
    credentials_create,
    credentials_delete,
    credentials_list,
    credentials_metadata,
    files_delete,
    files_list,
    files_request_upload,
    users_create,
    users_delete,
    users_get,
    users_list,
    users_token,
    users_update,
)
from ._state import FakeState

__all__ = ["METHOD_NOT_ALLOWED", "NOT_FOUND", "ROUTES", "Route", "RouteHandler", "resolve"]

RouteHandler = Callable[[FakeState, Params, Request, Body, Query], Any]

NOT_FOUND = "not_found"
METHOD_NOT_ALLOWED = "method_not_allowed"


@attrs.frozen
class Route:
    """One row of the table. ``body_keys``: the body fields strict mode accepts (None: any)."""

    method: str
    pattern: re.Pattern[str]
    name: str
    handler: RouteHandler
    body_keys: frozenset[str] | None = None


def _route(
    method: str,
    path: str,
    name: str,
    handler: RouteHandler,
    body_keys: tuple[str, ...] | None = None,
) -> Route:
    keys = frozenset(body_keys) if body_keys is not None else None
    return Route(method, re.compile("^" + path + "$"), name, handler, keys)


_USER = r"/users/(?P<userId>[^/]+)"
_CONNECTOR = r"/connectors/(?P<connectorId>[^/]+)"
_ACTION = _CONNECTOR + r"/actions/(?P<actionId>[^/]+)"
_CREDENTIALS = _CONNECTOR + r"/credentials"
_USER_FIELDS = ("username", "fullName")
_EXECUTE_FIELDS = ("credentialId", *BODY_PARTS)
_CREDENTIAL_FIELDS = ("userId", "authenticationType", "redirectUri", "authConfigId", "data")

ROUTES: tuple[Route, ...] = (
    _route("POST", r"/users", "users.create", users_create, _USER_FIELDS),
    _route("GET", r"/users", "users.list", users_list),
    _route("GET", _USER + r"/token", "users.token", users_token),
    _route("GET", _USER, "users.get", users_get),
    _route("PUT", _USER, "users.update", users_update, _USER_FIELDS),
    _route("DELETE", _USER, "users.delete", users_delete),
    _route(
        "POST",
        r"/connectors/files/upload/request",
        "files.request_upload",
        files_request_upload,
        ("filename", "mimeType", "md5"),
    ),
    _route("GET", r"/connectors/files/list", "files.list", files_list),
    _route("DELETE", r"/connectors/files/(?P<s3Key>[^/]+)", "files.delete", files_delete),
    _route("GET", r"/connectors", "connectors.list", connectors_list),
    _route("GET", _CONNECTOR, "connectors.get", connectors_get),
    _route("GET", _CONNECTOR + r"/resources", "connectors.resources", connectors_resources),
    _route("GET", _ACTION, "actions.get", actions_get),
    _route("POST", _ACTION + r"/execute", "execute", execute, _EXECUTE_FIELDS),
    _route("GET", _CREDENTIALS + r"/metadata", "credentials.metadata", credentials_metadata),
    _route("POST", _CREDENTIALS, "credentials.create", credentials_create, _CREDENTIAL_FIELDS),
    _route("GET", _CREDENTIALS, "credentials.list", credentials_list),
    _route(
        "DELETE",
        _CREDENTIALS + r"/(?P<credentialId>[^/]+)",
        "credentials.delete",
        credentials_delete,
    ),
)


def resolve(method: str, path: str) -> tuple[str, Route | None, dict[str, str]]:
    """The route name, the matching row (None for not_found / method_not_allowed) and the
    URL-decoded path parameters of a request."""
    for route in ROUTES:
        match = route.pattern.match(path)
        if match and route.method == method:
            params = {k: unquote(v) for k, v in match.groupdict().items()}
            return route.name, route, params
    for route in ROUTES:
        if route.pattern.match(path):
            return METHOD_NOT_ALLOWED, None, {}
    return NOT_FOUND, None, {}
