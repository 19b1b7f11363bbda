"""The sans-I/O wire layer with plain values and bytes: no event loop, no transport.

Request building gives exact URL, header and body bytes; status + headers + body bytes give
a result or the right :class:`APIStatusError`; ``Retry-After`` in all its forms.
"""

from __future__ import annotations

import ast
import email.utils
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest

from alloy_async._http import (
    Headers,
    Request,
    Response,
    Secret,
    bearer,
    check_header,
    header_value_ok,
)
from alloy_async._wire import (
    build_request,
    build_url,
    common_headers,
    decode_json,
    error_from_response,
    loads,
    parse_retry_after,
)
from alloy_async.errors import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InvalidRequestError,
    InvalidResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    UnprocessableEntityError,
)

KEY = "sk_wire_secret_0123456789"
BASE = "https://api.example.com/v1"
JSON = {"content-type": "application/json"}


@attrs.frozen
class Defaults:
    """A :class:`~alloy_async._wire.RequestDefaults` without any client around it."""

    base_url: str = BASE
    base_headers: Mapping[str, str] = attrs.field(
        factory=lambda: common_headers("2025-09", "ua/1", {"x-team": "blue"})
    )
    auth: Secret | None = attrs.field(factory=lambda: bearer(KEY))
    user_id: str | None = None
    timeout: float | None = 30.0


def build(method: str, template: str, **kwargs: Any) -> Request:
    defaults = kwargs.pop("defaults", Defaults())
    return build_request(defaults, method, template, **kwargs)


GET = Request("GET", BASE + "/a", path="/a")


# -- the module stays sans-I/O --------------------------------------------------------------


def test_wire_imports_no_event_loop_and_no_transport() -> None:
    """_wire.py imports neither asyncio nor a transport nor aiohttp, at any depth of its AST."""
    source = Path(__file__).resolve().parent.parent / "alloy_async" / "_wire.py"
    names: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module or "")
    assert not any(n.split(".")[0] in ("asyncio", "aiohttp", "transports") for n in names)
    assert not any("transports" in n or "_core" in n for n in names), names


# -- building a request ---------------------------------------------------------------------


def test_common_headers_exact_and_masked() -> None:
    headers = common_headers("2025-09", "ua/1", {"X-Team": "blue", "x-n": 3, "Cookie": KEY})  # type: ignore[dict-item]
    assert dict(headers) == {
        "x-api-version": "2025-09",
        "user-agent": "ua/1",
        "accept": "application/json",
        "x-team": "blue",
        "x-n": "3",
        "cookie": KEY,
    }
    assert isinstance(headers, Headers) and KEY not in repr(headers)


def test_get_with_query_exact_url_and_headers() -> None:
    req = build(
        "GET",
        "/connectors/{connectorId}/actions",
        path_params={"connectorId": "a/b c"},
        query={"limit": 5, "on": True, "tags": ["x", "y z"], "skip": None},
        user_id="user_1",
    )
    assert req.method == "GET"
    assert req.url == BASE + "/connectors/a%2Fb%20c/actions?limit=5&on=true&tags=x&tags=y+z"
    assert req.path == "/connectors/a%2Fb%20c/actions"
    assert list(req.headers.items()) == [
        ("authorization", f"Bearer {KEY}"),
        ("x-api-version", "2025-09"),
        ("user-agent", "ua/1"),
        ("accept", "application/json"),
        ("x-team", "blue"),
        ("x-alloy-userid", "user_1"),
    ]
    assert isinstance(req.headers, Headers) and KEY not in repr(req.headers)
    assert req.body is None and req.timeout == 30.0


def test_the_key_is_sent_but_never_stored_in_the_clear() -> None:
    """``Request.headers`` carries ``authorization`` from ``auth``; no field holds the key, a
    caller's own ``authorization`` header wins, and ``with_headers`` keeps the key apart.

    Catches: the key stored in the request's headers field, or the override order changed.
    """
    req = build("GET", "/a", extra_headers={"traceparent": "00-1"})
    fields = [getattr(req, a.name) for a in attrs.fields(Request)]
    assert not any(KEY in str(value) for value in fields if not isinstance(value, Secret))
    assert all(KEY not in str(v) for f in fields if isinstance(f, Mapping) for v in f.values())
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert KEY not in repr(bearer(KEY)) and bearer(KEY) == bearer(KEY) != bearer("other")
    own = build("GET", "/a", extra_headers={"Authorization": "Basic mine"})
    assert next(iter(own.headers.items())) == ("authorization", "Basic mine")
    traced = req.with_headers({"tracestate": "t"})
    assert traced.headers == {**req.headers, "tracestate": "t"}
    assert all(KEY not in v for v in traced._headers.values())
    plain = Request("GET", BASE + "/a", {"authorization": "Bearer x"}, path="/a")
    assert plain.headers == {"authorization": "Bearer x"}


