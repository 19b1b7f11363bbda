"""Edges found by review (issues 14-15): each test fails on the code before its fix."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from test_otel import KEY, Telemetry

from alloy_async import (
    AlloyClient,
    ConfigurationError,
    FakeTransport,
    Request,
    Response,
    UnusableSchemaError,
)
from alloy_async.engine import execute_many
from alloy_async.errors import JournalError
from alloy_async.models import ExecuteJob
from alloy_async.testing import FakeAlloy

OK = orjson.dumps({"success": True, "result": {"id": "m1"}})


class _FailingThirdIntent:
    """A journal whose third intent cannot be written."""

    def __init__(self) -> None:
        self.entries: dict[str, Any] = {}
        self.intents = 0
        self.failed = asyncio.Event()
        self.run_id = ""

    async def open(self, run_id: str) -> None:
        self.run_id = run_id

    def lookup(self, key: str) -> Any:
        return self.entries.get(key)

    async def intend(self, key: str) -> None:
        self.intents += 1
        if self.intents == 3:
            self.failed.set()
            raise JournalError("disk full")
        self.entries[key] = ("intent", self.run_id)

    def record(self, key: str, state: str) -> None:
        self.entries[key] = (state, self.run_id)

    def forget(self, key: str) -> None:
        self.entries.pop(key, None)

    async def flush(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


@pytest.mark.parametrize("per_user", [None, 1])
async def test_a_run_closed_while_an_unsent_outcome_waits_releases_its_slot_once(
    per_user: int | None,
) -> None:
    async def one(job: ExecuteJob, stats: Any) -> dict[str, bool]:
        stats.attempts += 1
        return {"ok": True}

    journal = _FailingThirdIntent()
    jobs = [ExecuteJob("c", "a", "cr", user_id="u", key=f"k{i}") for i in range(5)]
    run = execute_many(one, jobs, concurrency=1, checkpoint=journal, per_user=per_user)  # type: ignore[arg-type]
    async with run:
        await journal.failed.wait()
        for _ in range(3):  # the worker goes on, without waiting, into the full channel
            await asyncio.sleep(0)
    stats = run.limiter.statistics()  # type: ignore[attr-defined]
    assert stats.in_flight == 0 and not stats.held
    assert run._flow.source_error is None  # was a KeyError from the second release


async def test_an_unusable_schema_is_a_fresh_error_each_time() -> None:
    fake = FakeAlloy()

    def broken(request: Request) -> Response:
        body = {"id": "chat_postMessage", "requestBody": {"type": "strng"}}
        return Response(200, {"content-type": "application/json"}, orjson.dumps(body))

    fake.route_hooks["actions.get"] = broken
    async with fake.client() as alloy:
        seen = []
        for _ in range(50):
            with pytest.raises(UnusableSchemaError) as caught:
                await alloy.actions.validate("slack", "chat_postMessage", request_body={})
            seen.append(caught.value)
    assert len({id(e) for e in seen}) == 50  # not one cached object raised again and again
    depth = 0
    tb = seen[-1].__traceback__
    while tb is not None:
        depth += 1
        tb = tb.tb_next
    assert depth < 20  # its traceback does not grow with every job


async def test_with_raw_response_does_not_offer_validate() -> None:
    fake = FakeAlloy()
    async with fake.client() as alloy:
        with pytest.raises(ConfigurationError, match="validate is not offered"):
            alloy.with_raw_response.actions.validate  # noqa: B018


async def test_a_job_queued_again_after_a_429_is_counted_once() -> None:
    t = Telemetry()
    answered = 0

    async def handler(request: Request) -> Response:
        nonlocal answered
        answered += 1
        if answered == 1:
            return Response(429, {"content-type": "application/json", "retry-after": "0"}, b"{}")
        return Response(200, {"content-type": "application/json"}, OK)

    async with AlloyClient(
        api_key=KEY, base_url="http://127.0.0.1:9", transport=FakeTransport(handler),
        telemetry=t.observer, max_retries=0,
    ) as alloy:  # fmt: skip
        jobs = [ExecuteJob("slack", "chat_postMessage", "c1", user_id="u1")]
        async with alloy.actions.execute_many(jobs, concurrency=1) as run:
            outcomes = [o async for o in run]
    assert [o.ok for o in outcomes] == [True] and answered == 2
    [point] = t.metrics()["alloy.bulk.jobs"]
    assert point.value == 1 and dict(point.attributes) == {"alloy.outcome": "succeeded"}
    spans = sorted(t.finished("alloy.job"), key=lambda s: s.start_time or 0)
    assert [s.attributes["alloy.outcome"] for s in spans if s.attributes] == [
        "throttled",
        "succeeded",
    ]


async def test_a_raising_response_hook_leaves_the_attempts_span_whole() -> None:
    t = Telemetry()

    async def handler(request: Request) -> Response:
        return Response(200, {"content-type": "application/json"}, OK)

    def boom(event: Any) -> None:
        raise RuntimeError("boom")

    async with AlloyClient(
        api_key=KEY, base_url="http://127.0.0.1:9", transport=FakeTransport(handler),
        telemetry=t.observer, event_hooks={"response": [boom]},
    ) as alloy:  # fmt: skip
        with pytest.raises(RuntimeError, match="boom"):
            await alloy.actions.execute("slack", "chat_postMessage", credential_id="c1")
    [http] = t.finished("POST")
    assert http.attributes is not None
    assert http.attributes["http.response.status_code"] == 200  # the server did answer
    assert "error.type" not in http.attributes


async def test_validate_without_jsonschema_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import alloy_async.services.actions as actions_module

    def missing() -> Any:
        raise ConfigurationError("validation needs the jsonschema package")

    monkeypatch.setattr(actions_module, "jsonschema_module", missing)
    fake = FakeAlloy()
    async with fake.client() as alloy:
        jobs = [ExecuteJob("slack", "chat_postMessage", "c1", user_id="u1")] * 3
        with pytest.raises(ConfigurationError, match="jsonschema"):
            alloy.actions.execute_many(jobs, validate=True)
    assert fake.requests == []  # not one schema fetch per job: nothing at all
