"""Every documented example response structures into the right model, with the right values.

The examples of the two OpenAPI files and of the quick start (seed 003) are embedded verbatim
as JSON under ``tests/fixtures/`` (each file names its source); ``test_fixtures_match_the_yaml``
checks them against the YAML files (copies in ``tests/fixtures/specs/``) so they cannot drift.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from alloy_async._convert import (
    execution_result,
    make_converter,
    structure,
    structure_list,
    unwrap,
)
from alloy_async.models import (
    Action,
    Connector,
    Credential,
    CredentialCreated,
    CredentialMetadata,
    Resource,
    User,
)

FIXTURES = Path(__file__).parent / "fixtures"
SPECS = FIXTURES / "specs"


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    data.pop("_source")
    return data


GENERATED = _load("alloy_generated_openapi_examples.json")
DETAILS = _load("connector_action_details_examples.json")
QUICK = _load("quick_start_examples.json")
UTC = UTC


# --- alloy-generated-openapi.yaml ------------------------------------------------------------


def test_generated_create_user() -> None:
    user = structure(GENERATED["CreateUser201Example"], User)
    assert user.user_id == "usr_abc123"
    assert user.username == "user-123"
    assert user.full_name is None
    assert dict(user.extra) == {"createdAt": "2026-04-19T10:00:00Z"}


def test_generated_token() -> None:
    # A bare {"token"} answer is not a model: the users service reads the string itself.
    body = GENERATED["GenerateToken200Example"]
    assert unwrap(body, "token", "data") is body
    assert body["token"] == "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.example.signature"


def test_generated_list_connectors() -> None:
    [shopify] = structure_list(GENERATED["ListConnectors200Example"], Connector, "connectors")
    assert shopify.id == "shopify"
    assert shopify.name == "Shopify"
    assert shopify.categories == ("E-Commerce",)
    assert shopify.category == "E-Commerce"
    assert shopify.icon_url == "https://assets.runalloy.com/icons/shopify.png"
    assert shopify.action_count == 45
    assert not shopify.extra


def test_generated_list_resources() -> None:
    [orders] = structure_list(GENERATED["ListConnectorResources200Example"], Resource, "resources")
    assert orders.name == "orders"
    assert orders.display_name == "Orders"
    assert orders.label == "Orders"
    assert orders.description == "Shopify order management"
    assert orders.action_ids == ("list", "get", "create")
    assert all(a.name is None for a in orders.actions)


def test_generated_action() -> None:
    action = structure(GENERATED["GetConnectorAction200Example"], Action)
    assert action.id == "list-orders"
    assert action.display_name == "List Orders"
    assert action.description == "Retrieve a list of Shopify orders"
    assert action.parameters == (
        {
            "name": "limit",
            "type": "integer",
            "required": False,
            "description": "Maximum number of orders to return",
        },
    )
    assert action.required_parameters == ()
    assert action.http_method is None
    assert action.request_body is None


def test_generated_execute() -> None:
    body = GENERATED["ExecuteConnectorAction200Example"]
    result = execution_result(body, status_code=200, request_id="req-1")
    assert result.success is True
    assert result.data == {"orders": [{"id": "order_001", "total": 99.99}]}
    assert result.raw is body
    assert result.status_code == 200
    assert result.request_id == "req-1"
    assert not result.extra


def test_generated_credential_metadata_single_object() -> None:
    # The generated spec answers with one object, not {"metadata": [...]}.
    [meta] = structure_list(
        GENERATED["GetCredentialMetadata200Example"], CredentialMetadata, "metadata", "data"
    )
    assert meta.authentication_type == "oauth2"
    assert meta.is_oauth
    assert meta.required_fields == ("shop_domain",)
    assert meta.auth_config_required is None
    assert meta.extra["connectorId"] == "shopify"
    assert meta.extra["requiredFields"][0]["description"] == "Your Shopify store domain"


def test_generated_create_credential() -> None:
    created = structure(GENERATED["CreateCredential201Example"], CredentialCreated)
    assert created.credential_id == "cred_xyz789"
    assert created.oauth_url is None
    assert not created.needs_redirect
    assert created.extra["connectorId"] == "shopify"


def test_generated_list_credentials() -> None:
    [cred] = structure_list(GENERATED["ListCredentials200Example"], Credential, "credentials")
    assert cred.credential_id == "cred_xyz789"
    assert cred.connector_id == "shopify"
    assert cred.user_id == "usr_abc123"
    assert cred.created_at == datetime(2026, 4, 19, 10, 0, tzinfo=UTC)
    assert cred.updated_at is None
    assert cred.name is None
    assert cred.type is None


# --- connector-action-details-openapi.yaml (docs.runalloy.com reference) --------------------


def test_reference_action_details() -> None:
    body = DETAILS["get-connector-action-details"]
    action = structure(body, Action)
    assert action.id == "chat_postMessage"
    assert action.display_name == "Post"
    assert action.description == "Posts a message into a channel."
    assert action.http_method == "post"
    assert action.method == "POST"
    assert action.path == "/chat.postMessage"
    assert action.required_parameters == ("token",)
    assert [p["name"] for p in action.parameters_in("header")] == ["token"]
    assert action.required_body_fields == ("channel", "text")
    assert action.request_body is not None
    assert action.request_body["properties"]["mrkdwn"]["type"] == "boolean"
    assert action.sample_success_response["channel"] == "C1H9RESGL"
    assert action.sample_success_response["message"]["attachments"][0]["id"] == 1
    assert not action.extra
    # The reference shape matches the model exactly: nothing unknown at all.
    assert make_converter(strict=True).structure(body, Action) == action


# --- quick start (seed 003) -------------------------------------------------------------------


def test_quick_start_create_user() -> None:
    user = structure(QUICK["create-user"], User)
    assert user == User(user_id="689593e23e4c93cae95fd75c")


def test_quick_start_connectors() -> None:
    [hubspot] = structure_list(QUICK["list-connectors"], Connector, "connectors")
    assert hubspot.id == "hubspot"
    assert hubspot.name == "Hubspot"
    assert hubspot.icon_url == "https://cdn.runalloy.com/icons/hubspot.png"
    assert hubspot.categories == ("crm", "oas")
    assert hubspot.category == "crm"
    assert hubspot.in_category("CRM")
    assert hubspot.action_count is None
    assert dict(hubspot.extra) == {"group": ["input"]}


def test_quick_start_resources() -> None:
    [contacts] = structure_list(QUICK["list-resources"], Resource, "resources")
    assert contacts.name == "contacts"
    assert contacts.display_name is None
    assert contacts.description == "Manage contacts."
    assert contacts.action_ids == ("gdprDeleteContacts", "listContacts")
    assert contacts.actions[1].name == "List contacts"
    assert contacts.actions[1].description == "Retrieve a list of contacts, with pagination."
    strict = make_converter(strict=True)
    assert strict.structure(QUICK["list-resources"]["resources"][0], Resource) == contacts


def test_quick_start_action() -> None:
    action = structure(QUICK["get-action-details"], Action)
    assert action.id == "createContact"
    assert action.display_name == "Create a contact"
    assert action.http_method == "post"
    assert action.path == "/crm/v3/objects/contacts"
    assert action.parameters == ()
    assert action.required_parameters == ()
    assert action.required_body_fields == ("properties",)
    assert action.sample_success_response["archived"] is True
    # A payload's own timestamps are data, not model fields: they stay strings.
    assert action.sample_success_response["createdAt"] == "2025-08-01T15:32:45.646Z"


def test_quick_start_credential_metadata() -> None:
    [meta] = structure_list(QUICK["credential-metadata"], CredentialMetadata, "metadata", "data")
    assert meta.authentication_type == "oauth2"
    assert meta.required_fields == ("userId", "redirectUri")
    assert meta.input_schema is None
    assert meta.sample_input is None
    assert meta.extra["properties"][1]["name"] == "redirectUri"


def test_quick_start_credentials() -> None:
    [cred] = structure_list(QUICK["list-credentials"], Credential, "credentials", "data")
    assert cred.credential_id == "6895sdba313a2ebsdfd9bbd97"
    assert cred.name == "Jane Merchant's Hubspot"
    assert cred.type == "hubspot-oauth2"
    stamp = datetime(2025, 8, 8, 6, 36, 53, 748000, tzinfo=UTC)
    assert cred.created_at == stamp
    assert cred.updated_at == stamp
    assert not cred.extra


# --- the fixtures are the YAML's examples ----------------------------------------------------


def _examples(node: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "examples" and isinstance(value, dict):
                for name, example in value.items():
                    if isinstance(example, dict) and "value" in example:
                        found[name] = example["value"]
            elif key == "example" and isinstance(value, dict) and "action" in value:
                found["get-connector-action-details"] = value
            else:
                found.update(_examples(value))
    elif isinstance(node, list):
        for item in node:
            found.update(_examples(item))
    return found


def _spec(name: str) -> Any:
    path = SPECS / name
    if not path.is_file():
        pytest.fail(
            f"the spec {path} is missing: copy it from /work/shared/specs "
            "(see tests/fixtures/specs/README.md)"
        )
    return yaml.safe_load(path.read_text())


def test_fixtures_match_the_yaml() -> None:
    """Catches: a JSON fixture drifting from its YAML spec, or the spec file going missing."""
    generated = _examples(_spec("alloy-generated-openapi.yaml"))
    assert set(GENERATED) <= set(generated), set(GENERATED) - set(generated)
    for name, value in GENERATED.items():
        assert generated[name] == value, name
    details = _examples(_spec("connector-action-details-openapi.yaml"))
    assert details["get-connector-action-details"] == DETAILS["get-connector-action-details"]