def test_post_body_bytes_and_merges() -> None:
    req = build(
        "POST",
        "/users",
        json={"username": "ü@example.com", "n": [1, 2]},
        extra_body={"newField": 1},
        extra_query={"dry": False},
        extra_headers={"X-Trace": "t1"},
        timeout=5.0,
        defaults=Defaults(user_id="default_user"),
    )
    assert req.url == BASE + "/users?dry=false"
    assert req.body == b'{"username":"\xc3\xbc@example.com","n":[1,2],"newField":1}'
    assert req.headers["content-type"] == "application/json"
    assert req.headers["x-trace"] == "t1"
    assert req.headers["x-alloy-userid"] == "default_user"
    assert req.timeout == 5.0


def test_build_url_is_pure() -> None:
    assert build_url(BASE, "/u/{id}", {"id": "x y"}, None) == (
        BASE + "/u/x%20y",
        "/u/x%20y",
    )
    with pytest.raises(InvalidRequestError, match=r"may not be '\.\.'"):
        build_url(BASE, "/u/{id}", {"id": ".."}, None)


@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "a\nb", "a\rb", "a\x00b"])
def test_one_header_value_check(value: str) -> None:
    """CR, LF and NUL are refused wherever a header value comes from."""
    assert not header_value_ok(value)
    with pytest.raises(InvalidRequestError, match="x-alloy-userid"):
        build("GET", "/a", user_id=value)
    with pytest.raises(InvalidRequestError, match="may not contain CR, LF or NUL"):
        build("GET", "/a", extra_headers={"x-custom": value})
    with pytest.raises(InvalidRequestError, match="may not contain CR, LF or NUL"):
        check_header("x-custom", value)
    assert header_value_ok("ok \x7f\t")


@pytest.mark.parametrize(
    ("json", "extra_body", "where"),
    [
        ({"requestBody": {"items": [1, {"price": math.nan}]}}, None, "request_body.items[1].price"),
        ({"k": 1}, {"ratio": math.inf}, "extra_body.ratio"),
        ([1, -math.inf], None, "body[1]"),
    ],
)
def test_nan_and_infinity_are_refused_naming_the_path(
    json: Any, extra_body: Any, where: str
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        build("POST", "/x", json=json, extra_body=extra_body)
    assert info.value.field == where
    # a null that is a real None is sent as null
    assert build("POST", "/x", json={"a": None}).body == b'{"a":null}'


def test_unencodable_body_is_refused() -> None:
    with pytest.raises(InvalidRequestError, match="not JSON-serialisable"):
        build("POST", "/x", json={"a": object()})
    with pytest.raises(InvalidRequestError, match="extra_body needs a JSON object"):
        build("POST", "/x", json=[1], extra_body={"a": 1})


# -- reading a response ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "value"),
    [
        (b"", None),
        (b" \n", None),
        (b'{"a":[1,2.5,"x",null,true]}', {"a": [1, 2.5, "x", None, True]}),
        (b'{"big":123456789012345678901234567890}', {"big": 123456789012345678901234567890}),
        (b"[-18446744073709551617]", [-18446744073709551617]),
        (b"[18446744073709551615, 1.0000000000000000000001]", [2**64 - 1, 1.0]),
    ],
)
def test_decode_json_from_bytes(body: bytes, value: Any) -> None:
    got = decode_json(Response(200, JSON, body), GET)
    assert got == value and repr(got) == repr(value)
    if body.strip():
        assert repr(loads(body)) == repr(value)


