"""execute_many: caps, fairness, order, stop, checkpoint, cancellation, 429 storms."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import attrs
import orjson
import pytest

from alloy_async._core import CallStats, Requester, _Shared
from alloy_async._http import Request, Response, bearer
from alloy_async._wire import decode_json
from alloy_async.bulk import execute_many
from alloy_async.errors import (
    AuthenticationError,
    InvalidRequestError,
    OutcomeUnknownError,
    RateLimitError,
)
from alloy_async.journal import read_journal
from alloy_async.limiters import AdaptiveLimiter
from alloy_async.models.bulk import BulkReport, ExecuteJob, JobOutcome
from alloy_async.retry import RetryPolicy
from alloy_async.testing import FakeAlloy
from alloy_async.transports.fake import FakeTransport

pytestmark = pytest.mark.virtual_time


def _now() -> float:
    return asyncio.get_running_loop().time()


def job(i: int, user: str = "u", connector: str = "slack") -> ExecuteJob:
    return ExecuteJob(connector, "send", f"cred-{user}", user_id=user, request_body={"n": i})


class FakeExec:
    """A fake ``execute_one``: virtual latency, in-flight accounting, scripted errors."""

    def __init__(self, latency: float = 0.1, errors: dict[str, BaseException] | None = None):
        self.latency = latency
        self.errors = errors or {}
        self.in_flight = 0
        self.peak = 0
        self.by_user: Counter[str | None] = Counter()
        self.by_conn: Counter[str] = Counter()
        self.peak_user: Counter[str | None] = Counter()
        self.peak_conn: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.cancelled = 0
        self.finished_at: dict[str | None, float] = {}

    async def __call__(self, job: ExecuteJob, stats: CallStats) -> Any:
        stats.attempts += 1
        self.calls[job.effective_key] += 1
        self.in_flight += 1
        self.by_user[job.user_id] += 1
        self.by_conn[job.connector_id] += 1
        self.peak = max(self.peak, self.in_flight)
        self.peak_user[job.user_id] = max(self.peak_user[job.user_id], self.by_user[job.user_id])
        self.peak_conn[job.connector_id] = max(
            self.peak_conn[job.connector_id], self.by_conn[job.connector_id]
        )
        try:
            await asyncio.sleep(self.latency)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.in_flight -= 1
            self.by_user[job.user_id] -= 1
            self.by_conn[job.connector_id] -= 1
        self.finished_at[job.user_id] = _now()
        error = self.errors.get(job.user_id or "")
        if error is not None:
            raise error
        return {"echo": job.request_body}


async def collect(run: Any) -> list[JobOutcome]:
    return [o async for o in run]


async def test_caps_never_exceeded() -> None:
    fake = FakeExec()
    jobs = [job(i, f"user{i % 10}", f"conn{(i // 3) % 5}") for i in range(2000)]
    run = execute_many(fake, jobs, concurrency=16, per_user=2, per_connector=4)
    outcomes = await collect(run)
    assert len(outcomes) == 2000 and all(o.ok for o in outcomes)
    assert fake.peak == 16
    assert max(fake.peak_user.values()) == 2
    assert max(fake.peak_conn.values()) == 4
    assert run.limiter.statistics().peak_per_kind == {"user": 2, "connector": 4}
    assert run.report.succeeded == 2000 and run.report.attempts == 2000


@pytest.mark.parametrize("per_user", [4, None])
async def test_small_user_is_not_delayed_by_a_big_one(per_user: int | None) -> None:
    fake = FakeExec(latency=1.0)
    jobs = [job(i, "big") for i in range(50_000)] + [job(i, "small") for i in range(5)]
    async with execute_many(fake, jobs, concurrency=8, per_user=per_user, lookahead=60_000) as run:
        small = 0
        async for outcome in run:
            if outcome.job.user_id == "small":
                small += 1
                if small == 5:
                    break
    # FIFO would finish "small" after 50,000 / 8 (or / 4) seconds. Without a cap, round-robin
    # gives "small" every other free worker: 4 jobs at t=1, the 5th at t=2, done at t=3.
    assert fake.finished_at["small"] <= (2.0 if per_user else 3.0)
    assert fake.peak_user["big"] == (per_user or 8)


async def test_fairness_within_default_lookahead_and_memory_is_bounded() -> None:
    fake = FakeExec(latency=1.0)
    pulled = 0

    def source() -> Iterator[ExecuteJob]:
        nonlocal pulled
        for i in range(30_000):
            pulled += 1
            yield job(i, "big")
            if i == 5_000:
                for k in range(5):
                    pulled += 1
                    yield job(k, "small")

    run = execute_many(fake, source(), concurrency=16, per_user=4)
    done = 0
    max_ahead = 0
    async with run:
        async for _ in run:
            done += 1
            max_ahead = max(max_ahead, pulled - done)
            if done == 2_000:
                break
    assert fake.finished_at["small"] <= 2.0  # FIFO: after 5,000 / 4 seconds
    assert 10_000 <= max_ahead <= 10_000 + 16 + 2 * 16 + 256  # look-ahead + in flight + queue


async def test_ordered_mode_yields_in_input_order() -> None:
    latencies = [0.5, 0.1, 0.3, 0.05, 0.2] * 60

    async def execute(j: ExecuteJob, stats: CallStats) -> int:
        n: int = j.request_body["n"]
        await asyncio.sleep(latencies[n])
        return n

    run = execute_many(execute, (job(i, f"u{i % 3}") for i in range(300)), ordered=True)
    outcomes = await collect(run)
    assert [o.result for o in outcomes] == list(range(300))
    unordered = await collect(
        execute_many(execute, (job(i, f"u{i % 3}") for i in range(300)), ordered=False)
    )
    assert [o.result for o in unordered] != list(range(300))  # order was really restored
    assert sorted(o.result for o in unordered) == list(range(300))


async def test_ordered_window_is_bounded() -> None:
    pulled = 0
    emitted = 0
    worst = 0

    async def execute(j: ExecuteJob, stats: CallStats) -> None:
        await asyncio.sleep(10.0 if j.request_body["n"] % 500 == 0 else 0.01)

    def source() -> Iterator[ExecuteJob]:
        nonlocal pulled
        for i in range(3_000):
            pulled += 1
            yield job(i, f"u{i % 7}")

    async for _ in execute_many(execute, source(), ordered=True, lookahead=200):
        emitted += 1
        worst = max(worst, pulled - emitted)
    assert emitted == 3_000
    assert worst <= 200 + 1


async def test_failures_are_outcomes_and_stop_when_stops_dispatch() -> None:
    auth = AuthenticationError("expired", status=401)
    fake = FakeExec(latency=0.1, errors={"bad": auth})
    jobs = [job(i, "bad" if i % 10 == 0 else f"u{i % 7}") for i in range(1000)]

    def too_many_auth_errors(report: BulkReport) -> bool:
        return report.by_error.get("AuthenticationError", 0) > 3

    run = execute_many(fake, jobs, concurrency=4, stop_when=too_many_auth_errors)
    outcomes = await collect(run)
    report = run.report
    failed = [o for o in outcomes if not o.ok]
    assert all(o.error is auth for o in failed)
    assert report.stopped_early and "stop_when" in (report.stop_reason or "")
    assert 4 <= report.by_error["AuthenticationError"] <= 4 + 4  # in flight may still end
    assert len(outcomes) == report.finished < 1000
    assert report.finished + report.not_dispatched <= 1000
    assert report.not_dispatched > 0
    assert sum(fake.calls.values()) == report.finished
    assert "stopped early" in report.summary()


async def test_outcome_unknown_is_never_resent_but_429_is_requeued() -> None:
    calls: Counter[str] = Counter()

    async def execute(j: ExecuteJob, stats: CallStats) -> str:
        calls[j.user_id or ""] += 1
        stats.attempts += 1
        if j.user_id == "ambiguous":
            raise OutcomeUnknownError("sent, then silence")
        if j.user_id == "throttled" and calls["throttled"] <= 2:
            raise RateLimitError("slow down", status=429, retry_after=2.0)
        return "ok"

    run = execute_many(execute, [job(0, "ambiguous"), job(1, "throttled"), job(2, "fine")])
    outcomes = {o.job.user_id: o for o in await collect(run)}
    assert calls == {"ambiguous": 1, "throttled": 3, "fine": 1}
    assert isinstance(outcomes["ambiguous"].error, OutcomeUnknownError)
    assert outcomes["throttled"].ok and outcomes["throttled"].attempts == 3
    assert _now() >= 4.0  # two cool-downs of 2 s each
    assert run.report.outcome_unknown == 1 and run.report.succeeded == 2
    assert run.report.retries == 2


async def test_checkpoint_resume_runs_each_job_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    jobs = [job(i, f"u{i % 9}") for i in range(600)]
    fake = FakeExec(latency=0.1)
    run = execute_many(fake, jobs, concurrency=20, checkpoint=path)
    seen = 0
    async for _ in run:
        seen += 1
        if seen == 250:
            break  # interrupted mid-run, jobs in flight
    await run.aclose()  # what the abandoned iterator's finaliser does, without waiting for it
    first = run.report
    # In-flight calls (if the break caught any inside the call rather than waiting for their
    # intent to commit) were cancelled and recorded as outcome unknown.
    assert first.outcome_unknown == fake.cancelled
    run2 = execute_many(fake, jobs, concurrency=20, checkpoint=path)
    outcomes = await collect(run2)
    assert run2.report.skipped == first.finished
    assert len(outcomes) == 600 - first.finished
    assert set(fake.calls) == {j.effective_key for j in jobs}
    assert set(fake.calls.values()) == {1}  # every job executed exactly once
    states = dict(read_journal(path))
    assert len(states) == 600 and "intent" not in states.values()


def never(report: object) -> bool:
    return False


async def test_checkpoint_does_not_journal_not_handled_failures(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    calls: Counter[str] = Counter()

    async def execute(j: ExecuteJob, stats: CallStats) -> None:
        calls[j.user_id or ""] += 1
        if j.user_id == "auth":
            raise AuthenticationError("no", status=401)
        raise RateLimitError("busy", status=429, retry_after=None)

    jobs = [job(0, "auth"), job(1, "busy")]
    for _ in range(2):
        # stop_when given: a 401 from the API itself does not stop the run (issue 15).
        run = execute_many(execute, jobs, checkpoint=path, adaptive=False, stop_when=never)
        await collect(run)
    assert calls == {"auth": 1, "busy": 2}  # the 429 is tried again by the rerun
    assert [state for _, state in read_journal(path)] == ["failed"]


@pytest.mark.parametrize("how", ["break", "aclose", "cancel"])
async def test_cancellation_leaves_no_task_behind(how: str) -> None:
    before = asyncio.all_tasks()
    fake = FakeExec(latency=1.0)
    run = execute_many(fake, (job(i, f"u{i % 5}") for i in range(10_000)), concurrency=32)
    if how == "break":
        async for _ in run:
            break
        await asyncio.sleep(0.01)  # the abandoned iterator is finalised on the next turns
    elif how == "aclose":
        iterator = run.__aiter__()
        await iterator.__anext__()
        await run.aclose()
        await iterator.aclose()
    else:
        consumer = asyncio.create_task(collect(run))
        await asyncio.sleep(2.5)
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
    assert asyncio.all_tasks() == before
    assert fake.in_flight == 0
    assert fake.cancelled > 0
    report = run.report
    assert report.stopped_early and report.finished < 10_000
    await asyncio.sleep(5)
    assert sum(fake.calls.values()) == report.finished  # nothing dispatched after the stop


async def test_deadline_stops_dispatch() -> None:
    fake = FakeExec(latency=1.0)
    run = execute_many(fake, [job(i, f"u{i}") for i in range(1000)], concurrency=10, deadline=5.5)
    outcomes = await collect(run)
    assert len(outcomes) == 60  # dispatched at t = 0, 1, ..., 5; they end normally
    report = run.report
    assert report.stopped_early and "deadline" in (report.stop_reason or "")
    assert report.not_dispatched == 1000 - 60
    assert report.wall_time == pytest.approx(6.0)


async def test_mappings_and_async_iterables_are_accepted() -> None:
    async def source() -> AsyncIterator[dict[str, Any]]:
        for i in range(50):
            yield {"connectorId": "hubspot", "action_id": "get", "credentialId": "c", "userId": "u"}
            await asyncio.sleep(0)
            if i == 49:
                yield {
                    "connector_id": "hubspot",
                    "actionId": "get",
                    "credential_id": "c",
                    "key": "k",
                }

    seen: list[ExecuteJob] = []

    async def execute(j: ExecuteJob, stats: CallStats) -> None:
        seen.append(j)

    outcomes = await collect(execute_many(execute, source()))
    assert len(outcomes) == 51 and all(o.ok for o in outcomes)
    assert seen[0] == ExecuteJob("hubspot", "get", "c", user_id="u")


@pytest.mark.parametrize("journaled", [False, True])
async def test_one_bad_job_is_one_failed_outcome_and_the_rest_run(
    tmp_path: Path, journaled: bool
) -> None:
    """Issue 9 item 8: a malformed mapping or a body JSON cannot encode is one failed
    outcome naming the field and the index (journaled as failed); the other jobs run."""
    fake = FakeAlloy()
    user = fake.add_user("a@example.com")
    cred = fake.add_credential(user, "slack")
    base = {"connectorId": "slack", "actionId": "chat_postMessage", "userId": user}
    jobs: list[Any] = [
        {**base, "credentialId": cred, "key": "k0", "requestBody": {"channel": "C", "text": "k0"}},
        {**base, "key": "k1"},  # credentialId missing
        {
            **base,
            "credentialId": cred,
            "requestBody": {"channel": "C", "text": "k2", "bad": {1j: 2}},
        },
        {**base, "credentialId": cred, "key": "k3", "requestBody": {"channel": "C", "text": "k3"}},
        ExecuteJob(
            "slack", "chat_postMessage", cred, user, {"channel": "C", "text": "k4"}, key="k4"
        ),
    ]
    checkpoint = tmp_path / "j.db" if journaled else None
    async with fake.client() as alloy:
        run = alloy.actions.execute_many(jobs, checkpoint=checkpoint)
        outcomes = {o.index: o for o in await collect(run)}
    ran = [e.request_body["text"] for e in fake.executions]
    assert sorted(ran) == ["k0", "k3", "k4"]
    assert sorted(outcomes) == [0, 1, 2, 3, 4]
    missing, unencodable = outcomes[1].error, outcomes[2].error
    assert isinstance(missing, InvalidRequestError) and missing.field == "credential_id"
    assert "index 1" in str(missing) and not outcomes[1].ok
    assert isinstance(unencodable, InvalidRequestError) and "index 2" in str(unencodable)
    assert outcomes[1].job == jobs[1]  # the input as given: it could not be made a job
    if journaled:
        assert dict(read_journal(tmp_path / "j.db"))["k1"] == "failed"


async def test_a_failing_job_source_stops_dispatch_and_still_yields_what_ran() -> None:
    async def execute(j: ExecuteJob, stats: CallStats) -> None:
        await asyncio.sleep(1)

    async def source() -> AsyncIterator[ExecuteJob]:
        for i in range(3):
            yield job(i, f"u{i}")
            await asyncio.sleep(0.1)  # virtual time: the workers dispatch each job
        raise OSError("the jobs file went away")

    run = execute_many(execute, source(), concurrency=8)
    seen: list[JobOutcome] = []

    async def consume() -> None:
        async for outcome in run:
            seen.append(outcome)

    with pytest.raises(OSError, match="went away"):
        await consume()
    assert len(seen) == 3 and all(o.ok for o in seen)  # in flight at the failure: finished
    assert run.report.stopped_early and "went away" in (run.report.stop_reason or "")
    assert run.report.not_dispatched == 0


async def test_429_storm_slows_the_scope_and_every_job_finishes() -> None:
    adaptive = AdaptiveLimiter(16)
    storm_end = 3.0
    sends: list[tuple[float, str, int]] = []  # (time, job key, attempt number)
    throttled_at: list[tuple[float, float]] = []
    attempts: Counter[str] = Counter()
    in_flight = 0
    peak_after_storm = 0

    async def handler(request: Request) -> Response:
        nonlocal in_flight, peak_after_storm
        key = orjson.loads(request.body or b"{}")["requestBody"]["n"]
        attempts[key] += 1
        now = _now()
        sends.append((now, key, attempts[key]))
        if now < storm_end:
            throttled_at.append((now, 0.5))
            return Response(429, {"retry-after": "0.5"}, b'{"error": "RATE_LIMITED"}')
        in_flight += 1
        if now < storm_end + 0.5:
            peak_after_storm = max(peak_after_storm, in_flight)
        await asyncio.sleep(0.05)
        in_flight -= 1
        return Response(200, {}, b'{"result": {"ok": true}}')

    requester = Requester(
        _Shared(transport=FakeTransport(handler), owns_transport=True),
        base_url="https://alloy.test",
        auth=bearer("sk-test"),
        api_version="2025-09",
        user_id=None,
        timeout=None,
        retry=RetryPolicy(max_retries=1),
        default_headers={},
        throttle_listener=adaptive.on_throttle,
    )

    async def execute(j: ExecuteJob, stats: CallStats) -> Any:
        request = requester.build(
            "POST",
            "/connectors/{connectorId}/actions/{actionId}/execute",
            path_params={"connectorId": j.connector_id, "actionId": j.action_id},
            json={"credentialId": j.credential_id, "requestBody": j.request_body},
            user_id=j.user_id,
        )
        response = await requester.send(request, scope=f"execute:{j.connector_id}", stats=stats)
        return decode_json(response, request)

    run = execute_many(execute, [job(i, f"u{i % 4}") for i in range(300)], adaptive=adaptive)
    outcomes = await collect(run)
    await requester.aclose()
    assert len(outcomes) == 300 and all(o.ok for o in outcomes), run.report.summary()
    # While the scope cooled, the engine started no new job: first attempts only ever
    # happen once every 429 seen earlier has had its Retry-After.
    for t, _, attempt in sends:
        if attempt == 1:
            assert not any(t0 < t < t0 + ra for t0, ra in throttled_at)
    first_attempts_in_storm = sum(1 for t, _, a in sends if a == 1 and t < storm_end)
    assert first_attempts_in_storm < 300 // 4  # without cooling all 300 would go out at once
    assert peak_after_storm < 16  # the cut limit holds right after the storm ...
    assert adaptive.statistics().decreases >= 2
    assert run.report.throttled_seconds > 0 and run.report.retries > 0


def test_execute_job_validation_names_the_field() -> None:
    with pytest.raises(InvalidRequestError) as info:
        ExecuteJob("slack", "", "cred")
    assert info.value.field == "action_id"
    with pytest.raises(InvalidRequestError) as info:
        ExecuteJob.from_mapping({"connectorId": "a", "actionId": "b"})
    assert info.value.field == "credential_id"
    with pytest.raises(InvalidRequestError) as info:
        ExecuteJob.from_mapping(
            {"connectorId": "a", "connector_id": "a", "actionId": "b", "credentialId": "c"}
        )
    assert info.value.field == "connector_id"


_GOOD_JOB: dict[str, Any] = {"connector_id": "slack", "action_id": "send", "credential_id": "c"}


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        (name, value)
        for name in ("connector_id", "action_id", "credential_id", "user_id", "key")
        for value in ("", "  \t", 7, None, b"id")
        if not (value is None and name in ("user_id", "key"))  # those two may be None
    ]
    + [
        (name, value)
        for name in ("query_parameters", "path_params", "additional_headers")
        for value in ([("a", "b")], "a=b", 3)
    ],
)
def test_every_execute_job_field_is_checked_and_named(field: str, bad: object) -> None:
    """Each field refuses a bad value with its own name, when built and when evolved."""
    with pytest.raises(InvalidRequestError) as info:
        ExecuteJob(**{**_GOOD_JOB, field: bad})
    assert info.value.field == field and f"ExecuteJob.{field}" in str(info.value)
    with pytest.raises(InvalidRequestError) as info:
        attrs.evolve(ExecuteJob(**_GOOD_JOB), **{field: bad})
    assert info.value.field == field


def test_execute_job_names_the_first_bad_field_and_obeys_attrs() -> None:
    """Several bad fields: the first in field order is named (key is the last field); the
    checks are attrs validators, so attrs.validate and validators.disabled() apply."""
    with pytest.raises(InvalidRequestError) as info:
        ExecuteJob("slack", "send", "c", key="", query_parameters=5)  # type: ignore[arg-type]
    assert info.value.field == "query_parameters"
    with pytest.raises(InvalidRequestError) as info:
        attrs.evolve(ExecuteJob(**_GOOD_JOB), key=7, additional_headers="x")
    assert info.value.field == "additional_headers"
    with attrs.validators.disabled():
        assert ExecuteJob("", "send", "c").connector_id == ""
    job = ExecuteJob(**_GOOD_JOB)
    object.__setattr__(job, "connector_id", " ")
    with pytest.raises(InvalidRequestError) as info:
        attrs.validate(job)
    assert info.value.field == "connector_id"


def test_execute_job_accepts_str_subclasses_and_any_mapping() -> None:
    """The fast checks (exact str, exact dict) fall back to the full ones, which accept these."""

    class Slug(str):
        pass

    job = ExecuteJob(
        Slug("slack"), Slug("send"), Slug("c"), user_id=Slug("u"), key=Slug("k"),
        query_parameters=MappingProxyType({"a": 1}), path_params=Counter(x=1),
        additional_headers=MappingProxyType({"x-a": "b"}),
    )  # fmt: skip
    assert job.connector_id == "slack" and job.key == "k"
    assert job.query_parameters == {"a": 1}


def test_effective_key_is_stable_and_content_based() -> None:
    a = ExecuteJob("slack", "send", "c", request_body={"b": 1, "a": [1, 2]})
    b = ExecuteJob.from_mapping(
        {
            "connectorId": "slack",
            "actionId": "send",
            "credentialId": "c",
            "requestBody": {"a": [1, 2], "b": 1},
        }
    )
    assert a.effective_key == b.effective_key
    assert a.effective_key != ExecuteJob("slack", "send", "c", request_body={"b": 2}).effective_key
    assert ExecuteJob("slack", "send", "c", key="mine").effective_key == "mine"


def test_report_summary_is_readable() -> None:
    report = BulkReport(
        succeeded=7,
        failed=2,
        outcome_unknown=1,
        skipped=3,
        by_error={"AuthenticationError": 2, "OutcomeUnknownError": 1},
        attempts=12,
        retries=2,
        throttled_seconds=1.5,
        wall_time=4.25,
    )
    text = report.summary()
    assert "10 jobs in 4.25 s: 7 succeeded, 2 failed, 1 outcome unknown" in text
    assert "AuthenticationError x2" in text and "3 skipped" in text
    assert "stopped early" not in text


async def test_a_broken_stop_when_ends_the_run_and_is_raised() -> None:
    fake = FakeExec(latency=0.1)

    def broken(report: BulkReport) -> bool:
        raise ZeroDivisionError("oops")

    before = asyncio.all_tasks()
    run = execute_many(fake, [job(i, f"u{i}") for i in range(100)], stop_when=broken)
    with pytest.raises(ZeroDivisionError):
        await collect(run)
    assert run.report.stopped_early and run.report.not_dispatched > 0
    assert asyncio.all_tasks() == before
    assert [o async for o in run] == []  # a closed run yields nothing more
