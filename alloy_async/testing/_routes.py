"""FakeAlloy's endpoint handlers: one function per route, answering documented shapes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from .._http import Request

if TYPE_CHECKING:
    from .fake import FakeAlloy

Params = dict[str, str]
Body = dict[str, Any]
Query = dict[str, str]


def _err(status: int, code: str, message: str, source: str = "CONNECTIVITY_API") -> Exception:
    from .fake import _HTTPError

    return _HTTPError(status, code, message, source=source)


def _require_str(body: Body, key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _err(400, "INVALID_INPUT", f"{key} is required and must be a non-empty string")
    return value


def _user_of(fake: FakeAlloy, request: Request, query: Query | None = None) -> dict[str, Any]:
    key = request.headers.get("x-alloy-userid") or (query or {}).get("userId")
    if not key:
        raise _err(400, "MISSING_USER", "x-alloy-userid header is required for this call")
    return fake._user(key)


def _public_user(user: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in user.items() if v is not None}


# -- users ------------------------------------------------------------------------------------


def users_create(fake: FakeAlloy, params: Params, request: Request, body: Body, q: Query) -> Any:
    username = _require_str(body, "username")
    full_name = body.get("fullName")
    if full_name is not None and not isinstance(full_name, str):
        raise _err(422, "INVALID_INPUT", "fullName must be a string")
    if any(u["username"] == username for u in fake.users.values()):
        raise _err(409, "USERNAME_TAKEN", "A user with this username already exists")
    return {"userId": fake.add_user(username, full_name)}


def users_list(fake: FakeAlloy, params: Params, request: Request, body: Body, q: Query) -> Any:
    return {"data": [_public_user(u) for u in fake.users.values()]}


def users_get(fake: FakeAlloy, params: Params, request: Request, body: Body, q: Query) -> Any:
    return _public_user(fake._user(params["userId"]))


def users_update(fake: FakeAlloy, params: Params, request: Request, body: Body, q: Query) -> Any:
    user = fake._user(params["userId"])
    if "username" in body:
        username = _require_str(body, "username")
        if any(u["username"] == username and u is not user for u in fake.users.values()):
            raise _err(409, "USERNAME_TAKEN", "A user with this username already exists")
        user["username"] = username
    if "fullName" in body:
        if body["fullName"] is not None and not isinstance(body["fullName"], str):
            raise _err(422, "INVALID_INPUT", "fullName must be a string")
        user["fullName"] = body["fullName"]
    return _public_user(user)


def users_delete(fake: FakeAlloy, params: Params, request: Request, body: Body, q: Query) -> Any:
    user = fake._user(params["userId"])
    del fake.users[user["userId"]]
    for cred_id in [c for c, v in fake.credentials.items() if v["userId"] == user["userId"]]:
        del fake.credentials[cred_id]
    return {"success": True}


def users_token(fake: FakeAlloy, params: Params, request: Request, body: Body, q: Query) -> Any:
    user = fake._user(params["userId"])
    sig = fake._digest("jwt", user["userId"])
    return {"token": f"eyJhbGciOiJIUzI1NiJ9.{user['userId']}.{sig[:32]}"}


# -- connectors -------------------------------------------------------------------------------


def _connector_json(c: dict[str, Any]) -> dict[str, Any]:
    return {k: c[k] for k in ("id", "name", "icon", "group", "category")}


def connectors_list(fake: FakeAlloy, params: Params, request: Request, body: Body, q: Query) -> Any:
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


def connectors_get(fake: FakeAlloy, params: Params, request: Request, body: Body, q: Query) -> Any:
    return _connector_json(fake._connector(params["connectorId"]))


def connectors_resources(
    fake: FakeAlloy, params: Params, request: Request, body: Body, q: Query
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


def actions_get(fake: FakeAlloy, params: Params, request: Request, body: Body, q: Query) -> Any:
    action = fake._action(params["connectorId"], params["actionId"])
    return {"action": {k: v for k, v in action.items() if not k.startswith("_")}}


# -- execute ----------------------------------------------------------------------------------


def execute(fake: FakeAlloy, params: Params, request: Request, body: Body, q: Query) -> Any:
    from .fake import ExecutionRecord

    connector_id, action_id = params["connectorId"], params["actionId"]
    action = fake._action(connector_id, action_id)
    cred_id = _require_str(body, "credentialId")
    user = _user_of(fake, request)
    cred = fake.credentials.get(cred_id)
    if cred is None:
        raise _err(404, "CREDENTIAL_NOT_FOUND", "Credential not found")
    if cred["userId"] != user["userId"]:
        raise _err(403, "CREDENTIAL_FORBIDDEN", "Credential does not belong to this user")
    if cred["connectorId"] != connector_id:
        raise _err(400, "CREDENTIAL_MISMATCH", "Credential is for another connector")
    for key in ("requestBody", "queryParameters", "pathParams", "additionalHeaders"):
        if key in body and body[key] is not None and not isinstance(body[key], dict):
            raise _err(400, "INVALID_INPUT", f"{key} must be an object")
    request_body = body.get("requestBody") or {}
    query_params = body.get("queryParameters") or {}
    path_params = body.get("pathParams") or {}
    schema = action.get("requestBody") or {}
    missing = [k for k in schema.get("required", []) if k not in request_body]
    if missing:
        raise _err(
            400, "INVALID_INPUT", f"missing required field(s): {', '.join(missing)}", "THIRD_PARTY"
        )
    for p in action["parameters"]:
        if p["in"] == "path" and p.get("required") and p["name"] not in path_params:
            raise _err(400, "INVALID_INPUT", f"missing path parameter {p['name']}", "THIRD_PARTY")
    fake.executions.append(
        ExecutionRecord(
            user_id=user["userId"],
            connector_id=connector_id,
            action_id=action_id,
            credential_id=cred_id,
            request_body=request_body,
            query_parameters=query_params,
            path_params=path_params,
        )
    )
    if action.get("_paged"):
        return _paged(fake, cred_id, request_body, query_params)
    output = _third_party_answer(fake, connector_id, action_id, request_body, path_params)
    return {"success": True, fake.execute_shape: output}


def _paged(fake: FakeAlloy, cred_id: str, body: Body, query: dict[str, Any]) -> Any:
    """Offset pagination as the Alloy pagination guide shows it: data[] + pagination{}."""
    source = {**body, **query}
    try:
        limit = min(int(source.get("limit", 50)), 50)
        offset = int(source.get("offset", 0))
    except (TypeError, ValueError):
        raise _err(
            400, "INVALID_INPUT", "limit and offset must be integers", "THIRD_PARTY"
        ) from None
    if limit < 1 or offset < 0:
        raise _err(400, "INVALID_INPUT", "limit must be >= 1 and offset >= 0", "THIRD_PARTY")
    total = fake.dataset_size
    items = [
        {"id": f"rec_{i:06d}", "email": f"contact{i}@example.com", "owner": cred_id[-6:]}
        for i in range(offset, min(offset + limit, total))
    ]
    has_more = offset + limit < total
    return {
        "data": items,
        "pagination": {"hasMore": has_more, "nextOffset": offset + limit if has_more else None},
    }


def _third_party_answer(
    fake: FakeAlloy, connector_id: str, action_id: str, body: Body, path_params: dict[str, Any]
) -> Any:
    ref = fake._new_id()
    if connector_id == "slack":
        return {
            "ok": True,
            "channel": body.get("channel"),
            "ts": f"{fake._clock:.6f}",
            "message": {"text": body.get("text")},
        }
    if connector_id == "hubspot" and action_id == "createContact":
        now = fake._now()
        return {
            "id": ref,
            "properties": body.get("properties"),
            "createdAt": now,
            "updatedAt": now,
            "archived": False,
        }
    if connector_id == "sendgrid":
        return {"messageId": ref}
    if path_params:
        return {"id": next(iter(path_params.values())), "object": action_id}
    return {"id": ref, "object": action_id}


# -- credentials ------------------------------------------------------------------------------


def credentials_metadata(
    fake: FakeAlloy, params: Params, request: Request, body: Body, q: Query
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
    fake: FakeAlloy, params: Params, request: Request, body: Body, q: Query
) -> Any:
    connector_id = params["connectorId"]
    connector = fake._connector(connector_id)
    user = fake._user(_require_str(body, "userId"))
    kind = _require_str(body, "authenticationType")
    auth = next((a for a in connector["auth"] if a["authenticationType"] == kind), None)
    if auth is None:
        raise _err(422, "UNSUPPORTED_AUTH_TYPE", f"{connector_id} does not support {kind}")
    data = body.get("data")
    if "data" in auth:
        if not isinstance(data, dict):
            raise _err(400, "INVALID_INPUT", "data is required for this connector")
        missing = [k for k in auth["data"] if not data.get(k)]
        if missing:
            raise _err(400, "INVALID_INPUT", f"data.{missing[0]} is required")
    if kind == "oauth2":
        # redirectUri is optional in the create schema (the metadata example lists it as
        # required; the create reference wins): checked when given, left out of oauthUrl if not.
        redirect = body.get("redirectUri")
        if "redirectUri" in body and (not isinstance(redirect, str) or not redirect.strip()):
            raise _err(400, "INVALID_INPUT", "redirectUri, when given, must be a non-empty string")
        if redirect is not None and not redirect.startswith(("https://", "http://")):
            raise _err(422, "INVALID_INPUT", "redirectUri must be an absolute URL")
        if auth.get("authConfigRequired") and not body.get("authConfigId"):
            raise _err(400, "AUTH_CONFIG_REQUIRED", "authConfigId is required for this connector")
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
    fake: FakeAlloy, params: Params, request: Request, body: Body, q: Query
) -> Any:
    connector_id = params["connectorId"]
    fake._connector(connector_id)
    user = _user_of(fake, request, q)
    return {
        "credentials": [
            {k: c[k] for k in ("credentialId", "name", "type", "createdAt", "updatedAt")}
            for c in fake.credentials.values()
            if c["userId"] == user["userId"] and c["connectorId"] == connector_id
        ]
    }


def credentials_delete(
    fake: FakeAlloy, params: Params, request: Request, body: Body, q: Query
) -> Any:
    user = _user_of(fake, request, q)
    cred = fake.credentials.get(params["credentialId"])
    if cred is None or cred["connectorId"] != params["connectorId"]:
        raise _err(404, "CREDENTIAL_NOT_FOUND", "Credential not found")
    if cred["userId"] != user["userId"]:
        raise _err(403, "CREDENTIAL_FORBIDDEN", "Credential does not belong to this user")
    del fake.credentials[params["credentialId"]]
    return {"success": True}


# -- files ------------------------------------------------------------------------------------


def _file_owner(fake: FakeAlloy, request: Request) -> str:
    key = request.headers.get("x-alloy-userid")
    return fake._user(key)["userId"] if key else "-"


def files_request_upload(
    fake: FakeAlloy, params: Params, request: Request, body: Body, q: Query
) -> Any:
    import base64
    import binascii

    filename = _require_str(body, "filename")
    mime = _require_str(body, "mimeType")
    md5 = _require_str(body, "md5")
    try:
        raw = bytes.fromhex(md5) if len(md5) == 32 else base64.b64decode(md5, validate=True)
    except (ValueError, binascii.Error):
        raw = b""
    if len(raw) != 16:
        raise _err(422, "INVALID_INPUT", "md5 must be a hex or base64 MD5 digest")
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


def files_list(fake: FakeAlloy, params: Params, request: Request, body: Body, q: Query) -> Any:
    owner = _file_owner(fake, request)
    return {
        "files": [
            {k: f[k] for k in ("s3Key", "filename", "size", "lastModified")}
            for f in fake.files[owner].values()
        ]
    }


def files_delete(fake: FakeAlloy, params: Params, request: Request, body: Body, q: Query) -> Any:
    owner = _file_owner(fake, request)
    if fake.files[owner].pop(params["s3Key"], None) is None:
        raise _err(404, "FILE_NOT_FOUND", "File not found")
    return {"success": True, "message": "File deleted"}
