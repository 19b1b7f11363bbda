"""Observability, part 1: event hooks, ``with_raw_response`` and structured log records.

Judged by what the simulated server recorded (``FakeAlloy.requests`` / ``.executions``, the
sandbox's ``/_sandbox/stats``), never only by what the client reports. Under
``virtual_time`` the fake's ``latency`` is exact, so ``elapsed`` can be checked to the value.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson
import pytest

from alloy_async import (
    AlloyClient,
    APIConnectionError,
    ConfigurationError,
    NotFoundError,
    RateLimitError,
)
from alloy_async._http import Response
from alloy_async.models.actions import ExecutionResult
from alloy_async.observability import (
    HookObserver,
    RawResponse,
    RequestEvent,
    ResponseEvent,
    RetryEvent,
)
from alloy_async.retry import RetryPolicy
from alloy_async.sandbox import SandboxServer
from alloy_async.testing import FakeAlloy, Fault

SECRET = "sk_live_HOOKS_RAW_MUST_NEVER_LEAK_7c2e91"
LATENCY = 0.25
BODY = {"channel": "C1", "text": "hi"}


class Boom(Exception):
    """What a hook raises in these tests."""


def setup_fake(**kwargs: Any) -> tuple[FakeAlloy, str, str]:
    fake = FakeAlloy(api_key=SECRET, **kwargs)
    user = fake.add_user("hooks@example.com")
    cred = fake.add_credential(user, "slack")
    return fake, user, cred


async def execute(alloy: AlloyClient, user: str, cred: str) -> ExecutionResult:
    return await alloy.actions.execute(
        "slack",
        "chat_postMessage",
        credential_id=cred,
        user_id=user,
        request_body={"channel": "C1", "text": "hi"},
    )


class Recorder:
    """Event hooks that record what they get: sync ``request``, async ``response``/``retry``."""

    def __init__(self) -> None:
        self.requests: list[RequestEvent] = []
        self.async_requests: list[RequestEvent] = []
        self.responses: list[ResponseEvent] = []
        self.retries: list[RetryEvent] = []

    def on_request(self, event: RequestEvent) -> None:
        self.requests.append(event)

    async def on_request_async(self, event: RequestEvent) -> None:
        await asyncio.sleep(0)
        self.async_requests.append(event)

    async def on_response(self, event: ResponseEvent) -> None:
        await asyncio.sleep(0)
        self.responses.append(event)

    def on_retry(self, event: RetryEvent) -> None:
        self.retries.append(event)

    def hooks(self) -> dict[str, list[Callable[[Any], Any]]]:
        return {
            "request": [self.on_request, self.on_request_async],
            "response": [self.on_response],
            "retry": [self.on_retry],
        }


# -- event hooks ---------------------------------------------------------------------------


@pytest.mark.virtual_time
async def test_sync_and_async_hooks_see_a_redacted_request_and_the_answer() -> None:
    fake, user, cred = setup_fake(latency=LATENCY)
    rec = Recorder()
    async with fake.client(event_hooks=rec.hooks(), telemetry=False) as alloy:
        result = await execute(alloy, user, cred)
    assert result.success
    assert len(fake.requests) == 1 and len(fake.executions) == 1  # the key really was sent

    assert len(rec.requests) == 1 and rec.async_requests == rec.requests
    event = rec.requests[0]
    assert event.operation == "alloy.actions.execute"
    assert event.attempt == 1
    assert event.request.method == "POST"
    assert event.request.path == "/connectors/slack/actions/chat_postMessage/execute"
    assert event.request.headers["authorization"] == "[REDACTED]"
    assert event.request.auth is None  # the key itself is not handed over either
    assert event.request.headers["x-alloy-userid"] == user  # not a secret: left as is
    assert event.request.headers["x-api-version"]
    assert orjson.loads(event.request.body or b"")["credentialId"] == cred
    for text in (repr(event), str(event), repr(event.request), repr(dict(event.request.headers))):
        assert SECRET not in text

    assert len(rec.responses) == 1
    answer = rec.responses[0]
    assert answer.operation == "alloy.actions.execute"
    assert answer.attempt == 1
    assert answer.status == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.request_id == answer.headers["x-request-id"] == result.request_id
    assert answer.request_id is not None
    assert answer.elapsed == pytest.approx(LATENCY)  # virtual time: exactly the fake's latency
    assert answer.request.headers["authorization"] == "[REDACTED]"
    assert SECRET not in repr(answer) and SECRET not in str(answer)
    assert rec.retries == []


@pytest.mark.virtual_time
async def test_a_hook_editing_its_event_changes_nothing_sent() -> None:
    """The event's request is a redacted copy: editing its headers does not reach the
    request sent, on this attempt or the next."""
    fake, user, cred = setup_fake()
    fake.fail("execute", 429, retry_after="0")
    seen: list[dict[str, str]] = []

    def meddle(event: RequestEvent) -> None:
        seen.append(dict(event.request.headers))
        event.request.headers["x-meddled"] = "1"  # type: ignore[index]
        event.request.headers["authorization"] = "Bearer nope"  # type: ignore[index]

    async with fake.client(event_hooks={"request": [meddle]}, telemetry=False) as alloy:
        assert (await execute(alloy, user, cred)).success  # the real key was still sent
    assert len(seen) == 2  # each attempt gets a fresh redacted copy
    assert all("x-meddled" not in h and h["authorization"] == "[REDACTED]" for h in seen)
    assert len(fake.requests) == 2
    assert all("x-meddled" not in r.headers for r in fake.requests)


@pytest.mark.virtual_time
async def test_429_then_200_fires_retry_once_and_every_attempt() -> None:
    fake, user, cred = setup_fake()
    fake.fail("execute", 429, retry_after="2")
    rec = Recorder()
    async with fake.client(event_hooks=rec.hooks(), telemetry=False) as alloy:
        loop = asyncio.get_running_loop()
        start = loop.time()
        result = await execute(alloy, user, cred)
        waited = loop.time() - start
    assert result.success
    assert [r.route for r in fake.requests] == ["execute", "execute"]
    assert len(fake.executions) == 1

    assert [e.attempt for e in rec.requests] == [1, 2]
    assert [e.attempt for e in rec.async_requests] == [1, 2]
    assert [(e.attempt, e.status) for e in rec.responses] == [(1, 429), (2, 200)]
    assert rec.responses[0].headers["retry-after"] == "2"
    assert len(rec.retries) == 1
    retry = rec.retries[0]
    assert retry.operation == "alloy.actions.execute"
    assert retry.attempt == 1
    assert retry.delay == 2.0
    assert waited == pytest.approx(2.0)  # the delay the hook was told is the one waited
    assert isinstance(retry.reason, RateLimitError)
    assert retry.reason.status == 429
    assert retry.reason.request_id == rec.responses[0].request_id
    assert retry.request.headers["authorization"] == "[REDACTED]"
    assert SECRET not in repr(retry) and SECRET not in str(retry)


@pytest.mark.virtual_time
async def test_retry_after_a_connection_reset_has_no_response_event() -> None:
    fake, user, cred = setup_fake()
    fake.script("execute", Fault(reset="before"))
    rec = Recorder()
    policy = RetryPolicy(max_retries=2, backoff_base=0.1)
    async with fake.client(event_hooks=rec.hooks(), retry=policy, telemetry=False) as alloy:
        await execute(alloy, user, cred)
    assert len(fake.requests) == 2 and len(fake.executions) == 1
    assert [e.attempt for e in rec.requests] == [1, 2]
    assert [(e.attempt, e.status) for e in rec.responses] == [(2, 200)]
    assert len(rec.retries) == 1
    assert rec.retries[0].attempt == 1
    assert isinstance(rec.retries[0].reason, APIConnectionError)
    assert rec.retries[0].delay > 0


async def test_a_raising_request_hook_reaches_the_caller_and_nothing_is_sent() -> None:
    fake, user, cred = setup_fake()
    boom = Boom("refused by hook")
    seen: list[int] = []

    def refuse(event: RequestEvent) -> None:
        seen.append(event.attempt)
        raise boom

    transport = fake.transport()
    async with AlloyClient(
        SECRET, transport=transport, event_hooks={"request": [refuse]}, telemetry=False
    ) as alloy:
        with pytest.raises(Boom) as caught:
            await execute(alloy, user, cred)
    assert caught.value is boom
    assert seen == [1]
    assert transport.requests == []  # the transport was never called
    assert fake.requests == [] and fake.executions == []


@pytest.mark.virtual_time
async def test_a_request_hook_raising_on_the_retry_stops_the_second_attempt() -> None:
    fake, user, cred = setup_fake()
    fake.fail("execute", 429, retry_after="0")

    async def refuse_retries(event: RequestEvent) -> None:
        if event.attempt > 1:
            raise Boom(f"attempt {event.attempt}")

    async with fake.client(event_hooks={"request": [refuse_retries]}, telemetry=False) as alloy:
        with pytest.raises(Boom, match="attempt 2"):
            await execute(alloy, user, cred)
    assert len(fake.requests) == 1  # only the first (429) attempt reached the server
    assert fake.executions == []


async def test_a_raising_response_hook_reaches_the_caller() -> None:
    fake, user, cred = setup_fake()
    boom = Boom("response refused")
    statuses: list[int] = []

    async def refuse(event: ResponseEvent) -> None:
        statuses.append(event.status)
        raise boom

    async with fake.client(event_hooks={"response": [refuse]}, telemetry=False) as alloy:
        with pytest.raises(Boom) as caught:
            await execute(alloy, user, cred)
    assert caught.value is boom
    assert statuses == [200]
    assert len(fake.requests) == 1  # sent once, and not sent again because of the hook


@pytest.mark.virtual_time
async def test_a_raising_retry_hook_reaches_the_caller_and_stops_retrying() -> None:
    fake, user, cred = setup_fake()
    fake.fail("execute", 429, retry_after="0")

    def refuse(event: RetryEvent) -> None:
        raise Boom(type(event.reason).__name__)

    async with fake.client(event_hooks={"retry": [refuse]}, telemetry=False) as alloy:
        with pytest.raises(Boom, match="RateLimitError"):
            await execute(alloy, user, cred)
    assert len(fake.requests) == 1


def _fn(event: Any) -> None:
    """A valid hook."""


@pytest.mark.parametrize(
    ("event_hooks", "match"),
    [
        ({"requests": [_fn]}, "unknown event 'requests'"),
        ({"error": [_fn]}, "unknown event 'error'"),
        ({"request": [_fn, 42]}, r"event_hooks\['request'\] holds 42, not a callable"),
        ({"response": [None]}, r"event_hooks\['response'\] holds None, not a callable"),
        ({"request": _fn}, r"event_hooks\['request'\] must be a list of callables"),
        ({"retry": "_fn"}, r"event_hooks\['retry'\] must be a list of callables"),
        ({"response": {_fn}}, r"event_hooks\['response'\] must be a list of callables"),
        ([_fn], "event_hooks must be a mapping"),
    ],
)
def test_bad_event_hooks_are_refused_naming_the_problem(event_hooks: Any, match: str) -> None:
    fake = FakeAlloy(api_key=SECRET)
    with pytest.raises(ConfigurationError, match=match):
        AlloyClient(SECRET, transport=fake.transport(), event_hooks=event_hooks, telemetry=False)


async def test_no_hooks_keeps_the_fast_path_and_views_keep_the_hooks() -> None:
    fake, user, _ = setup_fake()
    for plain in (
        AlloyClient(SECRET, transport=fake.transport(), telemetry=False),
        AlloyClient(SECRET, transport=fake.transport(), event_hooks={}, telemetry=False),
    ):
        assert plain._requester.observer is None
        assert plain.for_user(user)._requester.observer is None
        await plain.aclose()

    ops: list[tuple[str, int]] = []
    hooks = {"response": [lambda e: ops.append((e.operation, e.status))]}
    async with fake.client(event_hooks=hooks, telemetry=False) as alloy:
        assert isinstance(alloy._requester.observer, HookObserver)
        await alloy.for_user(user).users.get(user)
        await alloy.with_options(max_retries=0).request("GET", "/users")
        with pytest.raises(NotFoundError):
            await alloy.users.get("no-such-user")
    assert ops == [("alloy.users.get", 200), ("alloy.request", 200), ("alloy.users.get", 404)]


# -- with_raw_response ---------------------------------------------------------------------


@pytest.mark.virtual_time
async def test_raw_execute_returns_the_answer_and_the_typed_result() -> None:
    fake, user, cred = setup_fake(latency=LATENCY)
    async with fake.client(telemetry=False) as alloy:
        plain = await execute(alloy, user, cred)
        raw = await alloy.with_raw_response.actions.execute(
            "slack",
            "chat_postMessage",
            credential_id=cred,
            user_id=user,
            request_body={"channel": "C1", "text": "hi"},
        )
        assert alloy._requester.observer is None  # the raw view did not touch the client
    assert isinstance(raw, RawResponse)
    assert raw.status == 200
    assert raw.headers["content-type"] == "application/json"
    assert all(k == k.lower() for k in raw.headers)
    assert raw.request_id is not None and raw.request_id == raw.headers["x-request-id"]
    assert raw.request_id != plain.request_id  # this call's answer, not an earlier one
    assert raw.elapsed == pytest.approx(LATENCY)
    assert raw.attempts == 1
    assert raw.rate_limit == {}
    parsed = raw.parse()
    assert isinstance(parsed, ExecutionResult)
    assert parsed.request_id == raw.request_id
    assert (parsed.success, parsed.data, parsed.status_code) == (
        plain.success,
        plain.data,
        plain.status_code,
    )
    assert parsed.data is not None
    assert len(fake.executions) == 2
    assert repr(raw).startswith("<RawResponse status=200")


async def test_raw_rate_limit_holds_only_the_rate_limit_headers() -> None:
    fake, user, cred = setup_fake()
    fake.script(
        "execute",
        Response(
            200,
            {
                "content-type": "application/json",
                "x-ratelimit-limit": "100",
                "x-ratelimit-remaining": "99",
                "x-ratelimit-reset": "30",
                "x-other": "1",
            },
            orjson.dumps({"success": True, "result": {"ok": 1}}),
        ),
    )
    async with fake.client(telemetry=False) as alloy:
        raw = await alloy.with_raw_response.actions.execute(
            "slack", "chat_postMessage", credential_id=cred, user_id=user, request_body=BODY
        )
    assert raw.rate_limit == {
        "x-ratelimit-limit": "100",
        "x-ratelimit-remaining": "99",
        "x-ratelimit-reset": "30",
    }
    assert raw.headers["x-other"] == "1"
    assert raw.parse().data == {"ok": 1}


@pytest.mark.virtual_time
async def test_raw_after_a_retry_reports_the_last_answer_and_the_attempts() -> None:
    fake, user, cred = setup_fake()
    fake.fail("execute", 429, retry_after="0")
    rec = Recorder()
    async with fake.client(event_hooks=rec.hooks(), telemetry=False) as alloy:
        raw = await alloy.with_raw_response.actions.execute(
            "slack", "chat_postMessage", credential_id=cred, user_id=user, request_body=BODY
        )
        assert isinstance(alloy._requester.observer, HookObserver)  # unchanged by the view
    assert raw.status == 200
    assert raw.attempts == 2
    assert raw.rate_limit == {}  # the 429's retry-after is not the final answer's
    assert raw.request_id == rec.responses[-1].request_id
    # the client's hooks still fire on raw calls
    assert [(e.attempt, e.status) for e in rec.responses] == [(1, 429), (2, 200)]
    assert len(rec.retries) == 1
    assert len(fake.requests) == 2


@pytest.mark.virtual_time
async def test_raw_attempts_counts_an_attempt_that_got_no_answer() -> None:
    fake, user, cred = setup_fake()
    fake.script("execute", Fault(reset="before"))
    async with fake.client(telemetry=False) as alloy:
        raw = await alloy.with_raw_response.actions.execute(
            "slack", "chat_postMessage", credential_id=cred, user_id=user, request_body=BODY
        )
    assert len(fake.requests) == 2  # two attempts reached the server
    assert raw.status == 200
    assert raw.attempts == 2


async def test_raw_users_get_equals_the_plain_call() -> None:
    fake, user, _ = setup_fake()
    async with fake.client(telemetry=False) as alloy:
        plain = await alloy.users.get(user)
        raw = await alloy.with_raw_response.users.get(user)
    assert raw.status == 200
    assert raw.parse() == plain
    assert raw.parse().user_id == user
    assert raw.request_id == raw.headers["x-request-id"]
    assert [r.route for r in fake.requests] == ["users.get", "users.get"]


@pytest.mark.parametrize(
    ("service", "name"),
    [("actions", "paginate"), ("actions", "execute_many"), ("users", "list")],
)
def test_raw_refuses_calls_without_one_answer(service: str, name: str) -> None:
    fake = FakeAlloy(api_key=SECRET)
    alloy = fake.client(telemetry=False)
    with pytest.raises(ConfigurationError, match=rf"with_raw_response\.{service}\.{name}"):
        getattr(getattr(alloy.with_raw_response, service), name)
    with pytest.raises(AttributeError, match="no service 'nope'"):
        _ = alloy.with_raw_response.nope


async def test_raw_non_2xx_raises_the_typed_error() -> None:
    fake, user, cred = setup_fake()
    fake.fail("execute", 429, retry_after="0")
    async with fake.client(max_retries=0, telemetry=False) as alloy:
        with pytest.raises(NotFoundError) as caught:
            await alloy.with_raw_response.users.get("no-such-user")
        assert caught.value.status == 404
        assert caught.value.request_id is not None
        with pytest.raises(RateLimitError):
            await alloy.with_raw_response.actions.execute(
                "slack", "chat_postMessage", credential_id=cred, user_id=user, request_body=BODY
            )
        # a failed raw call leaves nothing behind: the next one reports its own answer
        raw = await alloy.with_raw_response.users.get(user)
    assert raw.status == 200 and raw.attempts == 1
    assert raw.request_id == "req_00000003"


# -- over real HTTP (the sandbox) ----------------------------------------------------------


async def test_raw_and_hooks_over_real_http() -> None:
    fake, user, cred = setup_fake()
    rec = Recorder()
    async with (
        SandboxServer(fake) as server,
        AlloyClient(SECRET, base_url=server.url, event_hooks=rec.hooks(), telemetry=False) as alloy,
    ):
        raw = await alloy.with_raw_response.actions.execute(
            "slack",
            "chat_postMessage",
            credential_id=cred,
            user_id=user,
            request_body={"channel": "C1", "text": "real"},
        )
        async with (
            aiohttp.ClientSession() as session,
            session.get(server.url + "/_sandbox/executions") as answer,
        ):
            executions = await answer.json()
    assert raw.status == 200
    assert raw.attempts == 1
    assert raw.elapsed >= 0
    assert all(k == k.lower() for k in raw.headers)
    assert raw.headers["content-type"].startswith("application/json")
    assert raw.request_id == "req_00000001" == raw.parse().request_id
    assert raw.rate_limit == {}
    assert raw.parse().success
    assert [(e["action_id"], e["request_body"]) for e in executions] == [
        ("chat_postMessage", {"channel": "C1", "text": "real"})
    ]
    assert [e.request.headers["authorization"] for e in rec.requests] == ["[REDACTED]"]
    assert [(e.status, e.request_id) for e in rec.responses] == [(200, "req_00000001")]


async def test_a_raising_request_hook_sends_nothing_over_real_http() -> None:
    fake, user, cred = setup_fake()

    def refuse(event: RequestEvent) -> None:
        raise Boom("no")

    async with (
        SandboxServer(fake) as server,
        AlloyClient(
            SECRET, base_url=server.url, event_hooks={"request": [refuse]}, telemetry=False
        ) as alloy,
    ):
        with pytest.raises(Boom):
            await execute(alloy, user, cred)
        async with (
            aiohttp.ClientSession() as session,
            session.get(server.url + "/_sandbox/stats") as answer,
        ):
            stats = await answer.json()
    assert stats["requests"] == 0 and stats["executions"] == 0


# -- structured logs -----------------------------------------------------------------------


def _all_text(record: logging.LogRecord) -> list[str]:
    texts = [record.getMessage()]
    for value in vars(record).values():
        texts += [str(value), repr(value)]
    return texts


@pytest.mark.virtual_time
@pytest.mark.parametrize("with_hooks", [False, True])
async def test_log_records_carry_structured_fields_and_no_secret(
    caplog: pytest.LogCaptureFixture, with_hooks: bool
) -> None:
    fake, user, cred = setup_fake(latency=LATENCY)
    fake.fail("execute", 429, retry_after="0")
    caplog.set_level(logging.DEBUG, logger="alloy_async")
    hooks = Recorder().hooks() if with_hooks else None
    async with fake.client(event_hooks=hooks, telemetry=False) as alloy:
        assert (alloy._requester.observer is not None) is with_hooks
        await execute(alloy, user, cred)
        with pytest.raises(NotFoundError):
            await alloy.users.get("no-such-user")
    records = [r for r in caplog.records if r.name.startswith("alloy_async")]
    for record in records:
        for attr in ("request_id", "attempt", "status", "elapsed_ms"):
            assert hasattr(record, attr), (attr, record.getMessage())

    def fields(r: logging.LogRecord) -> tuple[Any, ...]:
        return (r.request_id, r.attempt, r.status)  # type: ignore[attr-defined]

    retries = [r for r in records if r.getMessage().startswith("retrying")]
    assert len(retries) == 1
    retry = retries[0]
    assert retry.error_type == "RateLimitError"  # type: ignore[attr-defined]
    assert fields(retry) == ("req_00000001", 1, 429)

    answered_429 = [r for r in records if " -> 429 " in r.getMessage()]
    assert [fields(r) for r in answered_429] == [("req_00000001", 1, 429)]
    assert answered_429[0].elapsed_ms == pytest.approx(LATENCY * 1000)  # type: ignore[attr-defined]
    failed_429 = [r for r in records if "failed in" in r.getMessage() and r.status == 429]  # type: ignore[attr-defined]
    assert [fields(r) for r in failed_429] == [("req_00000001", 1, 429)]
    assert failed_429[0].error_type == "RateLimitError"  # type: ignore[attr-defined]
    assert failed_429[0].elapsed_ms == pytest.approx(LATENCY * 1000)  # type: ignore[attr-defined]

    ok = [r for r in records if getattr(r, "status", None) == 200]
    assert [fields(r) for r in ok] == [("req_00000002", 2, 200)]
    assert ok[0].elapsed_ms == pytest.approx(LATENCY * 1000)  # type: ignore[attr-defined]
    assert not hasattr(ok[0], "error_type")

    not_found = [r for r in records if getattr(r, "error_type", None) == "NotFoundError"]
    assert not_found and all(fields(r) == ("req_00000003", 1, 404) for r in not_found)

    for record in records:
        for text in _all_text(record):
            assert SECRET not in text, (record.getMessage(), text)
