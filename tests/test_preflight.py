"""Preflight: ``actions.validate``, ``execute(validate=...)``, ``execute_many(validate=...)``.

What reached the server is always judged by the server's own record: ``fake.requests`` (route
names from ``alloy_async/testing/_routes.py``: ``actions.get`` is the schema fetch, ``execute``
the execution) and ``fake.executions`` (what really ran), or ``/_sandbox/executions`` over HTTP.
"""

from __future__ import annotations

import asyncio
import http.server
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import pytest

from alloy_async import (
    AlloyClient,
    APIConnectionError,
    InvalidRequestError,
    NotFoundError,
    ServerError,
    UnusableSchemaError,
)
from alloy_async._http import Request, Response
from alloy_async.models import ExecuteJob, JobOutcome
from alloy_async.sandbox import SandboxServer
from alloy_async.services._preflight import SchemaCache
from alloy_async.testing import FakeAlloy, Fault
from alloy_async.testing.faults import JSON_HEADERS, SimulatedDisconnect
from alloy_async.validation import Problem

SECRET = "sk_live_SECRET123"
SLACK = ("slack", "chat_postMessage")  # body: channel, text required (strings), thread_ts
HUBSPOT = ("hubspot", "gdprDeleteContacts")  # body: objectId required (string)


# -- helpers --------------------------------------------------------------------------------


def _routes(fake: FakeAlloy, route: str) -> list[Any]:
    return [r for r in fake.requests if r.route == route]


def _schema_fetches(fake: FakeAlloy, connector: str | None = None) -> int:
    return sum(
        1
        for r in _routes(fake, "actions.get")
        if connector is None or f"/connectors/{connector}/" in r.path
    )


def _cache(alloy: AlloyClient) -> SchemaCache:
    cache = alloy._requester._shared.schemas
    assert isinstance(cache, SchemaCache)
    return cache


def _serve_action(
    fake: FakeAlloy,
    connector: str,
    action: str,
    request_body: Any,
    parameters: Sequence[dict[str, Any]] = (),
) -> list[str]:
    """Answer ``actions.get`` for one action with this schema (others as usual); returns the
    list of paths the hook served, so a test can count them."""
    served: list[str] = []

    def hook(request: Request) -> Response | None:
        path = urlsplit(request.url).path
        if not path.endswith(f"/connectors/{connector}/actions/{action}"):
            return None
        served.append(path)
        detail = {
            "id": action,
            "displayName": action,
            "httpMethod": "post",
            "path": "/x",
            "parameters": list(parameters),
            "requestBody": request_body,
        }
        return Response(200, dict(JSON_HEADERS), orjson.dumps({"action": detail}))

    fake.route_hooks["actions.get"] = hook
    return served


def _slack_user(fake: FakeAlloy, name: str = "u@example.com") -> tuple[str, str]:
    user = fake.add_user(name)
    return user, fake.add_credential(user, "slack")


async def _collect(run: Any) -> list[JobOutcome]:
    async with run:
        return [o async for o in run]


def _no_secret(problems: Sequence[Problem], *texts: str) -> None:
    for p in problems:
        for part in (p.pointer, p.message, p.keyword, str(p), repr(p)):
            assert SECRET not in part, p
    for text in texts:
        assert SECRET not in text


# -- 1. actions.validate --------------------------------------------------------------------


async def test_validate_valid_call_has_no_problems() -> None:
    fake = FakeAlloy()
    async with fake.client() as alloy:
        found = await alloy.actions.validate(*SLACK, request_body={"channel": "C1", "text": "hi"})
    assert found == []
    assert fake.executions == [] and _routes(fake, "execute") == []


async def test_validate_missing_required_field_points_at_it() -> None:
    fake = FakeAlloy()
    async with fake.client() as alloy:
        found = await alloy.actions.validate(*SLACK, request_body={"channel": "C1"})
    assert [(p.pointer, p.keyword) for p in found] == [("/request_body/text", "required")]
    assert "text" in found[0].message
    assert str(found[0]).startswith("/request_body/text: ")


async def test_validate_wrong_type_points_at_the_field() -> None:
    fake = FakeAlloy()
    async with fake.client() as alloy:
        found = await alloy.actions.validate(
            *SLACK, request_body={"channel": "C1", "text": ["not", "a", "string"]}
        )
    assert [(p.pointer, p.keyword) for p in found] == [("/request_body/text", "type")]
    assert "string" in found[0].message


