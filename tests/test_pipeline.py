"""The request pipeline through FakeTransport: headers, encoding, error shapes."""

from __future__ import annotations

import platform
from typing import Any

import orjson
import pytest

from alloy_async import (
    AlloyClient,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    FakeTransport,
    InvalidRequestError,
    InvalidResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    Request,
    Response,
    ServerError,
    UnprocessableEntityError,
    __version__,
)

KEY = "sk_live_pipeline_secret_0123456789"


class Recorder:
    """A handler that answers one fixed response and keeps the requests."""

    def __init__(self, status: int = 200, body: Any = None, headers: dict[str, str] | None = None):
        self.status = status
        self.body = b"" if body is None else body if isinstance(body, bytes) else orjson.dumps(body)
        self.headers = headers or {"content-type": "application/json"}
        self.requests: list[Request] = []

    async def __call__(self, request: Request) -> Response:
        self.requests.append(request)
        return Response(self.status, self.headers, self.body)


def client_for(handler: Any, **kwargs: Any) -> AlloyClient:
    kwargs.setdefault("max_retries", 0)
    return AlloyClient(KEY, transport=FakeTransport(handler), **kwargs)


async def test_every_request_carries_auth_version_and_user_agent() -> None:
    """Authorization, x-api-version, Accept and a versioned User-Agent are on every request."""
    rec = Recorder(body={"ok": True})
    async with client_for(rec) as alloy:
        assert await alloy.request("GET", "/connectors") == {"ok": True}
    h = rec.requests[0].headers
    assert h["authorization"] == f"Bearer {KEY}"
    assert h["x-api-version"] == "2025-09"
    assert h["accept"] == "application/json"
    assert h["user-agent"].startswith(f"alloy-async/{__version__} python/")
    assert f"python/{platform.python_version()}" in h["user-agent"]
    assert " aiohttp/" in h["user-agent"]
    assert "x-alloy-userid" not in h
    assert rec.requests[0].url == "https://production.runalloy.com/connectors"


async def test_user_id_becomes_header_and_per_call_wins() -> None:
    """for_user sets x-alloy-userid; a per-call user_id overrides it."""
    rec = Recorder(body={})
    async with client_for(rec, user_id="default") as alloy:
        await alloy.request("GET", "/a")
        await alloy.for_user("viewer").request("GET", "/a")
        await alloy.request("GET", "/a", user_id="explicit")
    assert [r.headers["x-alloy-userid"] for r in rec.requests] == ["default", "viewer", "explicit"]


async def test_json_body_is_encoded_with_content_type() -> None:
    """A JSON body is sent compact with Content-Type: application/json."""
    rec = Recorder(body={})
    async with client_for(rec) as alloy:
        await alloy.request("POST", "/users", json={"username": "ü@example.com", "n": [1, 2]})
    req = rec.requests[0]
    assert req.headers["content-type"] == "application/json"
    assert orjson.loads(req.body or b"") == {"username": "ü@example.com", "n": [1, 2]}


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("../users", "..%2Fusers"),
        ("a/b", "a%2Fb"),
        ("x?y=1", "x%3Fy%3D1"),
        ("a#b", "a%23b"),
        ("ümlaut id", "%C3%BCmlaut%20id"),
        ("%2F", "%252F"),
    ],
)
async def test_path_params_stay_inside_their_segment(value: str, encoded: str) -> None:
    """Hostile ids are percent-encoded, so they cannot reach another endpoint."""
    rec = Recorder(body={})
    async with client_for(rec) as alloy:
        await alloy.request("GET", "/users/{userId}", path_params={"userId": value})
    req = rec.requests[0]
    assert req.url == f"https://production.runalloy.com/users/{encoded}"
    assert req.path.count("/") == 2


@pytest.mark.parametrize("bad", ["", "   ", ".", ".."])
async def test_empty_or_dot_ids_are_refused_before_sending(bad: str) -> None:
    """An empty id never produces a request: InvalidRequestError names the field."""
    rec = Recorder(body={})
    async with client_for(rec) as alloy:
        with pytest.raises(InvalidRequestError) as info:
            await alloy.request("GET", "/users/{userId}", path_params={"userId": bad})
    assert info.value.field == "userId"
    assert rec.requests == []


@pytest.mark.parametrize("value", ["a\r\nx-evil: 1", "a\nb", "a\rb", "a\x00b"])
async def test_crlf_in_header_values_is_refused(value: str) -> None:
    """CR/LF/NUL in any header value (user id, extra headers) raises InvalidRequestError."""
    rec = Recorder(body={})
    async with client_for(rec) as alloy:
        with pytest.raises(InvalidRequestError):
            await alloy.request("GET", "/a", user_id=value)
        with pytest.raises(InvalidRequestError) as info:
            await alloy.request("GET", "/a", extra_headers={"x-trace": value})
        assert info.value.field == "x-trace"
        with pytest.raises(InvalidRequestError):
            alloy.for_user(value)
    assert rec.requests == []


async def test_body_that_json_cannot_encode_is_refused() -> None:
    """A set in the body is an InvalidRequestError, not a TypeError from orjson."""
    rec = Recorder(body={})
    async with client_for(rec) as alloy:
        with pytest.raises(InvalidRequestError, match="not JSON-serialisable"):
            await alloy.request("POST", "/users", json={"a": {1, 2}})
    assert rec.requests == []


