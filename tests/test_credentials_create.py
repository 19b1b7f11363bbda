"""Issue 10, item 9: ``credentials.create(..., authentication_type="oauth2")`` without
``redirect_uri``.

The create-credential reference has ``redirectUri`` optional: the SDK must not require it, must
send it only when given, and FakeAlloy (the SDK's judge) must accept a body without it. Judged by
the request FakeAlloy recorded (what went over the wire) and by its own state.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from alloy_async import (
    AlloyClient,
    BadRequestError,
    InvalidRequestError,
    UnprocessableEntityError,
)
from alloy_async.sandbox import SandboxServer
from alloy_async.testing import FakeAlloy

CALLBACK = "https://app.example.com/oauth/callback"


def oauth_query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


async def test_oauth2_redirect_uri_is_optional_and_sent_only_when_given() -> None:
    """Without redirect_uri: the call works, the body has no redirectUri key (not even null),
    the oauthUrl carries none, and consent yields a listed credential. With it: it is sent as
    redirectUri and ends up in the oauthUrl. A bad one is still refused before sending."""
    fake = FakeAlloy(strict=True)  # strict: an unknown or misspelt body key would be a 400
    uid = fake.add_user("oauth@example.com")
    async with fake.client() as alloy:
        created = await alloy.credentials.create("slack", user_id=uid, authentication_type="oauth2")
        sent = fake.requests[-1]
        assert (sent.method, sent.path, sent.route) == (
            "POST",
            "/connectors/slack/credentials",
            "credentials.create",
        )
        assert sent.json == {"userId": uid, "authenticationType": "oauth2"}
        assert created.credential_id is None and created.oauth_url is not None
        query = oauth_query(created.oauth_url)
        assert query["userId"] == [uid] and "redirectUri" not in query
        cred_id = fake.complete_oauth(created.oauth_url)
        listed = await alloy.credentials.list("slack", user_id=uid).to_list()
        assert [c.credential_id for c in listed] == [cred_id]

        created = await alloy.credentials.create(
            "slack", user_id=uid, authentication_type="oauth2", redirect_uri=CALLBACK
        )
        assert fake.requests[-1].json == {
            "userId": uid,
            "authenticationType": "oauth2",
            "redirectUri": CALLBACK,
        }
        assert created.oauth_url is not None
        assert oauth_query(created.oauth_url)["redirectUri"] == [CALLBACK]

        sent_before = len(fake.requests)
        with pytest.raises(InvalidRequestError) as info:
            await alloy.credentials.create(
                "slack", user_id=uid, authentication_type="oauth2", redirect_uri="/relative"
            )
        assert info.value.field == "redirect_uri"
        assert len(fake.requests) == sent_before  # refused before sending


async def test_fake_alloy_follows_the_create_schema_over_http() -> None:
    """Any HTTP client (here the low-level request() through the sandbox) may leave redirectUri
    out; when given it must still be a non-empty absolute URL; authConfigRequired still holds."""
    fake = FakeAlloy(strict=True)
    uid = fake.add_user("raw@example.com")
    async with (
        SandboxServer(fake) as server,
        AlloyClient(fake.api_key, base_url=server.url, max_retries=0) as alloy,
    ):
        answer = await alloy.request(
            "POST",
            "/connectors/slack/credentials",
            json={"userId": uid, "authenticationType": "oauth2"},
        )
        assert set(answer) == {"oauthUrl"}
        assert "redirectUri" not in oauth_query(answer["oauthUrl"])
        assert fake.requests[-1].json == {"userId": uid, "authenticationType": "oauth2"}

        with pytest.raises(BadRequestError, match="redirectUri"):
            await alloy.request(
                "POST",
                "/connectors/slack/credentials",
                json={"userId": uid, "authenticationType": "oauth2", "redirectUri": None},
            )
        with pytest.raises(UnprocessableEntityError, match="redirectUri"):
            await alloy.request(
                "POST",
                "/connectors/slack/credentials",
                json={"userId": uid, "authenticationType": "oauth2", "redirectUri": "cb"},
            )
        with pytest.raises(BadRequestError, match="authConfigId"):
            await alloy.credentials.create(
                "shopify", user_id=uid, authentication_type="oauth2", data={"shopName": "s"}
            )
    assert fake.credentials == {}  # nothing is created before consent