async def test_validate_missing_required_path_parameter() -> None:
    fake = FakeAlloy()
    async with fake.client() as alloy:
        missing = await alloy.actions.validate("shopify", "getOrder")
        wrong = await alloy.actions.validate("shopify", "getOrder", path_params={"order_id": 7})
        fine = await alloy.actions.validate("shopify", "getOrder", path_params={"order_id": "7"})
    assert [(p.pointer, p.keyword) for p in missing] == [("/path_params/order_id", "required")]
    assert [(p.pointer, p.keyword) for p in wrong] == [("/path_params/order_id", "type")]
    assert fine == []


async def test_validate_query_parameter_of_the_wrong_type() -> None:
    fake = FakeAlloy()
    async with fake.client() as alloy:
        wrong = await alloy.actions.validate(
            "slack", "conversations_list", query_parameters={"limit": "ten", "cursor": "c"}
        )
        fine = await alloy.actions.validate(
            "slack", "conversations_list", query_parameters={"limit": 10}
        )
    assert [(p.pointer, p.keyword) for p in wrong] == [("/query_parameters/limit", "type")]
    assert "integer" in wrong[0].message
    assert fine == []


async def test_validate_reports_every_problem_sorted() -> None:
    fake = FakeAlloy()
    async with fake.client() as alloy:
        found = await alloy.actions.validate(*SLACK, request_body={"thread_ts": 5})
        across = await alloy.actions.validate(
            "notion",
            "retrieve-a-page",
            request_body=None,
            query_parameters=None,
            path_params={"other": 1},
        )
    assert [(p.pointer, p.keyword) for p in found] == [
        ("/request_body/channel", "required"),
        ("/request_body/text", "required"),
        ("/request_body/thread_ts", "type"),
    ]
    assert found == sorted(found, key=lambda p: (p.pointer, p.keyword))
    assert [(p.pointer, p.keyword) for p in across] == [("/path_params/page_id", "required")]


async def test_validate_never_quotes_the_offending_value() -> None:
    """A secret-looking value of the wrong type (an integer field, and a body schema using
    every value-bearing keyword) appears in no problem and in no error message."""
    fake = FakeAlloy()
    user, _ = _slack_user(fake)
    cred = fake.add_credential(user, "notion")
    async with fake.client() as alloy:
        found = await alloy.actions.validate(
            "notion", "post-search", request_body={"page_size": SECRET}
        )
        assert [(p.pointer, p.keyword) for p in found] == [("/request_body/page_size", "type")]
        with pytest.raises(InvalidRequestError) as caught:
            await alloy.actions.execute(
                "notion",
                "post-search",
                credential_id=cred,
                user_id=user,
                request_body={"page_size": SECRET},
                validate=True,
            )
    err = caught.value
    assert err.problems == tuple(found)
    assert "/request_body/page_size" in str(err)
    _no_secret(found, str(err), repr(err), str(err.args))
    assert _routes(fake, "execute") == []

    keywords = {
        "a": {"type": "integer"},
        "b": {"enum": ["x", "y"]},
        "c": {"const": "y"},
        "d": {"maxLength": 3},
        "e": {"pattern": "^z+$"},
        "f": {"format": "email"},
        "g": {"not": {"type": "string"}},
        "h": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        "i": {"type": "array", "items": {"type": "integer"}},
    }
    schema = {"type": "object", "properties": keywords}
    fake2 = FakeAlloy()
    _serve_action(fake2, "slack", "custom", schema)
    body: dict[str, Any] = dict.fromkeys(keywords, SECRET)
    body["i"] = [SECRET]
    async with fake2.client() as alloy:
        found = await alloy.actions.validate("slack", "custom", request_body=body)
    # every failing field is reported, not just the first
    assert sorted({p.pointer.split("/")[2] for p in found}) == sorted(keywords)
    assert any(p.pointer == "/request_body/i/0" for p in found)
    _no_secret(found)