async def test_extra_query_headers_and_body_are_merged() -> None:
    """The escape hatches reach the wire."""
    rec = Recorder(body={})
    async with client_for(rec) as alloy:
        await alloy._requester.request(
            "POST",
            "/x",
            query={"a": "1"},
            json={"k": 1},
            extra_query={"b": True, "skip": None},
            extra_headers={"X-Custom": "v"},
            extra_body={"newField": [1]},
        )
    req = rec.requests[0]
    assert req.url.endswith("/x?a=1&b=true")
    assert req.headers["x-custom"] == "v"
    assert orjson.loads(req.body or b"") == {"k": 1, "newField": [1]}


ERROR_SHAPES = [
    # (status, body, class, code, message, source)
    (
        400,
        {
            "error": {
                "source": "THIRD_PARTY",
                "code": "INVALID_INPUT",
                "message": "bad channel",
                "details": {"httpStatusCode": 404},
            }
        },
        BadRequestError,
        "INVALID_INPUT",
        "bad channel",
        "THIRD_PARTY",
    ),
    (
        401,
        {"error": "UNAUTHORIZED", "message": "Invalid API key"},
        AuthenticationError,
        "UNAUTHORIZED",
        "Invalid API key",
        None,
    ),
    (401, {"message": "Unauthorized"}, AuthenticationError, None, "Unauthorized", None),
    (
        404,
        {"error": 404, "message": "Action not found"},
        NotFoundError,
        "404",
        "Action not found",
        None,
    ),
    (
        403,
        b"<html><body>Forbidden by proxy</body></html>",
        PermissionDeniedError,
        None,
        "Forbidden",
        None,
    ),
    (409, b"", ConflictError, None, "Conflict", None),
    (422, b"plain text failure", UnprocessableEntityError, None, "plain text failure", None),
    (500, b"{not json", ServerError, None, "{not json", None),
    (
        502,
        {"error": {"code": "INTERNAL_ERROR"}},
        ServerError,
        "INTERNAL_ERROR",
        "Bad Gateway",
        None,
    ),
    (418, {"detail": "teapot"}, APIStatusError, None, "teapot", None),
    (
        429,
        {"error": {"code": "RATE_LIMITED", "message": "slow down"}},
        RateLimitError,
        "RATE_LIMITED",
        "slow down",
        None,
    ),
]


@pytest.mark.parametrize(("status", "body", "cls", "code", "message", "source"), ERROR_SHAPES)
async def test_every_error_shape_maps_to_the_right_class(
    status: int,
    body: Any,
    cls: type[APIStatusError],
    code: str | None,
    message: str,
    source: str | None,
) -> None:
    """Each documented (and undocumented) error body becomes the right typed error."""
    rec = Recorder(status, body, {"content-type": "application/json", "x-request-id": "req_42"})
    async with client_for(rec) as alloy:
        with pytest.raises(cls) as info:
            await alloy.request("GET", "/connectors/{id}", path_params={"id": "slack"})
    err = info.value
    assert type(err) is cls
    assert (err.status, err.code, err.message, err.source) == (status, code, message, source)
    assert err.request_id == "req_42"
    assert err.method == "GET"
    assert err.path == "/connectors/slack"
    text = str(err)
    assert str(status) in text and message in text and "GET /connectors/slack" in text
    assert "req_42" in text
    if isinstance(body, dict):
        assert err.body == body


async def test_error_details_are_kept() -> None:
    """The nested details object of the structured shape is exposed."""
    body = {
        "error": {
            "source": "THIRD_PARTY",
            "code": "X",
            "message": "m",
            "details": {"httpStatusCode": 404},
        }
    }
    async with client_for(Recorder(400, body)) as alloy:
        with pytest.raises(BadRequestError) as info:
            await alloy.request("GET", "/a")
    assert info.value.details == {"httpStatusCode": 404}


async def test_request_id_header_alternatives() -> None:
    """request-id works as well as x-request-id."""
    async with client_for(Recorder(404, {"message": "nope"}, {"request-id": "alt_1"})) as alloy:
        with pytest.raises(NotFoundError) as info:
            await alloy.request("GET", "/a")
    assert info.value.request_id == "alt_1"


async def test_non_json_success_body_is_invalid_response() -> None:
    """A 200 with HTML raises InvalidResponseError, never a JSONDecodeError."""
    rec = Recorder(200, b"<html>captive portal</html>", {"content-type": "text/html"})
    async with client_for(rec) as alloy:
        with pytest.raises(InvalidResponseError, match="expected JSON"):
            await alloy.request("GET", "/a")


async def test_empty_success_body_is_none() -> None:
    """204-style empty bodies decode to None."""
    async with client_for(Recorder(204, b"")) as alloy:
        assert await alloy.request("DELETE", "/users/{id}", path_params={"id": "u"}) is None


async def test_redirects_are_errors_and_never_followed() -> None:
    """A 3xx is reported (with its target) rather than followed with our Authorization."""
    rec = Recorder(302, b"", {"location": "https://evil.example.net/steal"})
    async with client_for(rec) as alloy:
        with pytest.raises(APIStatusError, match="redirect") as info:
            await alloy.request("GET", "/a")
    assert info.value.status == 302
    assert len(rec.requests) == 1
