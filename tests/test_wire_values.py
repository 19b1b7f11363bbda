"""Issue 10 items 2, 3 and 4: values JSON cannot carry, integers beyond 64 bits, nested secrets.

* NaN and +-Infinity in a body are refused before sending (orjson would write ``null``), with an
  :class:`InvalidRequestError` naming the path of the bad value; in ``execute``,
  ``execute_many`` (with and without a journal), ``ExecuteJob.effective_key`` and CLI lines.
* Integers beyond 64 bits in an answer (success or error body) come back exact, as ``int``.
* Secret-looking keys are masked at any depth (dicts in lists in dicts...) in reprs, error
  messages and logs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import traceback
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alloy_async import BadRequestError, InvalidRequestError, NotFoundError
from alloy_async._http import Request, Response
from alloy_async._wire import decode_json
from alloy_async.cli._bulk_input import BadLine, parse_line
from alloy_async.journal import read_journal
from alloy_async.models import (
    Action,
    CredentialMetadata,
    ExecuteJob,
    ExecutionResult,
    JobOutcome,
    User,
)
from alloy_async.testing import FakeAlloy

pytestmark = pytest.mark.virtual_time

NAN, INF = float("nan"), float("inf")
BAD_VALUES = pytest.mark.parametrize("bad", [NAN, INF, -INF], ids=["nan", "inf", "-inf"])
JSON = {"content-type": "application/json"}


def _same(a: Any, b: Any) -> bool:
    """Equal, NaN included (for the value an error reports)."""
    return (isinstance(a, float) and math.isnan(a) and math.isnan(b)) or a == b


# -- item 2: NaN and +-Infinity are refused, naming the path, and nothing is sent ---------------


def _where(bad: float) -> list[tuple[dict[str, Any], str]]:
    """execute() keyword arguments holding ``bad`` somewhere, and the path that names it."""
    items = [{"price": 1.0}, {"price": 2.5}, {"price": None}, {"price": bad}]
    return [
        (
            {"request_body": {"channel": "C", "text": "t", "items": items}},
            "request_body.items[3].price",
        ),
        ({"request_body": [1.0, (2.0, bad)]}, "request_body[1][1]"),
        ({"request_body": {"odd key": {"x": [bad]}}}, "request_body['odd key'].x[0]"),
        ({"query_parameters": {"filter": {"min": bad}}}, "query_parameters.filter.min"),
        ({"extra_body": {"ratio": bad}}, "extra_body.ratio"),
        ({"extra_body": {"meta": {"scores": [0.5, bad]}}}, "extra_body.meta.scores[1]"),
    ]


@BAD_VALUES
async def test_execute_refuses_nan_and_infinity_naming_the_path_and_sends_nothing(
    bad: float,
) -> None:
    fake = FakeAlloy()
    user = fake.add_user("a@example.com")
    cred = fake.add_credential(user, "slack")
    async with fake.client() as alloy:
        for kwargs, path in _where(bad):
            with pytest.raises(InvalidRequestError) as info:
                await alloy.actions.execute(
                    "slack", "chat_postMessage", credential_id=cred, user_id=user, **kwargs
                )
            assert info.value.field == path, kwargs
            assert path in str(info.value)
            assert repr(bad) in str(info.value)  # "is nan" / "is inf" / "is -inf"
        # other calls too: the escape hatch of any service
        with pytest.raises(InvalidRequestError) as info:
            await alloy.users.create("b@example.com", extra_body={"meta": {"score": bad}})
        assert info.value.field == "extra_body.meta.score"
        assert len(alloy.transport.requests) == 0
        assert fake.requests == [] and fake.executions == []
        # real nulls (and "null" in a string) are not NaN: such a body goes out intact
        body = {"channel": "C", "text": "null", "thread_ts": None, "blocks": [None, {"x": 1.5}]}
        await alloy.actions.execute(
            "slack", "chat_postMessage", credential_id=cred, user_id=user, request_body=body
        )
    assert [e.request_body for e in fake.executions] == [body]


@pytest.mark.parametrize("journaled", [False, True], ids=["no-journal", "journal"])
@BAD_VALUES
async def test_execute_many_job_with_nan_is_one_failed_outcome_naming_the_path(
    bad: float, journaled: bool, tmp_path: Path
) -> None:
    fake = FakeAlloy()
    user = fake.add_user("a@example.com")
    cred = fake.add_credential(user, "slack")
    w = bad
    jobs = [
        ExecuteJob(
            "slack", "chat_postMessage", cred, user,
            request_body={"text": f"t{i}", "channel": "C", "meta": {"w": [1, w if i == 1 else 2]}},
        )
        for i in range(3)
    ]  # fmt: skip
    checkpoint = tmp_path / "j.db" if journaled else None
    async with fake.client() as alloy:
        run = alloy.actions.execute_many(jobs, checkpoint=checkpoint, concurrency=1)
        outcomes = {o.index: o async for o in run}
    assert sorted(outcomes) == [0, 1, 2]
    assert outcomes[0].ok and outcomes[2].ok
    error = outcomes[1].error
    assert isinstance(error, InvalidRequestError), (outcomes[1], fake.executions)
    assert error.field == "request_body.meta.w[1]"
    assert "index 1" in str(error) and "request_body.meta.w[1]" in str(error)
    assert sorted(e.request_body["text"] for e in fake.executions) == ["t0", "t2"]
    assert [r.json["requestBody"]["text"] for r in fake.requests] == ["t0", "t2"]
    if journaled:  # the two that ran are journaled; the refused one never had an intent
        states = dict(read_journal(tmp_path / "j.db"))
        assert sorted(states) == sorted(jobs[i].effective_key for i in (0, 2))


@BAD_VALUES
def test_effective_key_refuses_nan_instead_of_hashing_it_as_null(bad: float) -> None:
    """orjson wrote NaN as null: {"x": NaN} and {"x": None} got the same checkpoint key."""
    nan_job = ExecuteJob("slack", "post", "cred", request_body={"x": None, "y": [bad]})
    with pytest.raises(InvalidRequestError) as info:
        _ = nan_job.effective_key
    assert info.value.field == "request_body.y[0]"
    assert "ExecuteJob.request_body.y[0]" in str(info.value)
    job = ExecuteJob("slack", "post", "cred", query_parameters={"q": {"n": bad}})
    with pytest.raises(InvalidRequestError) as info:
        _ = job.effective_key
    assert info.value.field == "query_parameters.q.n"
    # the key of a job without NaN is unchanged (checkpoints of earlier runs still match)
    plain = ExecuteJob("slack", "post", "cred", request_body={"x": None, "y": [None]})
    canonical = orjson.dumps(
        {
            "connector_id": "slack", "action_id": "post", "credential_id": "cred",
            "user_id": None, "request_body": {"x": None, "y": [None]}, "query_parameters": None,
            "path_params": None, "additional_headers": None,
        },
        option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
    )  # fmt: skip
    assert plain.effective_key == hashlib.sha256(canonical).hexdigest()[:32]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_a_cli_line_with_nan_or_infinity_is_a_bad_line_naming_the_path(literal: str) -> None:
    line = (
        '{"connectorId": "slack", "actionId": "post", "credentialId": "c", '
        f'"requestBody": {{"rows": [{{"v": 1}}, {{"v": {literal}}}]}}}}\n'
    ).encode()
    parsed = parse_line(7, line)
    assert isinstance(parsed, BadLine), parsed
    assert parsed.number == 7
    assert "request_body.rows[1].v" in parsed.message


# -- item 3: integers beyond 64 bits stay exact --------------------------------------------------

BIG = 123456789012345678901234567890
NEG = -98765432109876543210
ANSWER = (
    b'{"success": true, "result": {"id": 123456789012345678901234567890, '
    b'"neg": -98765432109876543210, "max": 18446744073709551615, "min": -9223372036854775808, '
    b'"past": 18446744073709551616, "ids": [1, 123456789012345678901234567890], '
    b'"text": "123456789012345678901234567890", "f": 0.12345678901234567890123, "e": 1e25}, '
    b'"total": 99999999999999999999999}'
)


async def test_big_integers_in_a_success_answer_are_exact() -> None:
    fake = FakeAlloy()
    user = fake.add_user("a@example.com")
    cred = fake.add_credential(user, "slack")
    fake.script("execute", Response(200, JSON, ANSWER))
    user_answer = b'{"userId": "u1", "username": "a", "quota": 123456789012345678901234567890}'
    fake.script("users.get", Response(200, JSON, user_answer))
    async with fake.client() as alloy:
        result = await alloy.actions.execute(
            "slack", "chat_postMessage", credential_id=cred, user_id=user
        )
        fetched = await alloy.users.get(user)
    data = result.data
    assert data["id"] == BIG and type(data["id"]) is int
    assert data["neg"] == NEG and type(data["neg"]) is int
    assert data["max"] == 2**64 - 1 and data["min"] == -(2**63)
    assert data["past"] == 2**64 and type(data["past"]) is int
    assert data["ids"] == [1, BIG]
    assert data["text"] == str(BIG)  # strings stay strings
    assert data["f"] == 0.12345678901234568 and data["e"] == 1e25  # floats stay floats
    assert result.extra["total"] == 99999999999999999999999
    assert result.raw == json.loads(ANSWER)
    assert fetched.extra["quota"] == BIG


async def test_big_integers_in_an_error_answer_are_exact() -> None:
    fake = FakeAlloy()
    user = fake.add_user("a@example.com")
    cred = fake.add_credential(user, "slack")
    body = (
        b'{"error": {"code": "LIMIT", "message": "over the limit", "source": "THIRD_PARTY", '
        b'"details": {"limit": 123456789012345678901234567890, "used": [-98765432109876543210]}}}'
    )
    fake.script("execute", Response(400, JSON, body))
    fake.script("users.get", Response(404, JSON, b'{"error": 123456789012345678901234567890}'))
    async with fake.client() as alloy:
        with pytest.raises(BadRequestError) as info:
            await alloy.actions.execute(
                "slack", "chat_postMessage", credential_id=cred, user_id=user
            )
        with pytest.raises(NotFoundError) as missing:
            await alloy.users.get(user)
    err = info.value
    assert err.details == {"limit": BIG, "used": [NEG]}
    assert type(err.details["limit"]) is int
    assert err.body["error"]["details"]["limit"] == BIG
    assert missing.value.code == str(BIG)
    assert missing.value.body == {"error": BIG}


_INTS = st.one_of(
    st.integers(),
    st.integers(min_value=2**63 - 3, max_value=2**64 + 3),
    st.integers(min_value=-(2**63) - 3, max_value=-(2**63) + 3),
    st.integers(min_value=-(10**40), max_value=10**40),
)
_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    _INTS,
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(alphabet='0123456789 -.eE"\\ab', max_size=30),
)
_TREES = st.recursive(
    _LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=16,
)


@settings(max_examples=400, deadline=None)
@given(tree=_TREES, indent=st.sampled_from([None, 1]))
def test_answers_decode_exactly_like_the_standard_library(tree: Any, indent: int | None) -> None:
    """Any JSON answer decodes to what ``json.loads`` gives (exact integers, same floats)."""
    raw = json.dumps(tree, indent=indent).encode()
    got = decode_json(Response(200, JSON, raw), Request("GET", "http://127.0.0.1/x", path="/x"))
    assert repr(got) == repr(json.loads(raw))


# -- item 4: secrets are masked at any depth -----------------------------------------------------

NESTED = "NESTED-SECRET-d2"
LISTED = "LISTED-SECRET-in-a-list"
DEEP = "DEEP-SECRET-at-depth-5"
SECRETS = [NESTED, LISTED, DEEP]


def _nested() -> dict[str, Any]:
    return {
        "auth": {"accessToken": NESTED, "expires_in": 3600},
        "sessions": [{"id": 7, "refresh_token": LISTED}, "plain"],
        "a": {"b": {"c": [{"d": {"Password": DEEP}}]}},
    }


def _assert_masked(texts: list[str]) -> None:
    assert texts
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"{secret} leaked into {text[:300]!r}"


def test_nested_secrets_are_masked_in_model_reprs() -> None:
    user = User(user_id="u", extra=_nested())
    text = repr(user)
    _assert_masked([text, str(user)])
    assert "'accessToken': '***'" in text and "'refresh_token': '***'" in text
    assert "'expires_in': 3600" in text and "'id': 7" in text and "'plain'" in text
    assert user.extra["auth"]["accessToken"] == NESTED  # the data itself is intact
    result = ExecutionResult(success=True, data=_nested(), status_code=200, extra=_nested())
    action = Action(id="x", sample_success_response=_nested())
    meta = CredentialMetadata(sample_input=_nested())
    job = ExecuteJob(
        "slack", "post", "cred", request_body=_nested(), query_parameters=_nested(),
        path_params={"p": {"secret": NESTED}},
    )  # fmt: skip
    outcome = JobOutcome(job=job, ok=True, result=result, error=None, attempts=1, elapsed=0.1)
    texts = [repr(x) for x in (result, action, meta, job, outcome)]
    texts += [str(x) for x in (result, job, outcome)]
    _assert_masked(texts)
    assert "'***'" in repr(job) and "'expires_in': 3600" in repr(job)


def test_masking_survives_cycles_and_depth() -> None:
    loop: dict[str, Any] = {"token": NESTED}
    loop["self"] = loop
    loop["list"] = [loop, loop]
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(100):
        node["n"] = {}
        node = node["n"]
    node["apiKey"] = DEEP
    text = repr(User(user_id="u", extra={"loop": loop, "deep": deep}))
    _assert_masked([text])
    assert "'self': ..." in text


async def test_nested_secrets_never_in_reprs_messages_or_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Secrets at depth 2+ in answers (success and error), in jobs and in bad arguments."""
    caplog.set_level(logging.DEBUG)
    app_log = logging.getLogger("app")
    fake = FakeAlloy()
    user = fake.add_user("a@example.com")
    cred = fake.add_credential(user, "slack")
    answer = orjson.dumps({"success": True, "result": _nested(), "meta": _nested()})
    fake.script("execute", Response(200, JSON, answer))
    error = {"error": {"code": "BAD", "message": "refused", "details": _nested()}, **_nested()}
    fake.script("execute", Response(400, JSON, orjson.dumps(error)))
    fake.script("users.get", Response(200, JSON, orjson.dumps({"userId": user, **_nested()})))
    texts: list[str] = []
    async with fake.client() as alloy:
        result = await alloy.actions.execute(
            "slack", "chat_postMessage", credential_id=cred, user_id=user
        )
        texts += [repr(result), str(result)]
        app_log.info("executed: %r", result)
        try:
            await alloy.actions.execute(
                "slack", "chat_postMessage", credential_id=cred, user_id=user
            )
        except BadRequestError as exc:
            texts += [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
        fetched = await alloy.users.get(user)
        texts.append(repr(fetched))
        app_log.info("user: %s", fetched)
        jobs = [
            ExecuteJob("slack", "chat_postMessage", cred, user, request_body=_nested()),
            {"connectorId": "slack", "actionId": "chat_postMessage",
             "credentialId": {"auth": {"accessToken": NESTED}}},
        ]  # fmt: skip
        async for outcome in alloy.actions.execute_many(jobs):
            texts.append(repr(outcome))  # (the job of a bad mapping is the caller's dict)
            if isinstance(outcome.job, ExecuteJob):
                texts.append(repr(outcome.job))
            app_log.info("outcome: %r", outcome)
            if outcome.error is not None:
                texts += [str(outcome.error), repr(outcome.error)]
    assert any("credential_id must be a non-empty string" in t for t in texts)
    texts += [record.getMessage() for record in caplog.records]
    assert any(r.name == "alloy_async" for r in caplog.records)  # the SDK logged at DEBUG
    _assert_masked(texts)
