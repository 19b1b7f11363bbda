"""A connector crafted for the codegen tests: every schema feature issue 25 names, in FakeAlloy's
catalog format (``fake.connectors[ACME["id"]] = ACME`` serves it), plus the clashes and the
schemas the generator cannot express."""

from __future__ import annotations

import copy
from typing import Any

from alloy_async.codegen import Generated, fetch_catalog, generate
from alloy_async.testing import FakeAlloy

_S: dict[str, Any] = {"type": "string"}


def _action(
    id: str,
    method: str,
    path: str,
    *,
    body: dict[str, Any] | None = None,
    parameters: list[dict[str, Any]] | None = None,
    description: str = "",
) -> dict[str, Any]:
    return {
        "id": id,
        "displayName": id.replace("-", " ").capitalize(),
        "description": description or f"The {id} action.",
        "httpMethod": method,
        "path": path,
        "parameters": parameters or [],
        "requestBody": body,
        "sampleSuccessResponse": {"ok": True},
    }


_CONTACT: dict[str, Any] = {
    "type": "object",
    "description": "A contact to create.",
    "required": ["first-name", "class", "email", "address"],
    "additionalProperties": False,
    "properties": {
        "first-name": {"type": "string", "description": "Given name."},
        "class": {"type": "string", "enum": ["lead", "customer", "partner"]},
        "email": {"type": "string", "format": "email"},
        "address": {
            "type": "object",
            "description": "Where the contact lives.",
            "required": ["street", "city"],
            "properties": {
                "street": _S,
                "city": _S,
                "country": {"type": "string", "enum": ["US", "FR", "DE"]},
                "geo": {
                    "type": "object",
                    "required": ["lat", "lng"],
                    "properties": {"lat": {"type": "number"}, "lng": {"type": "number"}},
                },
            },
        },
        "tags": {"type": "array", "items": _S},
        "phones": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["number"],
                "properties": {"number": _S, "kind": {"enum": ["home", "work"]}},
            },
        },
        "score": {"type": "number"},
        "active": {"type": "boolean"},
        "priority": {"type": "integer", "enum": [1, 2, 3]},
        "owner": {"type": ["string", "null"]},
        "metadata": {"type": "object", "description": "Anything: the schema leaves it open."},
        "labels": {"type": "object", "additionalProperties": _S},
        "custom": {
            "type": "object",
            "properties": {"source": _S},
            "additionalProperties": {"type": "integer"},
        },
        "notes": {},
    },
}

_IMPORT: dict[str, Any] = {
    "type": "object",
    "required": ["rows"],
    "definitions": {"Row": {"type": "object", "properties": {"id": {"type": "integer"}}}},
    "properties": {
        "rows": {"type": "array", "items": {"$ref": "#/definitions/Row"}},
        "file": {"type": "file"},
        "schema": {"$ref": "https://example.com/schemas/import.json"},
    },
}


def _param(name: str, where: str, schema: Any = None, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required, "schema": schema or _S}


ACME: dict[str, Any] = {
    "id": "acme-crm",
    "name": "Acme CRM",
    "icon": "https://cdn.example.com/acme.png",
    "group": ["input"],
    "category": ["crm"],
    "auth": [{"authenticationType": "apiKey", "data": {"apiKey": _S}}],
    "resources": [
        {
            "name": "contacts",
            "displayName": "Contacts",
            "description": "Contacts.",
            "actions": [
                _action(
                    "create-contact",
                    "post",
                    "/contacts",
                    body=_CONTACT,
                    description='Creates a contact. Keys such as "first-name" and "class".',
                ),
                _action(
                    "listContacts",
                    "get",
                    "/contacts",
                    parameters=[
                        _param("limit", "query", {"type": "integer"}),
                        _param("sort", "query", {"type": "string", "enum": ["name", "created"]}),
                        _param("X-Trace", "header"),
                    ],
                ),
                _action(
                    "list-contacts", "get", "/v2/contacts", parameters=[_param("cursor", "query")]
                ),
                _action(
                    "get-contact",
                    "get",
                    "/contacts/{contact_id}",
                    parameters=[
                        _param("contact_id", "path", required=True),
                        _param("fields", "query", {"type": "array", "items": _S}),
                    ],
                ),
                _action(
                    "delete-contact",
                    "delete",
                    "/contacts/{contact_id}",
                    parameters=[_param("contact_id", "path", required=True)],
                ),
                _action(
                    "create-contact-job",
                    "post",
                    "/contacts/jobs",
                    body={"type": "object", "properties": {"note": _S}},
                ),
            ],
        },
        {
            "name": "imports",
            "displayName": "Imports",
            "description": "Bulk imports.",
            "actions": [_action("import", "post", "/import", body=_IMPORT)],
        },
    ],
}


def acme() -> dict[str, Any]:
    """A fresh copy of the crafted connector (tests change it)."""
    return copy.deepcopy(ACME)


def fake_with_acme(**kwargs: Any) -> FakeAlloy:
    """A FakeAlloy serving its demo catalog and the crafted connector."""
    fake = FakeAlloy(**kwargs)
    fake.connectors["acme-crm"] = acme()
    return fake


async def generate_from(fake: FakeAlloy, *connector_ids: str) -> Generated:
    """What ``alloy-async codegen`` generates for these connectors from ``fake``'s catalog."""
    async with fake.client() as alloy:
        return generate(await fetch_catalog(alloy, connector_ids), api_version="2025-09")
