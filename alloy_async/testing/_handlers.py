"""FakeAlloy's endpoint handlers: one function per route, answering documented shapes.

Every handler takes ``(fake, params, request, body, query)`` and returns the JSON answer (or a
:class:`Response`); it raises :class:`~alloy_async.testing.faults.HTTPError` for an error answer.
The execute handler lives in :mod:`._execute`; the table that routes to them in :mod:`._routes`.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import urlencode

from .._http import Request
from ._state import FakeState
from .faults import HTTPError

Params = dict[str, str]
Body = dict[str, Any]
Query = dict[str, str]


def err(status: int, code: str, message: str, source: str = "CONNECTIVITY_API") -> HTTPError:
    """An error answer in the documented shape, to raise."""
    return HTTPError(status, code, message, source=source)


def require_str(body: Body, key: str) -> str:
    """``body[key]``, which must be a non-empty string (400 otherwise)."""
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise err(400, "INVALID_INPUT", f"{key} is required and must be a non-empty string")
    return value


def user_of(fake: FakeState, request: Request, query: Query | None = None) -> dict[str, Any]:
    """The user a call acts for: the ``x-alloy-userid`` header (or the ``userId`` query)."""
    key = request.headers.get("x-alloy-userid") or (query or {}).get("userId")
    if not key:
        raise err(400, "MISSING_USER", "x-alloy-userid header is required for this call")
    return fake._user(key)


def _public_user(user: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in user.items() if v is not None}


# -- users ------------------------------------------------------------------------------------


def users_create(fake: FakeState, params: Params, request: Request, body: Body, q: Query) -> Any:
    username = require_str(body, "username")
    full_name = body.get("fullName")
    if full_name is not None and not isinstance(full_name, str):
        raise err(422, "INVALID_INPUT", "fullName must be a string")
    if any(u["username"] == username for u in fake.users.values()):
        raise err(409, "USERNAME_TAKEN", "A user with this username already exists")
    return {"userId": fake.add_user(username, full_name)}


def users_list(fake: FakeState, params: Params, request: Request, body: Body, q: Query) -> Any:
    return {"data": [_public_user(u) for u in fake.users.values()]}


def users_get(fake: FakeState, params: Params, request: Request, body: Body, q: Query) -> Any:
    return _public_user(fake._user(params["userId"]))


def users_update(fake: FakeState, params: Params, request: Request, body: Body, q: Query) -> Any:
    user = fake._user(params["userId"])
    if "username" in body:
        username = require_str(body, "username")
        if any(u["username"] == username and u is not user for u in fake.users.values()):
            raise err(409, "USERNAME_TAKEN", "A user with this username already exists")
        user["username"] = username
    if "fullName" in body:
        if body["fullName"] is not None and not isinstance(body["fullName"], str):
            raise err(422, "INVALID_INPUT", "fullName must be a string")
        user["fullName"] = body["fullName"]
    return _public_user(user)


def users_delete(fake: FakeState, params: Params, request: Request, body: Body, q: Query) -> Any:
    user = fake._user(params["userId"])
    del fake.users[user["userId"]]
    for cred_id in [c for c, v in fake.credentials.items() if v["userId"] == user["userId"]]:
        del fake.credentials[cred_id]
    return {"success": True}


def users_token(fake: FakeState, params: Params, request: Request, body: Body, q: Query) -> Any:
    user = fake._user(params["userId"])
    sig = fake._digest("jwt", user["userId"])
    return {"token": f"eyJhbGciOiJIUzI1NiJ9.{user['userId']}.{sig[:32]}"}


# -- connectors -------------------------------------------------------------------------------


def _connector_json(c: dict[str, Any]) -> dict[str, Any]:
    return {k: c[k] for k in ("id", "name", "icon", "group", "category")}


def connectors_list(fake: FakeState, params: Params, request: Request, body: Body, q: Query) -> Any:
    items = [_connector_json(c) for c in fake.connectors.values()]
    category = q.get("category")
    if category:
        items = [
            c
            for c in items
            if category == c["category"]
            or (isinstance(c["category"], list) and category in c["category"])
        ]
    return {"connectors": items}


def connectors_get(fake: FakeState, params: Params, request: Request, body: Body, q: Query) -> Any:
    return _connector_json(fake._connector(params["connectorId"]))


def connectors_resources(
    fake: FakeState, params: Params, request: Request, body: Body, q: Query
) -> Any:
    connector = fake._connector(params["connectorId"])
    return {
        "resources": [
            {
                "name": r["name"],
                "displayName": r["displayName"],
                "description": r["description"],
                "actions": [
                    {"id": a["id"], "name": a["displayName"], "description": a["description"]}
                    for a in r["actions"]
                ],
            }
            for r in connector["resources"]
        ]
    }


def actions_get(fake: FakeState, params: Params, request: Request, body: Body, q: Query) -> Any:
    action = fake._action(params["connectorId"], params["actionId"])
    return {"action": {k: v for k, v in action.items() if not k.startswith("_")}}


# -- credentials ------------------------------------------------------------------------------


def credentials_metadata(
    fake: FakeState, params: Params, request: Request, body: Body, q: Query
) -> Any:
    connector = fake._connector(params["connectorId"])
    out = []
    for auth in connector["auth"]:
        kind = auth["authenticationType"]
        props: dict[str, Any] = {
            "userId": {"type": "string"},
            "authenticationType": {"type": "string", "const": kind},
        }
        required = ["userId", "authenticationType"]
        if kind == "oauth2":
            props["redirectUri"] = {"type": "string", "format": "uri"}
            required.append("redirectUri")
        if "data" in auth:
            props["data"] = {
                "type": "object",
                "properties": auth["data"],
                "required": sorted(auth["data"]),
            }
            required.append("data")
        entry: dict[str, Any] = {
            "authenticationType": kind,
            "inputSchema": {"type": "object", "properties": props, "required": required},
        }
        if "authConfigRequired" in auth:
            entry["authConfigRequired"] = auth["authConfigRequired"]
        out.append(entry)
    return {"metadata": out}


def credentials_create(
    fake: FakeState, params: Params, request: Request, body: Body, q: Query
) -> Any:
    connector_id = params["connectorId"]
    connector = fake._connector(connector_id)
    user = fake._user(require_str(body, "userId"))
    kind = require_str(body, "authenticationType")
    auth = next((a for a in connector["auth"] if a["authenticationType"] == kind), None)
    if auth is None:
        raise err(422, "UNSUPPORTED_AUTH_TYPE", f"{connector_id} does not support {kind}")
    data = body.get("data")
    if "data" in auth:
        if not isinstance(data, dict):
            raise err(400, "INVALID_INPUT", "data is required for this connector")
        missing = [k for k in auth["data"] if not data.get(k)]
        if missing:
            raise err(400, "INVALID_INPUT", f"data.{missing[0]} is required")
    if kind == "oauth2":
        # redirectUri is optional in the create schema (the metadata example lists it as
        # required; the create reference wins): checked when given, left out of oauthUrl if not.
        redirect = body.get("redirectUri")
        if "redirectUri" in body and (not isinstance(redirect, str) or not redirect.strip()):
            raise err(400, "INVALID_INPUT", "redirectUri, when given, must be a non-empty string")
        if redirect is not None and not redirect.startswith(("https://", "http://")):
            raise err(422, "INVALID_INPUT", "redirectUri must be an absolute URL")
        if auth.get("authConfigRequired") and not body.get("authConfigId"):
            raise err(400, "AUTH_CONFIG_REQUIRED", "authConfigId is required for this connector")
        token = fake._digest("oauth", user["userId"], connector_id, fake._new_id())[:40]
        fake._pending_oauth.add(token)
        fields = {"userId": user["userId"], "redirectUri": redirect, "token": token}
        query = urlencode({k: v for k, v in fields.items() if v is not None})
        return {
            "oauthUrl": f"https://production.runalloy.com/api/strategy/connector/{connector_id}"
            f"/authorize?{query}"
        }
    return {"success": True, "credentialId": fake.add_credential(user["userId"], connector_id)}


def credentials_list(
    fake: FakeState, params: Params, request: Request, body: Body, q: Query
) -> Any:
    connector_id = params["connectorId"]
    fake._connector(connector_id)
    user = user_of(fake, request, q)
    return {
        "credentials": [
            {k: c[k] for k in ("credentialId", "name", "type", "createdAt", "updatedAt")}
            for c in fake.credentials.values()
            if c["userId"] == user["userId"] and c["connectorId"] == connector_id
        ]
    }


def credentials_delete(
    fake: FakeState, params: Params, request: Request, body: Body, q: Query
) -> Any:
    user = user_of(fake, request, q)
    cred = fake.credentials.get(params["credentialId"])
    if cred is None or cred["connectorId"] != params["connectorId"]:
        raise err(404, "CREDENTIAL_NOT_FOUND", "Credential not found")
    if cred["userId"] != user["userId"]:
        raise err(403, "CREDENTIAL_FORBIDDEN", "Credential does not belong to this user")
    del fake.credentials[params["credentialId"]]
    return {"success": True}


# -- files ------------------------------------------------------------------------------------


def _file_owner(fake: FakeState, request: Request) -> str:
    key = request.headers.get("x-alloy-userid")
    return fake._user(key)["userId"] if key else "-"


def files_request_upload(
    fake: FakeState, params: Params, request: Request, body: Body, q: Query
) -> Any:
    filename = require_str(body, "filename")
    mime = require_str(body, "mimeType")
    md5 = require_str(body, "md5")
    try:
        raw = bytes.fromhex(md5) if len(md5) == 32 else base64.b64decode(md5, validate=True)
    except (ValueError, binascii.Error):
        raw = b""
    if len(raw) != 16:
        raise err(422, "INVALID_INPUT", "md5 must be a hex or base64 MD5 digest")
    md5_b64 = base64.b64encode(raw).decode()
    owner = _file_owner(fake, request)
    existing = next((f for f in fake.files[owner].values() if f["md5"] == md5_b64), None)
    s3_key = existing["s3Key"] if existing else f"{owner}/{raw.hex()}/{filename}"
    if not existing:
        fake.files[owner][s3_key] = {
            "s3Key": s3_key,
            "filename": filename,
            "size": 0,
            "lastModified": fake._now(),
            "md5": md5_b64,
            "mimeType": mime,
        }
    return {
        "presignedUrl": {
            "md5": md5_b64,
            "presignedUrl": f"https://uploads.example.invalid/{s3_key}?X-Amz-Signature=fake",
            "type": "existing" if existing else "new",
            "s3Key": s3_key,
        }
    }


def files_list(fake: FakeState, params: Params, request: Request, body: Body, q: Query) -> Any:
    owner = _file_owner(fake, request)
    return {
        "files": [
            {k: f[k] for k in ("s3Key", "filename", "size", "lastModified")}
            for f in fake.files[owner].values()
        ]
    }


def files_delete(fake: FakeState, params: Params, request: Request, body: Body, q: Query) -> Any:
    owner = _file_owner(fake, request)
    if fake.files[owner].pop(params["s3Key"], None) is None:
        raise err(404, "FILE_NOT_FOUND", "File not found")
    return {"success": True, "message": "File deleted"}