async def test_validate_checks_its_arguments_before_fetching() -> None:
    fake = FakeAlloy()
    async with fake.client() as alloy:
        with pytest.raises(InvalidRequestError) as caught:
            await alloy.actions.validate("", "chat_postMessage")
        assert caught.value.field == "connector_id"
        with pytest.raises(InvalidRequestError) as caught:
            await alloy.actions.validate(*SLACK, path_params=["not", "a", "mapping"])  # type: ignore[arg-type]
        assert caught.value.field == "path_params"
    assert fake.requests == []


# -- 2. the schema is fetched once per client -----------------------------------------------


async def test_schema_fetched_once_for_many_validate_calls() -> None:
    fake = FakeAlloy()
    async with fake.client() as alloy:
        for n in range(10):
            await alloy.actions.validate(*SLACK, request_body={"channel": "C", "text": str(n)})
        assert _cache(alloy).fetches == 1
    assert _schema_fetches(fake) == 1


@pytest.mark.virtual_time
async def test_concurrent_callers_on_a_cold_cache_share_one_fetch() -> None:
    fake = FakeAlloy(latency=0.05)  # the fetch is in flight while the others arrive
    async with fake.client() as alloy:
        results = await asyncio.gather(
            *(alloy.actions.validate(*SLACK, request_body={"channel": "C"}) for _ in range(20))
        )
        assert _cache(alloy).fetches == 1
    assert _schema_fetches(fake) == 1
    assert all([p.pointer for p in r] == ["/request_body/text"] for r in results)


@pytest.mark.virtual_time
async def test_concurrent_callers_share_a_failed_fetch_then_the_next_call_fetches_again() -> None:
    fake = FakeAlloy(latency=0.05)
    fake.script("actions.get", Fault(status=500))
    async with fake.client(max_retries=0) as alloy:
        results = await asyncio.gather(
            *(alloy.actions.validate(*SLACK, request_body={}) for _ in range(5)),
            return_exceptions=True,
        )
        assert all(isinstance(r, ServerError) for r in results), results
        assert _schema_fetches(fake) == 1
        # a failure is not remembered
        assert len(await alloy.actions.validate(*SLACK, request_body={})) == 2
    assert _schema_fetches(fake) == 2


@pytest.mark.virtual_time
async def test_a_cancelled_follower_leaves_the_shared_fetch_running() -> None:
    fake = FakeAlloy(latency=0.05)
    async with fake.client() as alloy:
        leader = asyncio.create_task(alloy.actions.validate(*SLACK, request_body={}))
        await asyncio.sleep(0.01)  # virtual: the leader's fetch is now in flight
        follower = asyncio.create_task(alloy.actions.validate(*SLACK, request_body={}))
        await asyncio.sleep(0.01)
        follower.cancel()
        with pytest.raises(asyncio.CancelledError):
            await follower
        assert len(await leader) == 2
        assert _cache(alloy).fetches == 1
    assert _schema_fetches(fake) == 1


@pytest.mark.virtual_time
async def test_cancelling_the_caller_that_started_the_fetch_does_not_cancel_the_others() -> None:
    fake = FakeAlloy(latency=0.05)
    async with fake.client() as alloy:
        leader = asyncio.create_task(alloy.actions.validate(*SLACK, request_body={}))
        await asyncio.sleep(0.01)
        follower = asyncio.create_task(alloy.actions.validate(*SLACK, request_body={}))
        await asyncio.sleep(0.01)
        leader.cancel()
        results = await asyncio.gather(leader, follower, return_exceptions=True)
        assert isinstance(results[0], asyncio.CancelledError)
        assert not follower.cancelled()
        second = results[1]
        assert isinstance(second, list)
        assert [p.pointer for p in second] == ["/request_body/channel", "/request_body/text"]


async def test_a_for_user_view_shares_the_cache_and_another_client_does_not() -> None:
    fake = FakeAlloy()
    async with fake.client() as alloy, fake.client() as other:
        await alloy.actions.validate(*SLACK, request_body={})
        view = alloy.for_user("someone")
        await view.actions.validate(*SLACK, request_body={})
        assert view._requester._shared.schemas is _cache(alloy)
        assert _schema_fetches(fake) == 1
        await other.actions.validate(*SLACK, request_body={})
        assert _schema_fetches(fake) == 2
        assert _cache(other) is not _cache(alloy)
        assert _cache(alloy).fetches == 1 and _cache(other).fetches == 1


