"""The models themselves: secret-safe reprs, immutability, hashing, helpers, exports."""

from __future__ import annotations

import ast
from pathlib import Path
from types import MappingProxyType
from typing import Any

import attrs
import pytest

import alloy_async.models as models
from alloy_async.models import (
    Action,
    ActionSummary,
    CatalogAction,
    Connector,
    Credential,
    CredentialCreated,
    CredentialMetadata,
    ExecutionResult,
    Resource,
    StoredFile,
    UploadTarget,
    User,
)
from alloy_async.models._base import redact_url

MODELS: list[type[Any]] = [
    User,
    Connector,
    Resource,
    ActionSummary,
    Action,
    ExecutionResult,
    Credential,
    CredentialCreated,
    CredentialMetadata,
    UploadTarget,
    StoredFile,
    CatalogAction,
]
OAUTH_URL = (
    "https://production.runalloy.com/api/strategy/connector/slack/authorize"
    "?userId=689593e23e4c93cae95fd75c&redirectUri=https%3A%2F%2Fapp%2Fcb&token=SECRET-JWT"
)


def test_exports_are_sorted_and_complete() -> None:
    assert models.__all__ == sorted(models.__all__)
    for name in models.__all__:
        assert hasattr(models, name), name
    assert {"ExecuteJob", "JobOutcome", "BulkReport"} <= set(models.__all__)
    for cls in MODELS:
        assert cls.__name__ in models.__all__


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_every_model_is_documented_frozen_and_has_extra(cls: type[Any]) -> None:
    assert cls.__doc__
    names = [f.name for f in attrs.fields(cls)]
    assert names[-1] == "extra"
    assert all(n == n.lower() for n in names)
    assert attrs.fields_dict(cls)["extra"].default is models._base.EMPTY


def test_contract_field_names() -> None:
    expected = {
        User: ["user_id", "username", "full_name"],
        Connector: ["id", "name", "icon_url", "categories", "action_count"],
        Resource: ["name", "display_name", "description", "actions"],
        ActionSummary: ["id", "name", "description"],
        Action: [
            "id",
            "display_name",
            "description",
            "http_method",
            "path",
            "parameters",
            "request_body",
            "sample_success_response",
        ],
        ExecutionResult: ["success", "data", "raw", "status_code", "request_id"],
        Credential: [
            "credential_id",
            "name",
            "type",
            "connector_id",
            "user_id",
            "created_at",
            "updated_at",
        ],
        CredentialCreated: ["credential_id", "oauth_url", "success"],
        CredentialMetadata: [
            "authentication_type",
            "auth_config_required",
            "input_schema",
            "required_fields",
            "sample_input",
        ],
        UploadTarget: ["presigned_url", "s3_key", "md5", "type"],
        StoredFile: ["s3_key", "filename", "size", "last_modified"],
        CatalogAction: [
            "connector_id",
            "action_id",
            "slug",
            "name",
            "description",
            "resource",
            "is_connected",
        ],
    }
    for cls, names in expected.items():
        assert [f.name for f in attrs.fields(cls)][:-1] == names, cls.__name__


def test_frozen() -> None:
    user = User(user_id="u")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        user.user_id = "v"  # type: ignore[misc]
    with pytest.raises(TypeError):
        User("u")  # type: ignore[call-arg]  # keyword-only


def test_extra_is_read_only_even_from_a_dict() -> None:
    source = {"plan": "pro"}
    user = User(user_id="u", extra=source)
    assert isinstance(user.extra, MappingProxyType)
    source["plan"] = "free"
    assert user.extra["plan"] == "pro"
    with pytest.raises(TypeError):
        user.extra["plan"] = "x"  # type: ignore[index]


def test_hashable_and_equal_despite_json_fields() -> None:
    a = Action(id="a", parameters=({"name": "p"},), request_body={"type": "object"})
    b = Action(id="a", parameters=({"name": "p"},), request_body={"type": "object"})
    assert a == b
    assert hash(a) == hash(b)
    assert len({User(user_id="u", extra={"x": [1]}), User(user_id="u", extra={"x": [1]})}) == 1


# --- secrets in reprs -------------------------------------------------------------------------


def test_oauth_url_is_redacted_in_repr_but_intact() -> None:
    created = CredentialCreated(oauth_url=OAUTH_URL)
    text = repr(created)
    assert "SECRET-JWT" not in text
    assert "689593e23e4c93cae95fd75c" not in text
    assert "token=***" in text
    assert "/api/strategy/connector/slack/authorize" in text
    assert created.oauth_url == OAUTH_URL
    assert "SECRET-JWT" not in str(created)


