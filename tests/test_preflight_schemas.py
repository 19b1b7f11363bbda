"""Each part of a call is checked against its own schema, in its own dialect (issue 22, item 4).

Preflight wrapped the action's body schema inside a schema of its own, so references resolved
against the wrapper: a local ``$ref`` (``#/$defs/x``, ``#/definitions/x``) made the schema
"unusable", a recursive ``$ref: "#"`` pointed at the wrapper (nested levels never checked, so
``execute(validate=True)`` sent an invalid body), and any draft-04 schema was "unusable" (the
wrapper's ``required: []`` is invalid there). What was sent is the server's record.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_preflight import _serve_action, _slack_user

from alloy_async.errors import InvalidRequestError
from alloy_async.testing import FakeAlloy

SLACK = ("slack", "chat_postMessage")
SECRET = "sk_live_leaked_in_a_key_name"

TREE = {  # a recursive schema: every level must have a string "name"
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string"},
        "children": {"type": "array", "items": {"$ref": "#"}},
    },
}
DEFS = {
    "$defs": {"channel": {"type": "string", "minLength": 1}},
    "type": "object",
    "required": ["channel"],
    "properties": {"channel": {"$ref": "#/$defs/channel"}},
}
DEFINITIONS_07 = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "definitions": {"channel": {"type": "string", "minLength": 1}},
    "type": "object",
    "required": ["channel"],
    "properties": {"channel": {"$ref": "#/definitions/channel"}},
}
DRAFT_04 = {
    "$schema": "http://json-schema.org/draft-04/schema#",
    "type": "object",
    "required": ["channel"],
    "properties": {"channel": {"type": "string"}, "limit": {"type": "integer", "minimum": 1}},
}


@pytest.mark.parametrize(
    ("schema", "good", "bad", "pointer"),
    [
        (DEFS, {"channel": "C"}, {"channel": ""}, "/request_body/channel"),
        (DEFINITIONS_07, {"channel": "C"}, {"channel": 7}, "/request_body/channel"),
        (
            DRAFT_04,
            {"channel": "C", "limit": 2},
            {"channel": "C", "limit": 0},
            "/request_body/limit",
        ),
        (
            TREE,
            {"name": "a", "children": [{"name": "b", "children": [{"name": "c"}]}]},
            {"name": "a", "children": [{"name": "b", "children": [{"name": 3}]}]},
            "/request_body/children/0/children/0/name",
        ),
    ],
    ids=["defs", "definitions-draft7", "draft4", "recursive"],
)
async def test_each_schema_is_applied_as_written(
    schema: dict[str, Any], good: Any, bad: Any, pointer: str
) -> None:
    """Catches: the body schema wrapped in another one (its references resolve against the
    wrapper, its dialect is the wrapper's)."""
    fake = FakeAlloy()
    _serve_action(fake, *SLACK, schema)
    user, cred = _slack_user(fake)
    async with fake.client() as alloy:
        assert await alloy.actions.validate(*SLACK, request_body=good) == []
        found = await alloy.actions.validate(*SLACK, request_body=bad)
        assert [p.pointer for p in found] == [pointer], found
        with pytest.raises(InvalidRequestError):
            await alloy.actions.execute(
                *SLACK, credential_id=cred, user_id=user, request_body=bad, validate=True
            )
    assert fake.executions == []  # the server's record: the invalid body was never sent


async def test_an_unexpected_key_is_located_never_quoted() -> None:
    """Catches: the additionalProperties message quoting the caller's key (it can be a
    secret)."""
    fake = FakeAlloy()
    closed = {"type": "object", "properties": {"channel": {"type": "string"}}}
    _serve_action(fake, *SLACK, closed | {"additionalProperties": False})
    async with fake.client() as alloy:
        found = await alloy.actions.validate(*SLACK, request_body={"channel": "C", SECRET: 1})
    assert [(p.pointer, p.keyword) for p in found] == [("/request_body", "additionalProperties")]
    assert all(SECRET not in text for p in found for text in (str(p), repr(p), p.message))