@pytest.mark.virtual_time
async def test_the_schema_is_fetched_again_after_the_ttl() -> None:
    fake = FakeAlloy()
    loop = asyncio.get_running_loop()
    assert hasattr(loop, "advance")
    async with fake.client() as alloy:
        await alloy.actions.validate(*SLACK, request_body={})
        cache = _cache(alloy)
        assert cache.ttl == 600.0 and cache.maxsize == 256  # the documented defaults
        loop.advance(599.0)
        await alloy.actions.validate(*SLACK, request_body={})
        assert _schema_fetches(fake) == 1
        loop.advance(2.0)
        await alloy.actions.validate(*SLACK, request_body={})
        assert _schema_fetches(fake) == 2
        cache.ttl = 5.0  # entries stored from now on live 5 s
        loop.advance(601.0)
        await alloy.actions.validate(*SLACK, request_body={})
        assert _schema_fetches(fake) == 3
        loop.advance(4.0)
        await alloy.actions.validate(*SLACK, request_body={})
        assert _schema_fetches(fake) == 3
        loop.advance(2.0)
        await alloy.actions.validate(*SLACK, request_body={})
        assert _schema_fetches(fake) == 4
        assert cache.fetches == 4


async def test_the_cache_is_bounded_by_maxsize() -> None:
    fake = FakeAlloy()
    async with fake.client() as alloy:
        alloy._requester._shared.schemas = SchemaCache(maxsize=1)
        for _ in range(3):
            await alloy.actions.validate(*SLACK, request_body={})
            await alloy.actions.validate(*HUBSPOT, request_body={})
        assert _cache(alloy).fetches == 6
    assert _schema_fetches(fake) == 6

    fake2 = FakeAlloy()
    async with fake2.client() as alloy:
        alloy._requester._shared.schemas = SchemaCache(maxsize=2)
        for _ in range(3):
            await alloy.actions.validate(*SLACK, request_body={})
            await alloy.actions.validate(*HUBSPOT, request_body={})
    assert _schema_fetches(fake2) == 2


async def test_least_recently_used_is_evicted_first() -> None:
    fake = FakeAlloy()
    async with fake.client() as alloy:
        alloy._requester._shared.schemas = SchemaCache(maxsize=2)
        await alloy.actions.validate(*SLACK, request_body={})  # fetch 1
        await alloy.actions.validate(*HUBSPOT, request_body={})  # fetch 2
        await alloy.actions.validate(*SLACK, request_body={})  # hit: slack is now the newest
        await alloy.actions.validate("shopify", "getOrder")  # fetch 3, evicts hubspot
        await alloy.actions.validate(*SLACK, request_body={})  # still cached
        assert _schema_fetches(fake) == 3
        await alloy.actions.validate(*HUBSPOT, request_body={})  # fetch 4
    assert _schema_fetches(fake) == 4
    assert _schema_fetches(fake, "hubspot") == 2


# -- 3. execute(validate=...) ---------------------------------------------------------------


async def test_execute_validate_true_refuses_an_invalid_call_and_sends_nothing() -> None:
    fake = FakeAlloy()
    user, cred = _slack_user(fake)
    async with fake.client() as alloy:
        with pytest.raises(InvalidRequestError) as caught:
            await alloy.actions.execute(
                *SLACK, credential_id=cred, user_id=user, request_body={"text": 3}, validate=True
            )
    err = caught.value
    assert [(p.pointer, p.keyword) for p in err.problems] == [
        ("/request_body/channel", "required"),
        ("/request_body/text", "type"),
    ]
    assert err.field == "request_body"
    assert "slack.chat_postMessage" in str(err) and "nothing was sent" in str(err)
    assert fake.executions == [] and _routes(fake, "execute") == []
    assert _schema_fetches(fake) == 1


async def test_execute_validate_true_sends_a_valid_call_once() -> None:
    fake = FakeAlloy()
    user, cred = _slack_user(fake)
    async with fake.client() as alloy:
        result = await alloy.actions.execute(
            *SLACK,
            credential_id=cred,
            user_id=user,
            request_body={"channel": "C", "text": "ok"},
            validate=True,
        )
        await alloy.actions.execute(
            *SLACK,
            credential_id=cred,
            user_id=user,
            request_body={"channel": "C", "text": "again"},
            validate=True,
        )
    assert result.success
    assert [e.request_body["text"] for e in fake.executions] == ["ok", "again"]
    assert len(_routes(fake, "execute")) == 2
    assert _schema_fetches(fake) == 1


