"""Issue 10, item 6: the sandbox routes on the request path and query, never on ``Host``, and
every answer it gives is JSON in the API's error shape.

Requests are written byte for byte on a plain socket to 127.0.0.1, so the ``Host`` header and
the request target are exactly what a hostile client would send. Each answer is judged on the
wire (status, ``Content-Type``, body shape) and each request by FakeAlloy's own state (users,
credentials, files, executions) and by the route FakeAlloy recorded for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import Mapping
from typing import Any

import orjson
import pytest

from alloy_async.sandbox import SandboxServer
from alloy_async.testing import FakeAlloy

MAX_BODY = 16 * 1024 * 1024  # the sandbox's body limit


async def send_raw(
    port: int,
    method: str,
    target: str,
    *,
    host: str = "127.0.0.1",
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
    api_key: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection, exactly as given; returns (status, headers, body)."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", "Connection: close"]
    if api_key is not None:
        lines += [f"Authorization: Bearer {api_key}", "x-api-version: 2025-09"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + body)
        await writer.drain()
        raw = await reader.read()  # the server closes after its answer (Connection: close)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    status_line, _, rest = raw.partition(b"\r\n")
    header_block, _, payload = rest.partition(b"\r\n\r\n")
    answer_headers: dict[str, str] = {}
    for line in header_block.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        answer_headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), answer_headers, payload


def error_shape_problem(status: int, headers: Mapping[str, str], body: bytes) -> str | None:
    """Why an answer is not a JSON error in the documented shape (None when it is)."""
    if not headers.get("content-type", "").startswith("application/json"):
        return f"content-type {headers.get('content-type')!r}, body {body[:80]!r}"
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        return f"body is not JSON: {body[:80]!r}"
    error = decoded.get("error") if isinstance(decoded, dict) else None
    if not isinstance(error, dict):
        return f"no error object: {decoded!r:.120}"
    if not (isinstance(error.get("code"), str) and isinstance(error.get("message"), str)):
        return f"error without code and message: {error!r:.120}"
    if error.get("source") != "CONNECTIVITY_API" or error.get("details") != {
        "httpStatusCode": status
    }:
        return f"error without source or details.httpStatusCode: {error!r:.120}"
    if status < 400:
        return f"status {status} for an error"
    return None


def state(fake: FakeAlloy) -> dict[str, Any]:
    """Everything a request could change in FakeAlloy, by name."""
    files = {owner: dict(by_key) for owner, by_key in fake.files.items() if by_key}
    return {
        "users": copy.deepcopy(fake.users),
        "credentials": copy.deepcopy(fake.credentials),
        "files": copy.deepcopy(files),
        "executions": list(fake.executions),
    }


def changed(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """The names of the parts of FakeAlloy's state that differ."""
    return [name for name in before if before[name] != after[name]]


def populated() -> tuple[FakeAlloy, str, str, str]:
    """A fake with a user holding a slack and a sendgrid credential: (fake, user, slack, sg)."""
    fake = FakeAlloy()
    uid = fake.add_user("victim@example.com", "Victim")
    return fake, uid, fake.add_credential(uid, "slack"), fake.add_credential(uid, "sendgrid")


def fill(value: Any, ids: Mapping[str, str]) -> Any:
    """``value`` with ``{uid}``-style placeholders in its strings filled in."""
    if isinstance(value, dict):
        return {k: fill(v, ids) for k, v in value.items()}
    return value.format(**ids) if isinstance(value, str) else value


# (method, target, Host template, body template, the route FakeAlloy must record). Each Host
# holds a path: before the fix the sandbox built its URL as "http://" + Host + path, so the
# Host's path won and its "?" or "#" turned the real path into a query or a fragment.
HOST_EXPLOITS = [
    pytest.param(
        "DELETE",
        "/connectors/files/x",
        "127.0.0.1/users/{uid}?",
        None,
        "files.delete",
        id="file-delete-becomes-user-delete",
    ),
    pytest.param(
        "DELETE",
        "/connectors/files/x",
        "127.0.0.1/users/{uid}#",
        None,
        "files.delete",
        id="file-delete-becomes-user-delete-via-fragment",
    ),
    pytest.param(
        "DELETE",
        "/connectors/files/x",
        "127.0.0.1/connectors/slack/credentials/{slack}?",
        None,
        "files.delete",
        id="file-delete-becomes-credential-delete",
    ),
    pytest.param(
        "PUT",
        "/connectors/files/x",
        "127.0.0.1/users/{uid}?",
        {"username": "attacker@example.com"},
        "method_not_allowed",
        id="refused-put-becomes-user-update",
    ),
    pytest.param(
        "POST",
        "/users",
        "127.0.0.1/connectors/sendgrid/actions/sendEmail/execute?",
        {"credentialId": "{sg}", "requestBody": {"to": "x@example.com", "subject": "hi"}},
        "users.create",
        id="user-create-becomes-execute",
    ),
    pytest.param(
        "GET",
        "/connectors",
        "127.0.0.1/users/{uid}/token?",
        None,
        "connectors.list",
        id="connector-list-becomes-user-token",
    ),
]