def test_presigned_url_signature_is_redacted() -> None:
    url = "https://bucket.s3.amazonaws.com/k?X-Amz-Credential=AKIA&X-Amz-Signature=deadbeef"
    target = UploadTarget(presigned_url=url, s3_key="k")
    assert "deadbeef" not in repr(target)
    assert "AKIA" not in repr(target)
    assert target.presigned_url == url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (None, "None"),
        ("https://a/b", "'https://a/b'"),
        ("https://a/b?x=1&flag&y=", "'https://a/b?x=***&flag&y=***'"),
        ("https://user:pw@a/b#access_token=t", "'https://***@a/b#***'"),
    ],
)
def test_redact_url(url: str | None, shown: str) -> None:
    assert redact_url(url) == shown


def test_secret_keys_in_extra_are_masked() -> None:
    user = User(
        user_id="u", extra={"token": "T0K", "accessToken": "A", "refresh_token": "R", "ok": 1}
    )
    text = repr(user)
    for secret in ("T0K", "'A'", "'R'"):
        assert secret not in text
    assert "'ok': 1" in text
    assert user.extra["token"] == "T0K"


def test_execution_result_repr_leaves_out_raw() -> None:
    result = ExecutionResult(success=True, data=1, raw={"secret": "x"}, status_code=200)
    assert "raw" not in repr(result)


def test_no_field_named_token_is_shown() -> None:
    for name in models.__all__:
        cls = getattr(models, name)
        if attrs.has(cls):
            for field in attrs.fields(cls):
                if "token" in field.name.lower():
                    assert field.repr is False, f"{name}.{field.name}"


def test_models_import_only_attrs_and_stdlib() -> None:
    allowed = {"attrs", "collections", "datetime", "types", "typing", "__future__"}
    for path in Path(models.__file__).parent.glob("*.py"):
        if path.name == "bulk.py":  # another module's owner decides its imports
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0:
                assert node.module is not None
                assert node.module.split(".")[0] in allowed, (path.name, node.module)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert alias.name.split(".")[0] in allowed, (path.name, alias.name)


# --- helpers ----------------------------------------------------------------------------------


def test_connector_helpers() -> None:
    connector = Connector(id="hubspot", categories=("crm", "oas"))
    assert connector.category == "crm"
    assert connector.in_category("OAS")
    assert not connector.in_category("chat")
    assert Connector(id="x").category is None


def test_user_display_name() -> None:
    assert User(user_id="u").display_name == "u"
    assert User(user_id="u", username="n").display_name == "n"
    assert User(user_id="u", username="n", full_name="F").display_name == "F"


def test_action_helpers() -> None:
    action = Action(
        id="getIssue",
        http_method="get",
        parameters=(
            {"name": "owner", "in": "path", "required": True},
            {"name": "per_page", "in": "query", "required": False},
            {"name": "X-Trace", "in": "header"},
            {"in": "query", "required": True},
        ),
        request_body={"required": ["title", 3]},
    )
    assert action.method == "GET"
    assert action.required_parameters == ("owner",)
    assert [p.get("name") for p in action.parameters_in("query")] == ["per_page", None]
    assert action.required_body_fields == ("title",)
    assert Action(id="x").method is None


def test_resource_helpers() -> None:
    resource = Resource(name="contacts", actions=(ActionSummary(id="a"), ActionSummary(id="b")))
    assert resource.label == "contacts"
    assert resource.action_ids == ("a", "b")
    assert Resource(name="c", display_name="Contacts").label == "Contacts"


def test_credential_helpers() -> None:
    assert CredentialCreated(oauth_url=OAUTH_URL).needs_redirect
    assert not CredentialCreated(credential_id="c").needs_redirect
    assert CredentialMetadata(authentication_type="OAuth2").is_oauth
    assert not CredentialMetadata(authentication_type="apiKey").is_oauth
    assert CredentialMetadata().data_fields == ()


def test_upload_target_helper() -> None:
    assert UploadTarget(presigned_url="u", type="existing").already_uploaded
    assert not UploadTarget(presigned_url="u", type="new").already_uploaded


def test_execution_result_helpers_without_extra() -> None:
    result = ExecutionResult(success=True, status_code=200)
    assert result.execution_id is None
    assert result.pagination is None