async def test_execute_without_validate_never_fetches_the_schema() -> None:
    fake = FakeAlloy()
    user, cred = _slack_user(fake)
    async with fake.client() as alloy:
        await alloy.actions.execute(
            *SLACK, credential_id=cred, user_id=user, request_body={"channel": "C", "text": "t"}
        )
        assert alloy._requester._shared.schemas is None
    assert _schema_fetches(fake) == 0 and len(fake.executions) == 1


async def test_execute_refuses_an_unknown_validate_setting() -> None:
    fake = FakeAlloy()
    user, cred = _slack_user(fake)
    async with fake.client() as alloy:
        with pytest.raises(InvalidRequestError) as caught:
            await alloy.actions.execute(
                *SLACK,
                credential_id=cred,
                user_id=user,
                request_body={"channel": "C", "text": "t"},
                validate="yes",  # type: ignore[arg-type]
            )
    assert caught.value.field == "validate"
    assert fake.requests == []


async def test_a_failed_schema_fetch_raises_and_executes_nothing() -> None:
    fake = FakeAlloy()
    user, cred = _slack_user(fake)
    fake.script("actions.get", Fault(status=500))
    body = {"channel": "C", "text": "t"}
    async with fake.client(max_retries=0) as alloy:
        with pytest.raises(ServerError) as caught:
            await alloy.actions.execute(
                *SLACK, credential_id=cred, user_id=user, request_body=body, validate=True
            )
        assert caught.value.status == 500
        assert fake.executions == [] and _routes(fake, "execute") == []
        # an unknown action: its 404 is raised, nothing executed
        with pytest.raises(NotFoundError):
            await alloy.actions.validate("slack", "noSuchAction", request_body={})
        with pytest.raises(NotFoundError):
            await alloy.actions.execute(
                "slack",
                "noSuchAction",
                credential_id=cred,
                user_id=user,
                request_body=body,
                validate=True,
            )
    assert fake.executions == [] and _routes(fake, "execute") == []
    assert _schema_fetches(fake) == 3


# -- 4. an unusable schema ------------------------------------------------------------------


@pytest.mark.parametrize("bad", [{"type": "strng"}, {"type": 5}, {"required": "text"}])
async def test_an_unusable_schema_is_reported_and_cached_as_unusable(bad: dict[str, Any]) -> None:
    fake = FakeAlloy()
    user, cred = _slack_user(fake)
    served = _serve_action(fake, *SLACK, bad)
    body = {"channel": "C", "text": "t"}
    async with fake.client() as alloy:
        for _ in range(3):
            with pytest.raises(UnusableSchemaError) as caught:
                await alloy.actions.validate(*SLACK, request_body=body)
            assert caught.value.action == "slack.chat_postMessage"
            assert "slack.chat_postMessage" in str(caught.value)
        with pytest.raises(UnusableSchemaError):
            await alloy.actions.execute(
                *SLACK, credential_id=cred, user_id=user, request_body=body, validate=True
            )
        assert fake.executions == [] and _routes(fake, "execute") == []
        result = await alloy.actions.execute(
            *SLACK, credential_id=cred, user_id=user, request_body=body, validate="best_effort"
        )
        assert result.success
        assert _cache(alloy).fetches == 1
    assert len(fake.executions) == 1 and len(_routes(fake, "execute")) == 1
    assert len(served) == 1 == _schema_fetches(fake)


async def test_best_effort_still_refuses_an_invalid_call_with_a_usable_schema() -> None:
    fake = FakeAlloy()
    user, cred = _slack_user(fake)
    async with fake.client() as alloy:
        with pytest.raises(InvalidRequestError) as caught:
            await alloy.actions.execute(
                *SLACK,
                credential_id=cred,
                user_id=user,
                request_body={"channel": "C"},
                validate="best_effort",
            )
    assert [p.pointer for p in caught.value.problems] == ["/request_body/text"]
    assert _routes(fake, "execute") == []