@pytest.mark.parametrize(("method", "target", "host", "body", "route"), HOST_EXPLOITS)
async def test_a_crafted_host_cannot_reach_another_resource(
    method: str, target: str, host: str, body: dict[str, Any] | None, route: str
) -> None:
    """The route FakeAlloy records is the one the path names; nothing the path did not ask for
    changes (users, credentials, files, executions); the answer is the path's own."""
    fake, uid, slack, sg = populated()
    ids = {"uid": uid, "slack": slack, "sg": sg}
    payload = orjson.dumps(fill(body, ids)) if body is not None else b""
    before = state(fake)
    async with SandboxServer(fake) as server:
        status, headers, answer = await send_raw(
            server.port,
            method,
            target,
            host=host.format(**ids),
            headers={"x-alloy-userid": uid},
            body=payload,
            api_key=fake.api_key,
        )
        # The victim is still whole, and a crafted Host does not stop a plain request.
        after_status, _, user = await send_raw(
            server.port, "GET", f"/users/{uid}", host="evil.example", api_key=fake.api_key
        )
    assert changed(before, state(fake)) == []
    assert [r.route for r in fake.requests] == [route, "users.get"]
    assert after_status == 200 and orjson.loads(user)["username"] == "victim@example.com"
    if route == "connectors.list":
        assert status == 200 and "connectors" in orjson.loads(answer)
        assert "token" not in orjson.loads(answer)
    else:
        assert error_shape_problem(status, headers, answer) is None


async def test_malformed_paths_answer_json_errors_and_change_nothing() -> None:
    """%0A, %00, '..' (raw and encoded), raw control bytes, other request-target forms and very
    long paths: every answer is a JSON error in the documented shape, and FakeAlloy's state is
    untouched, although each request carries a valid key and a real user id."""
    fake, uid, slack, _sg = populated()
    targets = [
        ("GET", "/users/%0A"),
        ("DELETE", "/users/%0A"),
        ("DELETE", f"/users/{uid}%0A"),
        ("DELETE", "/connectors/files/%0A"),
        ("POST", "/users/%0A"),
        ("GET", "/%0A/users"),
        ("DELETE", "/users/%00"),
        ("DELETE", f"/users/{uid}%00"),
        ("DELETE", f"/connectors/slack/credentials/{slack}%00"),
        ("DELETE", f"/connectors/files/../../users/{uid}"),
        ("DELETE", f"/connectors/files/%2e%2e/%2E%2E/users/{uid}"),
        ("DELETE", f"/users/{uid}/.."),
        ("DELETE", "/users/%2e%2e"),
        ("DELETE", f"/connectors/files/..%2F..%2Fusers%2F{uid}"),
        ("DELETE", f"/connectors/slack/credentials/{slack}/./.."),
        ("PATCH", f"/users/{uid}"),
        ("GET", "/users/\x01"),
        ("DELETE", f"/users/{uid}\x7f"),
        ("GET", "*"),
        ("GET", "/users/" + "a" * 5_000),  # long, within aiohttp's request-line limit
        ("DELETE", f"/users/{uid}/" + "x/" * 5_000),  # over the limit: refused by aiohttp
        ("GET", "/" + "%0A" * 4_000),
        ("DELETE", "/connectors/files/" + "a" * 60_000),
    ]
    before = state(fake)
    problems: list[str] = []
    async with SandboxServer(fake) as server:
        for method, target in targets:
            body = orjson.dumps({"username": "new@example.com"}) if method == "POST" else b""
            status, headers, answer = await send_raw(
                server.port,
                method,
                target,
                headers={"x-alloy-userid": uid},
                body=body,
                api_key=fake.api_key,
            )
            problem = error_shape_problem(status, headers, answer)
            if problem is not None:
                problems.append(f"{method} {target[:60]!r} -> {status}: {problem}")
            after = state(fake)
            if changed(before, after):
                problems.append(f"{method} {target[:60]!r} changed {changed(before, after)}")
                before = after
    assert not problems, "\n".join(problems)


async def test_a_body_over_the_limit_is_a_json_413_and_creates_nothing() -> None:
    """aiohttp's own 413 (body over 16 MiB) comes out in the documented JSON shape."""
    fake = FakeAlloy()
    body = b'{"username": "big@example.com", "fullName": "' + b"a" * MAX_BODY + b'"}'
    async with SandboxServer(fake) as server:
        status, headers, answer = await send_raw(
            server.port, "POST", "/users", body=body, api_key=fake.api_key
        )
    assert status == 413
    assert error_shape_problem(status, headers, answer) is None
    assert fake.users == {} and fake.requests == []
