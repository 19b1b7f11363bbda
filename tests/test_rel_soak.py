"""Fault soak: 10,000 execute_many jobs over real HTTP against a faulty sandbox.

The sandbox (FakeAlloy served by aiohttp on 127.0.0.1) answers 10 % of executes with 429 (half
with a fractional ``Retry-After``, half without), 5 % with 503, resets 2 % of connections before
it acts and 1 % after it acted, and delays 2 % of answers (latency spikes). The SDK runs the jobs
through the real :class:`AiohttpTransport`. The sandbox's own execution record
(``GET /_sandbox/executions``) is the judge of what really ran.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from alloy_async import AlloyClient, OutcomeUnknownError, RetryPolicy
from alloy_async.limiters import AdaptiveLimiter
from alloy_async.models import ExecuteJob, JobOutcome
from alloy_async.sandbox import SandboxServer
from alloy_async.testing import FakeAlloy, FaultPlan

N_JOBS = 10_000
N_USERS = 40
CONCURRENCY = 48
PER_USER = 3
PER_CONNECTOR = 20
RETRY_AFTER = "0.02"  # seconds, the Retry-After of half the 429/503 answers
RATES = {"429": 0.10, "503": 0.05, "reset_before": 0.02, "reset_after": 0.01, "slow": 0.02}


#: (connector, action, required request body): four connectors, so four adaptive scopes.
ACTIONS = [
    ("slack", "chat_postMessage", {"channel": "C1", "text": "hello"}),
    ("sendgrid", "sendEmail", {"to": "a@example.com", "subject": "hi"}),
    ("notion", "post-search", {"query": "q"}),
    ("hubspot", "createContact", {"properties": {"firstname": "A", "lastname": "B", "email": "e"}}),
]


def _jobs(creds: dict[tuple[str, str], str], users: list[str]) -> Iterator[ExecuteJob]:
    for i in range(N_JOBS):
        user = users[i % len(users)]
        connector, action, body = ACTIONS[(i // len(users)) % len(ACTIONS)]
        yield ExecuteJob(
            connector_id=connector,
            action_id=action,
            credential_id=creds[user, connector],
            user_id=user,
            request_body={**body, "soak_id": f"soak-{i}"},
            key=f"soak-{i}",
        )


def _text(body: Any) -> str:
    return str(body["requestBody"]["soak_id"]) if isinstance(body, dict) else ""


async def test_fault_soak_10k_jobs_exactly_one_outcome_no_double_execution(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every job ends once; nothing runs twice; maybe-run jobs are OutcomeUnknown; caps hold;
    the waits after 429/503 are only what the server asked or the policy allows.

    Catches: a fractional Retry-After waited as whole seconds (rounded up to 1 s).

    asyncio debug mode is switched off for this one test: its per-callback traceback capture
    makes the ~12,000 HTTP round trips several times slower, and it judges nothing here
    (leaked sessions still fail the test: warnings are errors).
    """
    loop = asyncio.get_running_loop()
    debug = loop.get_debug()
    loop.set_debug(False)
    try:
        await _soak(capsys)
    finally:
        loop.set_debug(debug)