@pytest.fixture
def schema_host() -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP server that would serve a schema; records every request it gets."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            payload = b'{"type": "object"}'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/x.json", hits
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def test_a_remote_ref_is_never_fetched(schema_host: tuple[str, list[str]]) -> None:
    url, hits = schema_host
    fake = FakeAlloy()
    user, cred = _slack_user(fake)
    schema = {
        "type": "object",
        "properties": {"channel": {"$ref": url}, "text": {"type": "string"}},
    }
    _serve_action(fake, *SLACK, schema)
    body = {"channel": "C", "text": "t"}
    async with fake.client() as alloy:
        async with asyncio.timeout(10):
            with pytest.raises(UnusableSchemaError) as caught:
                await alloy.actions.validate(*SLACK, request_body=body)
            assert caught.value.action == "slack.chat_postMessage"
            with pytest.raises(UnusableSchemaError):
                await alloy.actions.execute(
                    *SLACK, credential_id=cred, user_id=user, request_body=body, validate=True
                )
            assert _routes(fake, "execute") == []
            await alloy.actions.execute(
                *SLACK, credential_id=cred, user_id=user, request_body=body, validate="best_effort"
            )
        assert _cache(alloy).fetches == 1
    assert hits == []
    assert len(fake.executions) == 1

    # the unreachable port of the brief: refused without a connection attempt or a hang
    fake2 = FakeAlloy()
    _serve_action(fake2, *SLACK, {"$ref": "http://127.0.0.1:1/x.json"})
    async with fake2.client() as alloy, asyncio.timeout(10):
        with pytest.raises(UnusableSchemaError):
            await alloy.actions.validate(*SLACK, request_body=body)


# -- 5. execute_many(validate=True) ---------------------------------------------------------


def _mixed_jobs(fake: FakeAlloy, n: int = 30, users: int = 3) -> tuple[list[ExecuteJob], set[int]]:
    """``n`` jobs over ``users`` users and two actions; every 3rd job is invalid."""
    people = []
    for u in range(users):
        user = fake.add_user(f"user{u}@example.com")
        people.append(
            (user, fake.add_credential(user, "slack"), fake.add_credential(user, "hubspot"))
        )
    jobs: list[ExecuteJob] = []
    invalid: set[int] = set()
    for i in range(n):
        user, slack, hubspot = people[i % users]
        bad = i % 3 == 2
        if bad:
            invalid.add(i)
        if i % 2 == 0:
            body: dict[str, Any] = {"channel": "C", "text": f"m{i}"}
            if bad:
                del body["channel"]
            jobs.append(ExecuteJob(*SLACK, slack, user, body, key=f"k{i}"))
        else:
            obj: Any = 12345 if bad else f"m{i}"
            jobs.append(ExecuteJob(*HUBSPOT, hubspot, user, {"objectId": obj}, key=f"k{i}"))
    return jobs, invalid


def _executed(fake: FakeAlloy) -> Counter[str]:
    """What the server ran, by the job's marker (slack text / hubspot objectId)."""
    out: Counter[str] = Counter()
    for e in fake.executions:
        body = e.request_body
        out[str(body.get("text", body.get("objectId")))] += 1
    return out


def _check_mixed(outcomes: list[JobOutcome], jobs: list[ExecuteJob], invalid: set[int]) -> None:
    assert sorted(o.index or 0 for o in outcomes) == list(range(len(jobs)))  # one outcome each
    for o in outcomes:
        assert o.index is not None and o.job == jobs[o.index]
        if o.index in invalid:
            assert not o.ok and o.result is None
            assert isinstance(o.error, InvalidRequestError)
            assert str(o.error).startswith(f"job at index {o.index}")
            assert o.error.problems
            assert o.attempts == 0
        else:
            assert o.ok, o.error


