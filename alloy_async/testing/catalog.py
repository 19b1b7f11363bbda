"""The demo connector catalog FakeAlloy serves: five connectors, their resources and actions.

Shapes follow the quick start (seed 003) and the action-details reference: connectors carry
``id``/``name``/``icon``/``group``/``category[]``; resources carry ``actions[]`` summaries;
action details carry ``displayName``/``httpMethod``/``path``/``parameters``/``requestBody``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CONNECTORS"]


def _obj(required: list[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


_S = {"type": "string"}
_I = {"type": "integer"}


def _action(
    id: str,
    name: str,
    description: str,
    method: str,
    path: str,
    *,
    body: dict[str, Any] | None = None,
    parameters: list[dict[str, Any]] | None = None,
    sample: Any = None,
    paged: bool = False,
) -> dict[str, Any]:
    return {
        "id": id,
        "displayName": name,
        "description": description,
        "httpMethod": method,
        "path": path,
        "parameters": parameters or [],
        "requestBody": body,
        "sampleSuccessResponse": sample,
        "_paged": paged,
    }


def _param(name: str, where: str, required: bool = False, schema: Any = None) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required, "schema": schema or _S}


CONNECTORS: list[dict[str, Any]] = [
    {
        "id": "slack",
        "name": "Slack",
        "icon": "https://cdn.runalloy.com/icons/slack.png",
        "group": ["input", "output"],
        "category": ["communication"],
        "auth": [{"authenticationType": "oauth2", "authConfigRequired": False}],
        "resources": [
            {
                "name": "chat",
                "displayName": "Chat",
                "description": "Send and manage messages.",
                "actions": [
                    _action(
                        "chat_postMessage",
                        "Post a message",
                        "Sends a message to a channel.",
                        "post",
                        "/chat.postMessage",
                        body=_obj(["channel", "text"], channel=_S, text=_S, thread_ts=_S),
                        parameters=[_param("Content-Type", "header")],
                        sample={"ok": True, "channel": "C123", "ts": "1503435956.000247"},
                    ),
                ],
            },
            {
                "name": "conversations",
                "displayName": "Conversations",
                "description": "Channels and direct messages.",
                "actions": [
                    _action(
                        "conversations_list",
                        "List conversations",
                        "Lists channels in a workspace, with pagination.",
                        "get",
                        "/conversations.list",
                        parameters=[_param("limit", "query", schema=_I), _param("cursor", "query")],
                        sample={"ok": True, "channels": []},
                        paged=True,
                    ),
                ],
            },
        ],
    },
    {
        "id": "hubspot",
        "name": "Hubspot",
        "icon": "https://cdn.runalloy.com/icons/hubspot.png",
        "group": ["input"],
        "category": ["crm", "oas"],
        "auth": [{"authenticationType": "oauth2", "authConfigRequired": False}],
        "resources": [
            {
                "name": "contacts",
                "displayName": "Contacts",
                "description": "Manage contacts.",
                "actions": [
                    _action(
                        "createContact",
                        "Create a contact",
                        "Create a new contact record.",
                        "post",
                        "/crm/v3/objects/contacts",
                        body=_obj(
                            ["properties"],
                            properties=_obj(
                                ["firstname", "lastname", "email"],
                                firstname=_S,
                                lastname=_S,
                                email=_S,
                                company=_S,
                                website=_S,
                                phone=_S,
                            ),
                        ),
                        sample={"id": "string", "properties": {}, "archived": False},
                    ),
                    _action(
                        "listContacts",
                        "List contacts",
                        "Retrieve a list of contacts, with pagination.",
                        "get",
                        "/crm/v3/objects/contacts",
                        parameters=[
                            _param("limit", "query", schema=_I),
                            _param("offset", "query", schema=_I),
                        ],
                        sample={"data": [], "pagination": {"hasMore": False, "nextOffset": None}},
                        paged=True,
                    ),
                    _action(
                        "gdprDeleteContacts",
                        "GDPR delete contacts",
                        "Perform a GDPR delete operation on a list of contacts.",
                        "post",
                        "/crm/v3/objects/contacts/gdpr-delete",
                        body=_obj(["objectId"], objectId=_S),
                    ),
                ],
            }
        ],
    },
    {
        "id": "notion",
        "name": "Notion",
        "icon": "https://cdn.runalloy.com/icons/notion.png",
        "group": ["input", "output"],
        "category": ["productivity"],
        "auth": [{"authenticationType": "oauth2", "authConfigRequired": False}],
        "resources": [
            {
                "name": "pages",
                "displayName": "Pages",
                "description": "Search, create and read pages.",
                "actions": [
                    _action(
                        "post-search",
                        "Search",
                        "Searches all pages and databases shared with the integration.",
                        "post",
                        "/v1/search",
                        body=_obj([], query=_S, page_size=_I, filter={"type": "object"}),
                        parameters=[_param("Notion-Version", "header", required=True)],
                    ),
                    _action(
                        "post-page",
                        "Create a page",
                        "Creates a new page.",
                        "post",
                        "/v1/pages",
                        body=_obj(
                            ["parent", "properties"],
                            parent={"type": "object"},
                            properties={"type": "object"},
                        ),
                        parameters=[_param("Notion-Version", "header", required=True)],
                    ),
                    _action(
                        "retrieve-a-page",
                        "Retrieve a page",
                        "Retrieves a page by id.",
                        "get",
                        "/v1/pages/{page_id}",
                        parameters=[
                            _param("page_id", "path", required=True),
                            _param("Notion-Version", "header", required=True),
                        ],
                    ),
                ],
            }
        ],
    },
    {
        "id": "shopify",
        "name": "Shopify",
        "icon": "https://cdn.runalloy.com/icons/shopify.png",
        "group": ["input"],
        "category": ["ecommerce"],
        "auth": [
            {
                "authenticationType": "oauth2",
                "authConfigRequired": True,
                "data": {"shopName": _S},
            }
        ],
        "resources": [
            {
                "name": "orders",
                "displayName": "Orders",
                "description": "Store orders.",
                "actions": [
                    _action(
                        "listOrders",
                        "List orders",
                        "Lists the store's orders, with pagination.",
                        "get",
                        "/admin/api/2024-01/orders.json",
                        parameters=[_param("limit", "query", schema=_I)],
                        paged=True,
                    ),
                    _action(
                        "getOrder",
                        "Get an order",
                        "Retrieves one order.",
                        "get",
                        "/admin/api/2024-01/orders/{order_id}.json",
                        parameters=[_param("order_id", "path", required=True)],
                    ),
                ],
            }
        ],
    },
    {
        "id": "sendgrid",
        "name": "SendGrid",
        "icon": "https://cdn.runalloy.com/icons/sendgrid.png",
        "group": ["output"],
        "category": "marketing",  # a plain string on purpose: one source sends it that way
        "auth": [{"authenticationType": "apiKey", "data": {"apiKey": _S}}],
        "resources": [
            {
                "name": "mail",
                "displayName": "Mail",
                "description": "Transactional email.",
                "actions": [
                    _action(
                        "sendEmail",
                        "Send an email",
                        "Sends one transactional email.",
                        "post",
                        "/v3/mail/send",
                        body=_obj(["to", "subject"], to=_S, subject=_S, text=_S),
                        sample={"messageId": "string"},
                    ),
                ],
            }
        ],
    },
]