def test_decode_json_refuses_a_body_that_is_not_json() -> None:
    response = Response(200, {"content-type": "text/html", "x-request-id": "r1"}, b"<html>")
    with pytest.raises(
        InvalidResponseError, match=r"expected JSON from GET /a, got text/html"
    ) as info:
        decode_json(response, GET)
    assert (info.value.status, info.value.request_id) == (200, "r1")


ERROR_SHAPES: list[tuple[int, bytes, type[APIStatusError], str | None, str, str | None]] = [
    (
        400,
        b'{"error":{"source":"THIRD_PARTY","code":"INVALID_INPUT","message":"bad channel",'
        b'"details":{"httpStatusCode":404}}}',
        BadRequestError,
        "INVALID_INPUT",
        "bad channel",
        "THIRD_PARTY",
    ),
    (
        401,
        b'{"error":"UNAUTHORIZED","message":"Invalid API key"}',
        AuthenticationError,
        "UNAUTHORIZED",
        "Invalid API key",
        None,
    ),
    (401, b'{"error":"the key is wrong"}', AuthenticationError, None, "the key is wrong", None),
    (
        404,
        b'{"error":404,"message":"Action not found"}',
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
    (
        422,
        b'{"errors":[{"message":"name is required"}]}',
        UnprocessableEntityError,
        None,
        "name is required",
        None,
    ),
    (400, b'{"error_description":"bad grant","code":7}', BadRequestError, "7", "bad grant", None),
    (500, b"{not json", ServerError, None, "{not json", None),
    (
        502,
        b'{"error":{"code":"INTERNAL_ERROR"}}',
        ServerError,
        "INTERNAL_ERROR",
        "Bad Gateway",
        None,
    ),
    (418, b'{"detail":"teapot"}', APIStatusError, None, "teapot", None),
    (
        429,
        b'{"error":{"type":"RATE_LIMITED","message":"slow down"}}',
        RateLimitError,
        "RATE_LIMITED",
        "slow down",
        None,
    ),
]


@pytest.mark.parametrize(("status", "body", "cls", "code", "message", "source"), ERROR_SHAPES)
def test_status_headers_and_body_bytes_give_the_right_error(
    status: int,
    body: bytes,
    cls: type[APIStatusError],
    code: str | None,
    message: str,
    source: str | None,
) -> None:
    response = Response(status, {**JSON, "x-request-id": "req_42"}, body)
    err = error_from_response(response, GET)
    assert type(err) is cls
    assert (err.status, err.code, err.message, err.source) == (status, code, message, source)
    assert (err.request_id, err.method, err.path) == ("req_42", "GET", "/a")


def test_error_keeps_details_and_decoded_body() -> None:
    raw = b'{"error":{"code":"X","message":"m","details":{"n":123456789012345678901234567890}}}'
    err = error_from_response(Response(400, JSON, raw), GET)
    assert err.details == {"n": 123456789012345678901234567890}
    assert err.body == {"error": {"code": "X", "message": "m", "details": err.details}}


def test_429_carries_retry_after() -> None:
    err = error_from_response(Response(429, {"retry-after": "7"}, b""), GET)
    assert isinstance(err, RateLimitError) and err.retry_after == 7.0
    assert err.message == "Too Many Requests"


def test_redirect_is_an_error_naming_its_target() -> None:
    err = error_from_response(Response(302, {"location": "https://evil.example.net/x"}, b""), GET)
    assert type(err) is APIStatusError and err.status == 302
    assert "unexpected redirect to 'https://evil.example.net/x'" in err.message


# -- Retry-After ------------------------------------------------------------------------------

NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({}, None),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": " 2.5 "}, 2.5),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after": "-3"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after": "garbage"}, None),
        ({"retry-after": email.utils.formatdate(NOW + 90, usegmt=True)}, 90.0),
        ({"retry-after": email.utils.formatdate(NOW - 90, usegmt=True)}, 0.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after-ms": "soon", "retry-after": "9"}, 9.0),
        ({"retry-after-ms": "-1", "retry-after": "9"}, 9.0),
        ({"retry-after-ms": "nan"}, None),
    ],
)
def test_retry_after_forms(headers: dict[str, str], seconds: float | None) -> None:
    assert parse_retry_after(headers, now=NOW) == seconds


def test_retry_after_is_still_importable_from_retry() -> None:
    from alloy_async.retry import parse_retry_after as from_retry

    assert from_retry is parse_retry_after