@pytest.mark.virtual_time
async def test_execute_many_validate_refuses_invalid_jobs_and_sends_the_valid_ones_once(
    tmp_path: Path,
) -> None:
    fake = FakeAlloy(latency=0.01)
    jobs, invalid = _mixed_jobs(fake)
    skips: list[tuple[str | None, str]] = []
    journal = tmp_path / "j.db"
    async with fake.client() as alloy:
        run = alloy.actions.execute_many(jobs, validate=True, concurrency=8, checkpoint=journal)
        outcomes = await _collect(run)
        _check_mixed(outcomes, jobs, invalid)
        assert run.report.succeeded == 20 and run.report.failed == 10
        problems = {o.index: o.error.problems for o in outcomes if o.error is not None}  # type: ignore[attr-defined]
        assert all(
            [p.pointer for p in problems[i]]
            == (["/request_body/channel"] if i % 2 == 0 else ["/request_body/objectId"])
            for i in invalid
        )
        expected = Counter(f"m{i}" for i in range(30) if i not in invalid)
        assert _executed(fake) == expected
        assert len(_routes(fake, "execute")) == 20  # the invalid ones never reached the route
        assert _schema_fetches(fake, "slack") == 1 and _schema_fetches(fake, "hubspot") == 1

        # the rerun: every job is journaled (the invalid ones as failed), nothing is sent
        sent_before = len(fake.requests)
        rerun = alloy.actions.execute_many(
            jobs,
            validate=True,
            checkpoint=journal,
            on_skip=lambda job, why: skips.append((job.key, why)),
        )
        assert await _collect(rerun) == []
        assert rerun.report.skipped == 30
        assert sorted(skips) == sorted((f"k{i}", "done") for i in range(30))
        assert len(fake.requests) == sent_before
    assert _executed(fake) == expected


@pytest.mark.virtual_time
async def test_execute_many_validate_fetches_one_schema_per_action_with_a_fresh_client() -> None:
    """Without a journal too, and each distinct action's schema fetched exactly once."""
    fake = FakeAlloy(latency=0.01)
    jobs, invalid = _mixed_jobs(fake, n=60, users=5)
    async with fake.client() as alloy:
        outcomes = await _collect(alloy.actions.execute_many(jobs, validate=True, per_user=2))
    _check_mixed(outcomes, jobs, invalid)
    assert _schema_fetches(fake, "slack") == 1 and _schema_fetches(fake, "hubspot") == 1
    assert sum(_executed(fake).values()) == 40 and set(_executed(fake).values()) == {1}


@pytest.mark.virtual_time
async def test_execute_many_without_validate_sends_the_invalid_jobs() -> None:
    """The control: without validate=True the same invalid jobs do reach the execute route."""
    fake = FakeAlloy()
    jobs, invalid = _mixed_jobs(fake, n=9)
    async with fake.client() as alloy:
        outcomes = await _collect(alloy.actions.execute_many(jobs))
    assert len(_routes(fake, "execute")) == 9 and _schema_fetches(fake) == 0
    # the fake itself refuses the one missing a required field (index 2, slack); the one
    # of the wrong type (index 5, hubspot) it even executes
    assert sorted(o.index or 0 for o in outcomes if not o.ok) == [2, 8]
    assert {o.index for o in outcomes if not o.ok} < invalid
    assert any(e.request_body == {"objectId": 12345} for e in fake.executions)


@pytest.mark.virtual_time
async def test_execute_many_a_schema_that_cannot_be_fetched_is_not_journaled(
    tmp_path: Path,
) -> None:
    fake = FakeAlloy(latency=0.01)
    jobs, invalid = _mixed_jobs(fake)
    down = {"hubspot": True}

    def hook(request: Request) -> None:
        if down["hubspot"] and "/connectors/hubspot/" in urlsplit(request.url).path:
            raise SimulatedDisconnect(processed=False)  # -> APIConnectionError at the client

    fake.route_hooks["actions.get"] = hook
    journal = tmp_path / "j.db"
    hubspot = {i for i in range(30) if i % 2 == 1}
    async with fake.client() as alloy:
        outcomes = await _collect(
            alloy.actions.execute_many(jobs, validate=True, concurrency=8, checkpoint=journal)
        )
        assert sorted(o.index or 0 for o in outcomes) == list(range(30))
        for o in outcomes:
            if o.index in hubspot:
                assert not o.ok and isinstance(o.error, APIConnectionError), o.error
                assert o.attempts == 0
            elif o.index in invalid:
                assert isinstance(o.error, InvalidRequestError) and o.error.problems
            else:
                assert o.ok, o.error
        assert not any(e.connector_id == "hubspot" for e in fake.executions)
        assert not any("/connectors/hubspot/" in r.path for r in _routes(fake, "execute"))
        slack_valid = Counter(f"m{i}" for i in range(0, 30, 2) if i not in invalid)
        assert _executed(fake) == slack_valid

        # the fault is gone: the rerun sends the hubspot jobs (valid ones run, invalid refused)
        down["hubspot"] = False
        skips: list[str] = []
        rerun = alloy.actions.execute_many(
            jobs,
            validate=True,
            checkpoint=journal,
            on_skip=lambda job, why: skips.append(job.key or ""),
        )
        again = await _collect(rerun)
        assert sorted(o.job.key or "" for o in again) == sorted(f"k{i}" for i in hubspot)
        assert rerun.report.skipped == 15 and sorted(skips) == sorted(
            f"k{i}" for i in range(0, 30, 2)
        )
        for o in again:
            i = int((o.job.key or "")[1:])
            assert o.ok == (i not in invalid), o.error
    expected = Counter(f"m{i}" for i in range(30) if i not in invalid)
    assert _executed(fake) == expected


