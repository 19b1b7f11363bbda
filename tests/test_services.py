"""Every service call against strict FakeAlloy: method, path, headers and body on the wire."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from alloy_async import (
    AlloyClient,
    BadRequestError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    UnprocessableEntityError,
)
from alloy_async.models import (
    Action,
    CatalogAction,
    Connector,
    Credential,
    CredentialCreated,
    ExecutionResult,
    Resource,
    StoredFile,
    UploadTarget,
    User,
)
from alloy_async.services.actions import catalog_slug
from alloy_async.testing import FakeAlloy, RecordedRequest

MD5_HEX = "9e107d9d372bb6826bd81d3542a419d6"


@pytest.fixture
def fake() -> FakeAlloy:
    return FakeAlloy(strict=True)


@pytest.fixture
async def alloy(fake: FakeAlloy) -> Any:
    async with fake.client() as client:
        yield client


def last(fake: FakeAlloy) -> RecordedRequest:
    return fake.requests[-1]


def wire(req: RecordedRequest) -> tuple[str, str, Any]:
    return req.method, req.path, req.json


async def test_users_create_sends_documented_body(fake: FakeAlloy, alloy: AlloyClient) -> None:
    """POST /users {username, fullName} -> User with the new id and what was sent."""
    user = await alloy.users.create("merchant_123@example.com", full_name="Jane Merchant")
    assert wire(last(fake)) == (
        "POST",
        "/users",
        {"username": "merchant_123@example.com", "fullName": "Jane Merchant"},
    )
    assert "x-alloy-userid" not in last(fake).headers
    assert isinstance(user, User)
    assert len(user.user_id) == 24
    assert (user.username, user.full_name) == ("merchant_123@example.com", "Jane Merchant")
    with pytest.raises(ConflictError):
        await alloy.users.create("merchant_123@example.com")


async def test_users_read_update_delete(fake: FakeAlloy, alloy: AlloyClient) -> None:
    """GET/PUT/DELETE /users/{id}; lookup by username works too; list returns every user."""
    uid = fake.add_user("a@example.com", "A")
    fake.add_user("b@example.com")
    assert (await alloy.users.get(uid)).username == "a@example.com"
    assert wire(last(fake)) == ("GET", f"/users/{uid}", None)
    assert (await alloy.users.get("a@example.com")).user_id == uid
    assert last(fake).path == "/users/a%40example.com"
    users = await alloy.users.list().to_list()
    assert [u.username for u in users] == ["a@example.com", "b@example.com"]
    updated = await alloy.users.update(uid, full_name="Alice")
    assert wire(last(fake)) == ("PUT", f"/users/{uid}", {"fullName": "Alice"})
    assert updated.full_name == "Alice"
    assert await alloy.users.delete(uid) is None
    assert wire(last(fake)) == ("DELETE", f"/users/{uid}", None)
    with pytest.raises(NotFoundError):
        await alloy.users.get(uid)
    with pytest.raises(InvalidRequestError, match="username or full_name"):
        await alloy.users.update("x")


async def test_users_token(fake: FakeAlloy, alloy: AlloyClient) -> None:
    """GET /users/{id}/token returns the JWT string."""
    uid = fake.add_user("t@example.com")
    token = await alloy.users.token(uid)
    assert token.count(".") == 2
    assert last(fake).path == f"/users/{uid}/token"
    assert last(fake).query == {"userId": uid}


async def test_connectors_list_get_resources(fake: FakeAlloy, alloy: AlloyClient) -> None:
    """The catalog, one connector, and its resources, all typed."""
    connectors = await alloy.connectors.list().to_list()
    assert all(isinstance(c, Connector) for c in connectors)
    assert {c.id for c in connectors} == {"slack", "hubspot", "notion", "shopify", "sendgrid"}
    assert wire(last(fake)) == ("GET", "/connectors", None)
    hubspot = next(c for c in connectors if c.id == "hubspot")
    assert hubspot.categories == ("crm", "oas")
    assert hubspot.icon_url == "https://cdn.runalloy.com/icons/hubspot.png"
    sendgrid = next(c for c in connectors if c.id == "sendgrid")
    assert sendgrid.categories == ("marketing",)  # sent as a plain string
    crm = await alloy.connectors.list(category="CRM").to_list()
    assert [c.id for c in crm] == ["hubspot"]
    slack = await alloy.connectors.get("slack")
    assert (slack.id, slack.name) == ("slack", "Slack")
    resources = await alloy.connectors.resources("hubspot")
    assert wire(last(fake)) == ("GET", "/connectors/hubspot/resources", None)
    assert isinstance(resources[0], Resource)
    assert [a.id for a in resources[0].actions] == [
        "createContact",
        "listContacts",
        "gdprDeleteContacts",
    ]


async def test_actions_get(fake: FakeAlloy, alloy: AlloyClient) -> None:
    """GET .../actions/{id} unwraps {"action": {...}} into Action."""
    action = await alloy.actions.get("slack", "chat_postMessage", user_id="u1")
    assert isinstance(action, Action)
    assert last(fake).path == "/connectors/slack/actions/chat_postMessage"
    assert last(fake).headers["x-alloy-userid"] == "u1"
    assert (action.http_method, action.path) == ("post", "/chat.postMessage")
    assert action.request_body is not None
    assert action.request_body["required"] == ["channel", "text"]
    with pytest.raises(NotFoundError):
        await alloy.actions.get("slack", "chat_PostMessage")  # case-sensitive


async def test_execute_wire_shape_and_result(fake: FakeAlloy, alloy: AlloyClient) -> None:
    """POST .../execute sends the documented body and the user header; result is typed."""
    uid = fake.add_user("e@example.com")
    cred = fake.add_credential(uid, "notion")
    result = await alloy.actions.execute(
        "notion",
        "retrieve-a-page",
        credential_id=cred,
        user_id=uid,
        path_params={"page_id": "p1"},
        query_parameters={"filter": "x"},
        additional_headers={"Notion-Version": "2022-06-28"},
    )
    req = last(fake)
    assert (req.method, req.path) == ("POST", "/connectors/notion/actions/retrieve-a-page/execute")
    assert req.headers["x-alloy-userid"] == uid
    assert req.headers["content-type"] == "application/json"
    assert req.json == {
        "credentialId": cred,
        "queryParameters": {"filter": "x"},
        "pathParams": {"page_id": "p1"},
        "additionalHeaders": {"Notion-Version": "2022-06-28"},
    }
    assert isinstance(result, ExecutionResult)
    assert result.success is True
    assert result.data == {"id": "p1", "object": "retrieve-a-page"}
    assert result.raw == {"success": True, "result": result.data}
    assert result.status_code == 200
    assert result.request_id is not None and result.request_id.startswith("req_")
    assert len(fake.executions) == 1


@pytest.mark.parametrize("shape", ["result", "responseData", "data"])
async def test_execute_output_shapes(shape: str) -> None:
    """result / responseData / data all become ExecutionResult.data."""
    fake = FakeAlloy(execute_shape=shape)
    uid = fake.add_user("s@example.com")
    cred = fake.add_credential(uid, "sendgrid")
    async with fake.client() as alloy:
        res = await alloy.actions.execute(
            "sendgrid",
            "sendEmail",
            credential_id=cred,
            user_id=uid,
            request_body={"to": "x@example.com", "subject": "hi"},
        )
    assert set(res.data) == {"messageId"}
    assert res.raw[shape] == res.data


async def test_execute_errors(fake: FakeAlloy, alloy: AlloyClient) -> None:
    """Wrong user, wrong connector, a third-party validation error: each typed, none retried."""
    a = fake.add_user("a@example.com")
    b = fake.add_user("b@example.com")
    cred = fake.add_credential(a, "slack")
    with pytest.raises(PermissionDeniedError):
        await alloy.actions.execute(
            "slack",
            "chat_postMessage",
            credential_id=cred,
            user_id=b,
            request_body={"channel": "c", "text": "t"},
        )
    with pytest.raises(BadRequestError, match="another connector"):
        await alloy.actions.execute(
            "sendgrid",
            "sendEmail",
            credential_id=cred,
            user_id=a,
            request_body={"to": "t", "subject": "s"},
        )
    with pytest.raises(BadRequestError) as info:
        await alloy.actions.execute(
            "slack",
            "chat_postMessage",
            credential_id=cred,
            user_id=a,
            request_body={"channel": "c"},
        )
    assert info.value.source == "THIRD_PARTY"
    assert fake.executions == []
    assert len([r for r in fake.requests if r.route == "execute"]) == 3


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"credential_id": ""}, "credential_id"),
        ({"credential_id": 5}, "credential_id"),
        ({"credential_id": "c", "query_parameters": ["a"]}, "query_parameters"),
        ({"credential_id": "c", "path_params": "x"}, "path_params"),
        ({"credential_id": "c", "additional_headers": {"a": "b\r\nc"}}, "additional_headers"),
        ({"credential_id": "c", "user_id": ""}, "user_id"),
    ],
)
async def test_execute_bad_arguments_name_the_field(
    fake: FakeAlloy, alloy: AlloyClient, kwargs: dict[str, Any], field: str
) -> None:
    """Bad arguments are refused before sending, naming the argument."""
    with pytest.raises(InvalidRequestError) as info:
        await alloy.actions.execute("slack", "chat_postMessage", **kwargs)
    assert info.value.field == field
    assert fake.requests == []


async def test_paginate_pages_through_execute(fake: FakeAlloy, alloy: AlloyClient) -> None:
    """actions.paginate sends limit/offset in queryParameters and yields every record once."""
    uid = fake.add_user("p@example.com")
    cred = fake.add_credential(uid, "hubspot")
    items = [
        item
        async for item in alloy.actions.paginate(
            "hubspot", "listContacts", credential_id=cred, user_id=uid, page_size=50
        )
    ]
    assert [i["id"] for i in items] == [f"rec_{n:06d}" for n in range(120)]
    offsets = [r.json["queryParameters"] for r in fake.requests]
    assert offsets == [
        {"limit": 50, "offset": 0},
        {"limit": 50, "offset": 50},
        {"limit": 50, "offset": 100},
    ]
    body_mode = alloy.actions.paginate(
        "hubspot", "listContacts", credential_id=cred, user_id=uid, page_in="body", page_size=7
    )
    assert len(await body_mode.to_list(limit=10)) == 10
    assert last(fake).json["requestBody"] == {"limit": 7, "offset": 7}
    with pytest.raises(InvalidRequestError) as info:
        alloy.actions.paginate("hubspot", "listContacts", credential_id=cred, page_size=51)
    assert info.value.field == "page_size"


async def test_credentials_oauth_flow(fake: FakeAlloy, alloy: AlloyClient) -> None:
    """metadata -> create (oauthUrl) -> consent -> list -> delete."""
    uid = fake.add_user("o@example.com", "Olivia")
    meta = await alloy.credentials.metadata("slack")
    assert last(fake).path == "/connectors/slack/credentials/metadata"
    assert meta[0].authentication_type == "oauth2"
    assert "redirectUri" in meta[0].required_fields
    created = await alloy.credentials.create(
        "slack",
        user_id=uid,
        authentication_type="oauth2",
        redirect_uri="https://app.example.com/oauth/callback",
    )
    assert wire(last(fake)) == (
        "POST",
        "/connectors/slack/credentials",
        {
            "userId": uid,
            "authenticationType": "oauth2",
            "redirectUri": "https://app.example.com/oauth/callback",
        },
    )
    assert isinstance(created, CredentialCreated)
    assert created.credential_id is None and created.oauth_url is not None
    assert "token=" in created.oauth_url and "token=***" in repr(created)
    cred_id = fake.complete_oauth(created.oauth_url)
    listed = await alloy.credentials.list("slack", user_id=uid).to_list()
    req = last(fake)
    assert req.headers["x-alloy-userid"] == uid and req.query == {"userId": uid}
    assert [c.credential_id for c in listed] == [cred_id]
    assert isinstance(listed[0], Credential)
    assert listed[0].type == "slack-oauth2"
    assert listed[0].created_at is not None and listed[0].created_at.tzinfo == UTC
    assert isinstance(listed[0].created_at, datetime)
    await alloy.credentials.delete("slack", cred_id, user_id=uid)
    assert wire(last(fake)) == ("DELETE", f"/connectors/slack/credentials/{cred_id}", None)
    assert await alloy.credentials.list("slack", user_id=uid).to_list() == []


async def test_credentials_api_key_flow(fake: FakeAlloy, alloy: AlloyClient) -> None:
    """An API-key connector answers credentialId at once, usable for execute."""
    uid = fake.add_user("k@example.com")
    created = await alloy.credentials.create(
        "sendgrid", user_id=uid, authentication_type="apiKey", data={"apiKey": "SG.secret"}
    )
    assert last(fake).json["data"] == {"apiKey": "SG.secret"}
    assert created.oauth_url is None and created.credential_id is not None
    res = await alloy.actions.execute(
        "sendgrid",
        "sendEmail",
        credential_id=created.credential_id,
        user_id=uid,
        request_body={"to": "x@example.com", "subject": "s"},
    )
    assert res.success


async def test_credentials_create_errors(fake: FakeAlloy, alloy: AlloyClient) -> None:
    """Unsupported auth types and missing inputs are typed errors; a redirect_uri must be
    absolute (it is optional: see test_credentials_create.py)."""
    uid = fake.add_user("x@example.com")
    with pytest.raises(UnprocessableEntityError):
        await alloy.credentials.create("slack", user_id=uid, authentication_type="apiKey")
    with pytest.raises(InvalidRequestError) as info:
        await alloy.credentials.create(
            "slack", user_id=uid, authentication_type="oauth2", redirect_uri="/cb"
        )
    assert info.value.field == "redirect_uri"
    with pytest.raises(BadRequestError, match="authConfigId"):
        await alloy.credentials.create(
            "shopify",
            user_id=uid,
            authentication_type="oauth2",
            redirect_uri="https://a.example.com/cb",
            data={"shopName": "s"},
        )


async def test_files(fake: FakeAlloy, alloy: AlloyClient) -> None:
    """Upload request (new, then existing by MD5), list, delete with a slashed key."""
    uid = fake.add_user("f@example.com")
    target = await alloy.files.request_upload(
        filename="report.pdf", mime_type="application/pdf", md5=MD5_HEX, user_id=uid
    )
    assert wire(last(fake)) == (
        "POST",
        "/connectors/files/upload/request",
        {"filename": "report.pdf", "mimeType": "application/pdf", "md5": MD5_HEX},
    )
    assert isinstance(target, UploadTarget) and target.type == "new"
    again = await alloy.files.request_upload(
        filename="copy.pdf", mime_type="application/pdf", md5=MD5_HEX, user_id=uid
    )
    assert again.type == "existing" and again.s3_key == target.s3_key
    files = await alloy.files.list(user_id=uid).to_list()
    assert [f.filename for f in files] == ["report.pdf"]
    assert isinstance(files[0], StoredFile)
    assert target.s3_key is not None
    await alloy.files.delete(target.s3_key, user_id=uid)
    assert last(fake).path == "/connectors/files/" + target.s3_key.replace("/", "%2F")
    assert await alloy.files.list(user_id=uid).to_list() == []
    with pytest.raises(InvalidRequestError) as info:
        await alloy.files.request_upload(filename="a", mime_type="b", md5="nope")
    assert info.value.field == "md5"


async def test_catalog_streams_every_action_with_connection_state(
    fake: FakeAlloy, alloy: AlloyClient
) -> None:
    """actions.catalog lists every action with slug, resource and is_connected."""
    uid = fake.add_user("c@example.com")
    fake.add_credential(uid, "hubspot")
    items = await alloy.actions.catalog(user_id=uid).to_list()
    assert all(isinstance(i, CatalogAction) for i in items)
    assert len(items) == 11
    by_slug = {i.slug: i for i in items}
    create = by_slug["HUBSPOT_CREATE_CONTACT"]
    assert (create.connector_id, create.action_id, create.resource) == (
        "hubspot",
        "createContact",
        "contacts",
    )
    assert create.is_connected is True
    assert by_slug["SLACK_CHAT_POST_MESSAGE"].is_connected is False
    only = await alloy.actions.catalog(connectors=["notion"], concurrency=1).to_list()
    assert {i.connector_id for i in only} == {"notion"}
    anonymous = await alloy.actions.catalog(connectors=["slack"]).to_list()
    assert all(i.is_connected is None for i in anonymous)


def test_catalog_slugs() -> None:
    """Slugs are UPPER_SNAKE <CONNECTOR>_<ACTION>."""
    assert catalog_slug("slack", "chat_postMessage") == "SLACK_CHAT_POST_MESSAGE"
    assert catalog_slug("notion", "retrieve-a-page") == "NOTION_RETRIEVE_A_PAGE"
    assert catalog_slug("google-sheets", "appendRowV2") == "GOOGLE_SHEETS_APPEND_ROW_V2"


@pytest.mark.parametrize("hostile", ["../users", "a/b", "x?y=1", "ü/ñ", "a" * 3000, "%2e%2e"])
async def test_hostile_ids_stay_in_their_segment(
    fake: FakeAlloy, alloy: AlloyClient, hostile: str
) -> None:
    """A hostile id reaches the server as one path segment (404), never another endpoint."""
    with pytest.raises(NotFoundError):
        await alloy.users.get(hostile)
    with pytest.raises(NotFoundError):
        await alloy.actions.get("slack", hostile)
    routes = {r.route for r in fake.requests}
    assert routes == {"users.get", "actions.get"}


async def test_extra_hatches_reach_the_wire(fake: FakeAlloy) -> None:
    """extra_headers / extra_query / extra_body are merged into service calls."""
    lenient = FakeAlloy()
    async with lenient.client() as alloy:
        await alloy.users.create(
            "x@example.com",
            extra_headers={"X-Trace": "t1"},
            extra_query={"dryRun": True},
            extra_body={"newField": 1},
        )
    req = lenient.requests[-1]
    assert req.headers["x-trace"] == "t1"
    assert req.query == {"dryRun": "true"}
    assert req.json == {"username": "x@example.com", "newField": 1}
    async with fake.client() as strict_alloy:  # strict mode catches an unknown wire field
        with pytest.raises(BadRequestError, match="unknown body fields: newField"):
            await strict_alloy.users.create("y@example.com", extra_body={"newField": 1})