async def _soak(capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    plan = FaultPlan(
        rates=RATES,
        seed=20251123,
        retry_after=RETRY_AFTER,
        retry_after_share=0.5,
        spike=0.1,
        routes=frozenset({"execute"}),
    )
    fake = FakeAlloy(seed=7, faults=plan, latency=0.002)
    users = [fake.add_user(f"soak{i}@example.com") for i in range(N_USERS)]
    creds = {(u, c): fake.add_credential(u, c) for u in users for c, _, _ in ACTIONS}
    # Short waits keep the soak fast: a 429/503 without Retry-After cools its scope 20 ms.
    adaptive = AdaptiveLimiter(CONCURRENCY, default_cooldown=0.02)
    policy = RetryPolicy(max_retries=4, backoff_base=0.01, backoff_max=0.1)
    outcomes: list[JobOutcome] = []
    async with (
        SandboxServer(fake) as server,
        AlloyClient(
            fake.api_key,
            base_url=server.url,
            retry=policy,
            timeout=10,
            max_connections=CONCURRENCY,
        ) as alloy,
    ):
        run = alloy.actions.execute_many(
            _jobs(creds, users),
            concurrency=CONCURRENCY,
            per_user=PER_USER,
            per_connector=PER_CONNECTOR,
            adaptive=adaptive,
        )
        async with run:
            async for outcome in run:
                outcomes.append(outcome)
        report = run.report
        executions = await alloy.request("GET", "/_sandbox/executions")
        stats = await alloy.request("GET", "/_sandbox/stats")
    elapsed = time.monotonic() - started

    # Every job has exactly one outcome.
    keys = Counter(o.job.key for o in outcomes)
    assert len(outcomes) == N_JOBS
    assert set(keys) == {f"soak-{i}" for i in range(N_JOBS)}
    assert max(keys.values()) == 1
    assert report.finished == N_JOBS and not report.stopped_early
    assert report.not_dispatched == 0

    # The sandbox's record is the judge: nothing ran twice.
    ran = Counter(str(e["request_body"]["soak_id"]) for e in executions)
    assert len(executions) == len(fake.executions)
    assert not [t for t, n in ran.items() if n > 1], "an execution was processed twice"
    by_text = {_text({"requestBody": o.job.request_body}): o for o in outcomes}
    succeeded = [t for t, o in by_text.items() if o.ok]
    unknown = {t for t, o in by_text.items() if isinstance(o.error, OutcomeUnknownError)}
    failed = [t for t, o in by_text.items() if not o.ok and t not in unknown]
    assert all(ran[t] == 1 for t in succeeded), "a succeeded job did not run exactly once"
    # A definitive failure (not OutcomeUnknown) means the server did not act.
    assert all(ran[t] == 0 for t in failed), "a failed job had in fact run"
    assert set(ran) <= set(succeeded) | unknown

    # Jobs that may have been processed end as OutcomeUnknownError.
    resets = Counter()
    reset_after = set()
    reset_before = set()
    for rec in fake.fault_log:
        resets[rec.fault] += 1
        if rec.fault == "reset_after":
            reset_after.add(_text(rec.json))
        elif rec.fault == "reset_before":
            reset_before.add(_text(rec.json))
    assert reset_after and reset_before
    assert reset_after <= unknown, "a job processed then reset was not reported OutcomeUnknown"
    assert all(ran[t] == 1 for t in reset_after)
    assert reset_before <= unknown  # over HTTP the client cannot tell before from after
    assert all(ran[t] == 0 for t in reset_before)
    # No job is OutcomeUnknown without a reason (nothing timed out in this soak).
    assert unknown == reset_after | reset_before

    # Caps were never exceeded (the server counts requests in flight) and were used.
    assert stats["peak_in_flight"] <= CONCURRENCY
    assert stats["peak_in_flight_per_user"] <= PER_USER
    assert stats["peak_in_flight_per_connector"] <= PER_CONNECTOR
    assert stats["peak_in_flight"] > PER_CONNECTOR  # the caps were really under pressure
    faults = stats["faults"]
    # The plan really injected its faults (rates are of requests, so of at least N_JOBS).
    assert faults["429"] > 0.08 * N_JOBS and faults["503"] > 0.04 * N_JOBS
    assert faults["slow"] > 0.01 * N_JOBS
    # Each wait after a 429/503 is the Retry-After (0.02 s) or a backoff of at most backoff_max:
    # a wait stretched to whole seconds would exceed this (the sum of waits, not wall time).
    longest = max(float(RETRY_AFTER), policy.backoff_max)
    assert 0 < report.throttled_seconds <= report.retries * longest, (
        report.throttled_seconds,
        report.retries,
    )

    summary = (
        f"\n[reliability] fault soak: {N_JOBS} jobs, {len(executions)} executions ran "
        f"({len(succeeded)} succeeded, {len(unknown)} outcome unknown, {len(failed)} failed), "
        f"{report.attempts} attempts, faults {dict(sorted(faults.items()))}, "
        f"peak in flight {stats['peak_in_flight']}/{CONCURRENCY} "
        f"(per user {stats['peak_in_flight_per_user']}/{PER_USER}, per connector "
        f"{stats['peak_in_flight_per_connector']}/{PER_CONNECTOR}), {elapsed:.1f} s"
    )
    with capsys.disabled():
        print(summary)


def test_fault_plan_mixes_retry_after_and_spikes() -> None:
    """The plan the soak relies on: about half the status faults carry Retry-After, spikes
    delay without failing, and bad plans are refused."""
    plan = FaultPlan(
        rates={"429": 0.5, "slow": 0.25}, seed=1, retry_after="0.02", retry_after_share=0.5
    )
    drawn = [plan.draw("execute") for _ in range(10_000)]
    statuses = [f for f in drawn if f is not None and f.status == 429]
    with_header = sum(f.retry_after == "0.02" for f in statuses)
    assert 0.45 < with_header / len(statuses) < 0.55
    assert all(f.retry_after is None for f in statuses if f.retry_after != "0.02")
    spikes = [f for f in drawn if f is not None and f.delay]
    assert 2200 < len(spikes) < 2800
    assert all(f.status is None and f.reset is None and f.delay == 0.05 for f in spikes)
    for bad in ({"429": 0.7, "503": 0.7}, {"teapot": 0.1}, {"429": 1.5}):
        with pytest.raises(ValueError):
            FaultPlan(rates=bad)
    with pytest.raises(ValueError):
        FaultPlan(rates={}, retry_after_share=2)


@pytest.mark.virtual_time
async def test_latency_spike_delays_then_serves() -> None:
    """A "slow" fault adds its spike and then serves the request normally (it runs once)."""
    fake = FakeAlloy(faults=FaultPlan(rates={"slow": 1.0}, spike=3.0))
    user = fake.add_user("s@example.com")
    cred = fake.add_credential(user, "slack")
    loop = asyncio.get_running_loop()
    async with fake.client() as alloy:
        start = loop.time()
        result = await alloy.actions.execute(
            "slack", "chat_postMessage", credential_id=cred, user_id=user,
            request_body={"channel": "C", "text": "t"},
        )  # fmt: skip
        assert loop.time() - start == pytest.approx(3.0)
    assert result.raw is not None
    assert len(fake.executions) == 1 and fake.fault_counts == {"slow": 1}
    assert [r.fault for r in fake.fault_log] == ["slow"]
