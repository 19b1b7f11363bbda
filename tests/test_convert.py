"""The converter: alternative shapes, leniency, ``extra``, datetimes, round trips, fuzzing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alloy_async import _convert
from alloy_async._convert import (
    execution_result,
    make_converter,
    structure,
    structure_list,
    unstructure,
    unwrap,
)
from alloy_async.errors import InvalidResponseError
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

UTC = UTC
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


def test_one_converter_not_the_global_one() -> None:
    import cattrs

    assert _convert.converter is not cattrs.global_converter
    assert _convert.converter.detailed_validation is False


# --- alternative shapes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        {"id": "slack", "name": "Slack", "icon": "https://i/s.png", "category": ["chat"]},
        {"connectorId": "slack", "name": "Slack", "iconUrl": "https://i/s.png", "category": "chat"},
        {"id": "slack", "name": "Slack", "iconUrl": "https://i/s.png", "categories": ["chat"]},
        {"id": "slack", "name": "Slack", "icon_url": "https://i/s.png", "categories": "chat"},
    ],
)
def test_connector_shapes(payload: dict[str, Any]) -> None:
    connector = structure(payload, Connector)
    assert connector == Connector(
        id="slack", name="Slack", icon_url="https://i/s.png", categories=("chat",)
    )


def test_connector_canonical_key_beats_alias_and_alias_is_kept() -> None:
    connector = structure(
        {"connectorId": "old", "id": "new", "icon": "a", "iconUrl": "b"}, Connector
    )
    assert connector.id == "new"
    assert connector.icon_url == "b"
    assert dict(connector.extra) == {"connectorId": "old", "icon": "a"}


def test_connector_action_count_and_missing_category() -> None:
    connector = structure({"id": "x", "actionCount": "12", "category": None}, Connector)
    assert connector.action_count == 12
    assert connector.categories == ()
    assert connector.category is None


@pytest.mark.parametrize("wrapped", [True, False])
def test_action_wrapped_or_bare(wrapped: bool) -> None:
    inner = {"id": "send", "displayName": "Send", "httpMethod": "post", "path": "/send"}
    action = structure({"action": inner} if wrapped else inner, Action)
    assert action == Action(id="send", display_name="Send", http_method="post", path="/send")


def test_action_wrapper_siblings_go_to_extra() -> None:
    action = structure({"action": {"id": "a"}, "meta": 1}, Action)
    assert dict(action.extra) == {"meta": 1}


@pytest.mark.parametrize("key", ["data", "users"])
def test_user_lists(key: str) -> None:
    body = {key: [{"userId": "u1", "username": "a", "fullName": "A"}, {"userId": "u2"}]}
    users = structure_list(body, User, "data", "users")
    assert users == [User(user_id="u1", username="a", full_name="A"), User(user_id="u2")]


def test_bare_list_and_null_list() -> None:
    assert structure_list([{"userId": "u"}, None], User, "data") == [User(user_id="u")]
    assert structure_list({"data": None}, User, "data") == []
    assert structure_list(None, User, "data") == []


def test_list_not_found_raises() -> None:
    with pytest.raises(InvalidResponseError, match="User"):
        structure_list({"items": []}, User, "data", "users")
    with pytest.raises(InvalidResponseError, match="User"):
        structure_list({"data": "nope"}, User, "data")
    with pytest.raises(InvalidResponseError, match="User"):
        structure_list("nope", User, "data")


@pytest.mark.parametrize("key", ["credentials", "data"])
def test_credential_lists(key: str) -> None:
    body = {key: [{"credentialId": "c1", "type": "slack-oauth2", "name": "n"}]}
    [cred] = structure_list(body, Credential, "credentials", "data")
    assert cred == Credential(credential_id="c1", type="slack-oauth2", name="n")


@pytest.mark.parametrize(
    ("body", "credential_id", "oauth_url", "success"),
    [
        ({"oauthUrl": "https://x/authorize?token=t"}, None, "https://x/authorize?token=t", None),
        ({"credentialId": "c1"}, "c1", None, None),
        ({"success": True, "credentialId": "c1"}, "c1", None, True),
    ],
)
def test_create_credential_shapes(
    body: dict[str, Any], credential_id: str | None, oauth_url: str | None, success: bool | None
) -> None:
    created = structure(body, CredentialCreated)
    assert created.credential_id == credential_id
    assert created.oauth_url == oauth_url
    assert created.success is success
    assert created.needs_redirect is (oauth_url is not None)


def test_create_credential_with_neither_raises() -> None:
    with pytest.raises(InvalidResponseError, match="CredentialCreated"):
        structure({"success": True}, CredentialCreated)


@pytest.mark.parametrize("key", ["metadata", "data"])
def test_metadata_lists(key: str) -> None:
    entry = {
        "authenticationType": "oauth2",
        "authConfigRequired": False,
        "inputSchema": {
            "type": "object",
            "required": ["userId", "authenticationType", "redirectUri"],
            "properties": {"data": {"type": "object", "properties": {"subdomain": {}}}},
        },
        "sampleInput": {"userId": "u", "authenticationType": "oauth2", "redirectUri": "r"},
    }
    [meta] = structure_list({key: [entry]}, CredentialMetadata, "metadata", "data")
    assert meta.authentication_type == "oauth2"
    assert meta.auth_config_required is False
    assert meta.required_fields == ("userId", "authenticationType", "redirectUri")
    assert meta.sample_input == entry["sampleInput"]
    assert meta.data_fields == ("subdomain",)
    assert meta.is_oauth


def test_metadata_required_fields_from_properties_only_when_required() -> None:
    meta = structure(
        {
            "authenticationType": "apiKey",
            "properties": [{"name": "a", "required": True}, {"name": "b"}],
        },
        CredentialMetadata,
    )
    assert meta.required_fields == ("a",)
    assert not meta.is_oauth


def test_metadata_explicit_required_fields_win() -> None:
    meta = structure(
        {"requiredFields": ["x"], "inputSchema": {"required": ["y"]}}, CredentialMetadata
    )
    assert meta.required_fields == ("x",)


def test_upload_target_wrapped() -> None:
    body = {
        "presignedUrl": {
            "md5": "1B2M2Y8AsgTpgAmY7PhCfg==",
            "presignedUrl": "https://s3/bucket/key?X-Amz-Signature=abc",
            "type": "new",
            "s3Key": "users/u/key",
        }
    }
    target = structure(body, UploadTarget)
    assert target.presigned_url == "https://s3/bucket/key?X-Amz-Signature=abc"
    assert target.s3_key == "users/u/key"
    assert target.md5 == "1B2M2Y8AsgTpgAmY7PhCfg=="
    assert target.type == "new"
    assert not target.already_uploaded
    assert structure(body["presignedUrl"], UploadTarget) == target


def test_files_list() -> None:
    body = {
        "files": [
            {"s3Key": "k", "filename": "a.pdf", "size": 10, "lastModified": "2025-01-02T03:04:05Z"},
            {"Key": "k2", "Size": "7", "LastModified": "2025-01-02T03:04:05.1+0100"},
        ]
    }
    first, second = structure_list(body, StoredFile, "files", "data")
    assert first == StoredFile(
        s3_key="k",
        filename="a.pdf",
        size=10,
        last_modified=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    assert second.s3_key == "k2"
    assert second.size == 7
    assert second.last_modified == datetime(
        2025, 1, 2, 3, 4, 5, 100000, tzinfo=timezone(timedelta(hours=1))
    )


def test_resources_list_with_string_and_object_actions() -> None:
    body = {"resources": [{"name": "orders", "actions": ["list", {"id": "get", "name": "Get"}]}]}
    [resource] = structure_list(body, Resource, "resources")
    assert resource.actions == (ActionSummary(id="list"), ActionSummary(id="get", name="Get"))


def test_catalog_action_from_peer_catalog_shape() -> None:
    item = {
        "slug": "GITHUB_CREATE_ISSUE",
        "name": "Create issue",
        "description": "d",
        "parameters": {"type": "object"},
        "connectorSlug": "github",
        "isConnected": False,
    }
    action = structure(item, CatalogAction)
    assert action.connector_id == "github"
    assert action.action_id == "GITHUB_CREATE_ISSUE"
    assert action.slug == "GITHUB_CREATE_ISSUE"
    assert action.is_connected is False
    assert dict(action.extra) == {"parameters": {"type": "object"}}


def test_unwrap() -> None:
    assert unwrap({"action": {"id": "a"}}, "action") == {"id": "a"}
    flat = {"presignedUrl": "https://s3/k", "s3Key": "k"}
    assert unwrap(flat, "presignedUrl", "data") is flat
    assert unwrap({"data": None, "users": [1]}, "data", "users") == [1]
    assert unwrap([1], "data") == [1]
    assert unwrap({"x": 1}, "data") == {"x": 1}


# --- execution results ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "data", "success", "extra"),
    [
        ({"success": True, "result": {"messageId": "1"}}, {"messageId": "1"}, True, {}),
        (
            {"executionId": "e1", "status": "success", "responseData": {"a": 1}},
            {"a": 1},
            True,
            {"executionId": "e1", "status": "success"},
        ),
        ({"status": "failed", "responseData": None}, None, False, {"status": "failed"}),
        ({"success": False, "data": [1]}, [1], False, {}),
        (
            {"data": [1], "pagination": {"hasMore": True, "nextOffset": 50}},
            [1],
            True,
            {"pagination": {"hasMore": True, "nextOffset": 50}},
        ),
        ({"success": "false", "result": 1, "data": 2}, 1, False, {"data": 2}),
        ({}, None, True, {}),
    ],
)
def test_execution_result_shapes(
    body: dict[str, Any], data: Any, success: bool, extra: dict[str, Any]
) -> None:
    result = execution_result(body, status_code=200, request_id="r")
    assert result.data == data
    assert result.success is success
    assert result.raw is body
    assert dict(result.extra) == extra
    assert result.request_id == "r"


def test_execution_result_helpers() -> None:
    body = {"executionId": "e1", "data": [], "pagination": {"hasMore": False}}
    result = execution_result(body, status_code=200, request_id=None)
    assert result.execution_id == "e1"
    assert result.pagination == {"hasMore": False}


@pytest.mark.parametrize("body", [[1, 2], "text", None])
def test_execution_result_non_object_body_is_the_payload(body: Any) -> None:
    result = execution_result(body, status_code=201, request_id=None)
    assert result.data == body
    assert result.success is True
    assert execution_result(body, status_code=302, request_id=None).success is False


# --- leniency ---------------------------------------------------------------------------------


def test_unknown_keys_land_in_read_only_extra() -> None:
    user = structure({"userId": "u", "createdAt": "2026-01-01", "plan": {"tier": 2}}, User)
    assert dict(user.extra) == {"createdAt": "2026-01-01", "plan": {"tier": 2}}
    with pytest.raises(TypeError):
        user.extra["new"] = 1  # type: ignore[index]
    assert structure({"userId": "u"}, User).extra == {}


def test_strict_converter_refuses_unknown_keys() -> None:
    strict = make_converter(strict=True)
    assert strict.structure({"userId": "u", "fullName": "F"}, User) == User(
        user_id="u", full_name="F"
    )
    assert strict.structure({"connectorId": "c", "icon": "i"}, Connector).icon_url == "i"
    with pytest.raises(InvalidResponseError, match=r"unknown keys.*plan"):
        strict.structure({"userId": "u", "plan": 1}, User)


def test_null_and_missing_values() -> None:
    connector = structure(
        {"id": "c", "name": None, "categories": None, "actionCount": None}, Connector
    )
    assert connector == Connector(id="c")
    action = structure({"id": "a", "parameters": None, "requestBody": None}, Action)
    assert action.parameters == ()
    assert action.request_body is None
    assert action.required_parameters == ()
    assert action.required_body_fields == ()


def test_wrong_scalar_types_are_coerced_or_dropped() -> None:
    connector = structure(
        {"id": 42, "name": {"en": "x"}, "actionCount": 3.0, "categories": ["a", 1, None, {}]},
        Connector,
    )
    assert connector.id == "42"
    assert connector.name is None
    assert connector.action_count == 3
    assert connector.categories == ("a", "1")
    meta = structure({"authConfigRequired": "true", "inputSchema": [1]}, CredentialMetadata)
    assert meta.auth_config_required is True
    assert meta.input_schema is None
    stored = structure({"s3Key": "k", "size": "big"}, StoredFile)
    assert stored.size is None
    action = structure({"id": "a", "parameters": [{"name": "p"}, "junk"]}, Action)
    assert action.parameters == ({"name": "p"},)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([], "User: expected a JSON object, got list"),
        ("u", "User: expected a JSON object, got str"),
        (None, "User: expected a JSON object, got NoneType"),
        ({}, "User: missing required field 'userId'"),
        ({"userId": None}, "User: expected str, got null"),
        ({"userId": ["u"]}, "User: expected str, got list"),
    ],
)
def test_unusable_payload_raises_naming_the_model(payload: Any, message: str) -> None:
    with pytest.raises(InvalidResponseError) as info:
        structure(payload, User)
    assert str(info.value) == message


def test_nested_error_names_both_models() -> None:
    with pytest.raises(InvalidResponseError, match="Resource: ActionSummary"):
        structure({"name": "r", "actions": [{"name": "no id"}]}, Resource)


# --- datetimes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-08-08T06:36:53.748Z", datetime(2025, 8, 8, 6, 36, 53, 748000, tzinfo=UTC)),
        ("2025-08-08T06:36:53Z", datetime(2025, 8, 8, 6, 36, 53, tzinfo=UTC)),
        ("2025-08-08T06:36:53.1234567Z", datetime(2025, 8, 8, 6, 36, 53, 123456, tzinfo=UTC)),
        ("2025-08-08T06:36:53", datetime(2025, 8, 8, 6, 36, 53, tzinfo=UTC)),
        (
            "2025-08-08T08:36:53+02:00",
            datetime(2025, 8, 8, 8, 36, 53, tzinfo=timezone(timedelta(hours=2))),
        ),
        ("2025-08-08", datetime(2025, 8, 8, tzinfo=UTC)),
        (1754635013, datetime(2025, 8, 8, 6, 36, 53, tzinfo=UTC)),
        (1754635013748, datetime(2025, 8, 8, 6, 36, 53, 748000, tzinfo=UTC)),
    ],
)
def test_datetimes_are_aware(text: Any, expected: datetime) -> None:
    cred = structure({"credentialId": "c", "createdAt": text}, Credential)
    assert cred.created_at == expected
    assert cred.created_at is not None
    assert cred.created_at.tzinfo is not None
    assert not cred.extra


@pytest.mark.parametrize("bad", ["yesterday", "2025-13-45T00:00:00Z", True, {"t": 1}, 1e300])
def test_bad_datetime_is_none_and_kept_in_extra(bad: Any) -> None:
    cred = structure({"credentialId": "c", "updatedAt": bad}, Credential)
    assert cred.updated_at is None
    assert cred.extra["updatedAt"] == bad


# --- unstructure ------------------------------------------------------------------------------


def test_unstructure_is_camel_case_without_none() -> None:
    cred = Credential(
        credential_id="c",
        connector_id="slack",
        created_at=datetime(2025, 8, 8, 6, 36, 53, 748000, tzinfo=UTC),
    )
    assert unstructure(cred) == {
        "credentialId": "c",
        "connectorId": "slack",
        "createdAt": "2025-08-08T06:36:53.748000Z",
    }
    resource = Resource(name="r", actions=(ActionSummary(id="a"),))
    assert unstructure(resource) == {"name": "r", "actions": [{"id": "a"}]}


@pytest.mark.parametrize(
    ("cls", "payload"),
    [
        (User, {"userId": "u", "username": "n", "fullName": "F", "createdAt": "x"}),
        (Connector, {"id": "c", "categories": ["a", "b"], "actionCount": 3, "group": ["input"]}),
        (
            Action,
            {
                "id": "a",
                "displayName": "A",
                "parameters": [{"name": "p", "required": True}],
                "requestBody": {"type": "object"},
                "sampleSuccessResponse": [1, {"x": None}],
            },
        ),
        (
            Credential,
            {"credentialId": "c", "updatedAt": "not a date", "createdAt": "2025-01-01T00:00:00Z"},
        ),
        (
            CredentialMetadata,
            {"authenticationType": "oauth2", "properties": [{"name": "u", "required": True}]},
        ),
        (
            CredentialMetadata,
            {"authType": "basic", "requiredFields": [{"name": "x", "required": True}]},
        ),
        (UploadTarget, {"presignedUrl": "https://s3/k?sig=1", "s3Key": "k", "type": "existing"}),
        (StoredFile, {"s3Key": "k", "size": 1, "lastModified": "2025-01-01T00:00:00.5+02:00"}),
        (CatalogAction, {"connectorId": "c", "actionId": "a", "isConnected": True, "x": 1}),
    ],
)
def test_round_trip(cls: type[Any], payload: dict[str, Any]) -> None:
    model = structure(payload, cls)
    assert structure(unstructure(model), cls) == model


def test_unstructure_refuses_non_models() -> None:
    with pytest.raises(TypeError):
        unstructure(42)


# --- fuzzing ----------------------------------------------------------------------------------

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(["2025-08-08T06:36:53.748Z", "true", "12", "oauth2", ""]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def _keys(cls: type[Any]) -> list[str]:
    keys = list(_convert._key_map(cls))
    return [*keys, "action", "presignedUrl", "resourceId", "properties", "requiredFields"]


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
@settings(max_examples=150, database=None, deadline=None)
@given(data=st.data())
def test_arbitrary_json_only_ever_raises_invalid_response(cls: type[Any], data: Any) -> None:
    payload = data.draw(
        st.dictionaries(st.sampled_from(_keys(cls)) | st.text(max_size=8), _json, max_size=8)
        | _json
    )
    try:
        model = structure(payload, cls)
    except InvalidResponseError:
        return
    assert isinstance(model, cls)
    assert attrs.has(type(model))
    unstructure(model)