@pytest.mark.virtual_time
async def test_execute_many_a_5xx_schema_fetch_is_not_journaled(tmp_path: Path) -> None:
    fake = FakeAlloy()
    user, cred = _slack_user(fake)
    jobs = [
        ExecuteJob(*SLACK, cred, user, {"channel": "C", "text": f"m{i}"}, key=f"k{i}")
        for i in range(3)
    ]
    fake.fail("actions.get", 500, times=3)
    journal = tmp_path / "j.db"
    async with fake.client(max_retries=0) as alloy:
        first = await _collect(alloy.actions.execute_many(jobs, validate=True, checkpoint=journal))
        assert [type(o.error) for o in first] == [ServerError] * 3
        assert fake.executions == []
        rerun = alloy.actions.execute_many(jobs, validate=True, checkpoint=journal)
        again = await _collect(rerun)
    assert rerun.report.skipped == 0
    assert sorted(o.job.key or "" for o in again) == ["k0", "k1", "k2"]
    assert len(fake.executions) == 3


@pytest.mark.virtual_time
async def test_execute_many_best_effort_sends_jobs_of_an_unusable_schema() -> None:
    fake = FakeAlloy()
    user, cred = _slack_user(fake)
    _serve_action(fake, *SLACK, {"type": "strng"})
    jobs = [
        ExecuteJob(*SLACK, cred, user, {"channel": "C", "text": f"m{i}"}, key=f"k{i}")
        for i in range(4)
    ]
    async with fake.client() as alloy:
        strict = await _collect(alloy.actions.execute_many(jobs, validate=True))
        assert all(isinstance(o.error, UnusableSchemaError) for o in strict)
        assert all(o.attempts == 0 for o in strict)
        assert fake.executions == []
        loose = await _collect(alloy.actions.execute_many(jobs, validate="best_effort"))
        assert all(o.ok for o in loose)
        assert _cache(alloy).fetches == 1
    assert _executed(fake) == Counter(f"m{i}" for i in range(4))
    assert _schema_fetches(fake) == 1


async def test_execute_many_refuses_an_unknown_validate_setting() -> None:
    fake = FakeAlloy()
    async with fake.client() as alloy:
        with pytest.raises(InvalidRequestError) as caught:
            alloy.actions.execute_many([], validate="maybe")  # type: ignore[arg-type]
    assert caught.value.field == "validate"


# -- 6. over real HTTP ----------------------------------------------------------------------


async def test_execute_many_validate_over_real_http() -> None:
    fake = FakeAlloy()
    jobs, invalid = _mixed_jobs(fake, n=24, users=4)
    async with (
        SandboxServer(fake) as server,
        AlloyClient(fake.api_key, base_url=server.url) as alloy,
    ):
        assert server.url.startswith("http://127.0.0.1:")
        outcomes = await _collect(alloy.actions.execute_many(jobs, validate=True, concurrency=6))
        async with (
            aiohttp.ClientSession() as session,
            session.get(server.url + "/_sandbox/executions") as answer,
        ):
            executions = await answer.json()
    _check_mixed(outcomes, jobs, invalid)
    ran: Counter[str] = Counter()
    for e in executions:
        body = e["request_body"]
        ran[str(body.get("text", body.get("objectId")))] += 1
    assert ran == Counter(f"m{i}" for i in range(24) if i not in invalid)
    assert _schema_fetches(fake, "slack") == 1 and _schema_fetches(fake, "hubspot") == 1
