"""FakeAlloy's execute handler: validates the call, records the execution, answers like the
third party would (or pages through a dataset for a paged action)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .._convert import structure
from .._http import Request
from ..models._fields import BODY_PARTS
from ..models.actions import Action
from ..validation import compile_action
from ._handlers import Body, Params, Query, err, require_str, user_of
from ._state import FakeState
from .records import ExecutionRecord


def execute(fake: FakeState, params: Params, request: Request, body: Body, q: Query) -> Any:
    connector_id, action_id = params["connectorId"], params["actionId"]
    action = fake._action(connector_id, action_id)
    cred_id = require_str(body, "credentialId")
    user = user_of(fake, request)
    cred = fake.credentials.get(cred_id)
    if cred is None:
        raise err(404, "CREDENTIAL_NOT_FOUND", "Credential not found")
    if cred["userId"] != user["userId"]:
        raise err(403, "CREDENTIAL_FORBIDDEN", "Credential does not belong to this user")
    if cred["connectorId"] != connector_id:
        raise err(400, "CREDENTIAL_MISMATCH", "Credential is for another connector")
    if cred_id in fake.revoked:
        fake.revoked_requests[cred_id] += 1
        raise err(
            401, "CREDENTIAL_REVOKED", "the third party refused the credential", "THIRD_PARTY"
        )
    for key in BODY_PARTS:
        if key in body and body[key] is not None and not isinstance(body[key], dict):
            raise err(400, "INVALID_INPUT", f"{key} must be an object")
    request_body = body.get("requestBody") or {}
    query_params = body.get("queryParameters") or {}
    path_params = body.get("pathParams") or {}
    schema = action.get("requestBody") or {}
    missing = [k for k in schema.get("required", []) if k not in request_body]
    if missing:
        raise err(
            400, "INVALID_INPUT", f"missing required field(s): {', '.join(missing)}", "THIRD_PARTY"
        )
    for p in action["parameters"]:
        if p["in"] == "path" and p.get("required") and p["name"] not in path_params:
            raise err(400, "INVALID_INPUT", f"missing path parameter {p['name']}", "THIRD_PARTY")
    if getattr(fake, "strict", False):
        _validate(fake, connector_id, action_id, action, request_body, query_params, path_params)
    fake.executions.append(
        ExecutionRecord(
            user_id=user["userId"],
            connector_id=connector_id,
            action_id=action_id,
            credential_id=cred_id,
            request_body=request_body,
            query_parameters=query_params,
            path_params=path_params,
            at=_server_time(),
        )
    )
    if action.get("_paged"):
        return _paged(fake, cred_id, request_body, query_params)
    output = _third_party_answer(fake, connector_id, action_id, request_body, path_params)
    return {"success": True, fake.execute_shape: output}


def _validate(
    fake: FakeState,
    connector_id: str,
    action_id: str,
    action: dict[str, Any],
    body: Any,
    query: dict[str, Any],
    path: dict[str, Any],
) -> None:
    """Strict mode: refuse what the action's published schema refuses, as production would
    (the same schema ``actions.get`` serves), with a 400 listing the problems."""
    key = (connector_id, action_id)
    validator = fake.validators.get(key)
    if validator is None:
        public = {k: v for k, v in action.items() if not k.startswith("_")}
        validator = compile_action(structure(public, Action), f"{connector_id}.{action_id}")
        fake.validators[key] = validator
    problems = validator.problems(body, query, path)
    if problems:
        detail = "; ".join(str(p) for p in problems)
        raise err(400, "INVALID_INPUT", f"invalid input: {detail}", "THIRD_PARTY")


def _paged(fake: FakeState, cred_id: str, body: Body, query: dict[str, Any]) -> Any:
    """Offset pagination as the Alloy pagination guide shows it: data[] + pagination{}."""
    source = {**body, **query}
    try:
        limit = min(int(source.get("limit", 50)), 50)
        offset = int(source.get("offset", 0))
    except (TypeError, ValueError):
        raise err(
            400, "INVALID_INPUT", "limit and offset must be integers", "THIRD_PARTY"
        ) from None
    if limit < 1 or offset < 0:
        raise err(400, "INVALID_INPUT", "limit must be >= 1 and offset >= 0", "THIRD_PARTY")
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
    fake: FakeState, connector_id: str, action_id: str, body: Body, path_params: dict[str, Any]
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


def _server_time() -> float:
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:  # called outside a loop (a synchronous test of the simulator)
        return time.monotonic()
