"""Retries on the virtual clock: counts, waits, Retry-After, deadline, side-effect rules."""

from __future__ import annotations

import asyncio
import email.utils
import time
from typing import Any

import pytest

from alloy_async import (
    APIConnectionError,
    APITimeoutError,
    OutcomeUnknownError,
    RateLimitError,
    RetryPolicy,
    ServerError,
)
from alloy_async.retry import parse_retry_after
from alloy_async.testing import FakeAlloy, Fault

pytestmark = pytest.mark.virtual_time


async def setup(fake: FakeAlloy) -> tuple[str, str]:
    user = fake.add_user("jane@example.com", "Jane")
    return user, fake.add_credential(user, "slack")


def execute_call(alloy: Any, user: str, cred: str, text: str = "hi") -> Any:
    return alloy.request(
        "POST",
        "/connectors/{c}/actions/{a}/execute",
        path_params={"c": "slack", "a": "chat_postMessage"},
        json={"credentialId": cred, "requestBody": {"channel": "C1", "text": text}},
        user_id=user,
    )


def now() -> float:
    return asyncio.get_running_loop().time()


async def test_get_is_retried_on_5xx_with_bounded_jittered_waits() -> None:
    """A GET that fails with 503, 500 then succeeds takes 3 attempts and waits <= 0.5 + 1.0 s."""
    fake = FakeAlloy()
    fake.fail("connectors.list", 503)
    fake.fail("connectors.list", 500)
    async with fake.client() as alloy:
        start = now()
        body = await alloy.request("GET", "/connectors")
        waited = now() - start
    assert len(body["connectors"]) == 5
    assert [r.route for r in fake.requests] == ["connectors.list"] * 3
    assert 0 <= waited <= 0.5 + 1.0


async def test_retries_stop_after_max_retries() -> None:
    """max_retries=3 means four attempts, then the last error is raised."""
    fake = FakeAlloy()
    fake.fail("connectors.list", 502, times=10)
    async with fake.client(max_retries=3) as alloy:
        with pytest.raises(ServerError) as info:
            await alloy.request("GET", "/connectors")
    assert info.value.status == 502
    assert len(fake.requests) == 4


async def test_backoff_grows_exponentially_and_is_capped() -> None:
    """Full jitter stays within base*2**n, capped at backoff_max."""
    policy = RetryPolicy(backoff_base=0.5, backoff_max=8.0)
    for n, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (9, 8.0)]:
        waits = [policy.backoff_wait(n) for _ in range(200)]
        assert all(0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling * 0.7  # really jittered over the whole range


async def test_retry_after_seconds_is_honoured_exactly() -> None:
    """A 429 with Retry-After: 7 waits exactly 7 virtual seconds, then succeeds."""
    fake = FakeAlloy()
    fake.fail("connectors.list", 429, retry_after="7")
    async with fake.client() as alloy:
        start = now()
        await alloy.request("GET", "/connectors")
        assert now() - start == pytest.approx(7.0)
    assert len(fake.requests) == 2


async def test_retry_after_http_date_is_honoured() -> None:
    """Retry-After as an HTTP date is turned into seconds from now."""
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    waited = parse_retry_after({"retry-after": future})
    assert waited is not None and 28 <= waited <= 30
    assert parse_retry_after({"retry-after": email.utils.formatdate(0, usegmt=True)}) == 0.0
    assert parse_retry_after({"retry-after": "garbage"}) is None
    assert parse_retry_after({"retry-after": "-3"}) is None
    assert parse_retry_after({"retry-after-ms": "1500"}) == 1.5
    assert parse_retry_after({}) is None


async def test_too_long_retry_after_raises_at_once_with_retry_after() -> None:
    """A Retry-After beyond max_retry_after raises RateLimitError without waiting."""
    fake = FakeAlloy()
    fake.fail("connectors.list", 429, retry_after="3600")
    async with fake.client() as alloy:
        start = now()
        with pytest.raises(RateLimitError) as info:
            await alloy.request("GET", "/connectors")
        assert now() - start == 0
    assert info.value.retry_after == 3600
    assert len(fake.requests) == 1


async def test_deadline_bounds_attempts_and_waits() -> None:
    """With a 5 s deadline, a Retry-After of 10 s is not waited for."""
    fake = FakeAlloy()
    fake.fail("connectors.list", 503, retry_after="10", times=5)
    async with fake.client() as alloy:
        start = now()
        with pytest.raises(ServerError):
            await alloy.with_options(deadline=5).request("GET", "/connectors")
        assert now() - start < 5
    assert len(fake.requests) == 1


async def test_deadline_stops_a_hanging_get() -> None:
    """A server that never answers is cut off by the deadline (APITimeoutError)."""
    fake = FakeAlloy()
    fake.script("connectors.list", Fault(hang=True), Fault(hang=True), Fault(hang=True))
    async with fake.client(timeout=None) as alloy:
        start = now()
        with pytest.raises(APITimeoutError, match="deadline"):
            await alloy.with_options(deadline=2.5).request("GET", "/connectors")
        assert now() - start == pytest.approx(2.5)


async def test_execute_is_not_resent_after_reset_after_processing() -> None:
    """A reset after the server acted raises OutcomeUnknownError; the action ran once."""
    fake = FakeAlloy()
    user, cred = await setup(fake)
    fake.script("execute", Fault(reset="after"))
    async with fake.client() as alloy:
        with pytest.raises(OutcomeUnknownError):
            await execute_call(alloy, user, cred)
    assert len(fake.executions) == 1
    assert len(fake.executions_of(action_id="chat_postMessage")) == 1


async def test_execute_is_retried_when_never_sent() -> None:
    """A reset before the server acted is safe to retry: exactly one execution."""
    fake = FakeAlloy()
    user, cred = await setup(fake)
    fake.script("execute", Fault(reset="before"), Fault(reset="before"))
    async with fake.client() as alloy:
        body = await execute_call(alloy, user, cred)
    assert body["success"] is True
    assert len(fake.executions) == 1
    assert len([r for r in fake.requests if r.route == "execute"]) == 3


@pytest.mark.parametrize("status", [429, 503])
async def test_execute_is_retried_on_not_handled_statuses(status: int) -> None:
    """429 and 503 mean the server did not act: execute is retried."""
    fake = FakeAlloy()
    user, cred = await setup(fake)
    fake.fail("execute", status, retry_after="1")
    async with fake.client() as alloy:
        await execute_call(alloy, user, cred)
    assert len(fake.executions) == 1
    assert len([r for r in fake.requests if r.route == "execute"]) == 2


@pytest.mark.parametrize("status", [500, 502, 504])
async def test_execute_is_never_retried_on_ambiguous_5xx(status: int) -> None:
    """500/502/504 may come after the action ran: raised at once, not re-sent."""
    fake = FakeAlloy()
    user, cred = await setup(fake)
    fake.fail("execute", status)
    async with fake.client() as alloy:
        with pytest.raises(ServerError):
            await execute_call(alloy, user, cred)
    assert len([r for r in fake.requests if r.route == "execute"]) == 1


async def test_execute_timeout_after_sending_is_outcome_unknown() -> None:
    """An execute that hangs past its deadline is OutcomeUnknownError, sent once."""
    fake = FakeAlloy()
    user, cred = await setup(fake)
    fake.script("execute", Fault(hang=True))
    async with fake.client().with_options(deadline=3) as alloy:
        with pytest.raises(OutcomeUnknownError):
            await execute_call(alloy, user, cred)
    assert len([r for r in fake.requests if r.route == "execute"]) == 1


async def test_get_is_retried_after_outcome_unknown() -> None:
    """Reads are idempotent: a reset after processing is retried."""
    fake = FakeAlloy()
    fake.script("connectors.list", Fault(reset="after"))
    async with fake.client() as alloy:
        await alloy.request("GET", "/connectors")
    assert len(fake.requests) == 2


async def test_retry_unsafe_opt_in_retries_post() -> None:
    """A caller who knows an action is idempotent may opt in to retrying it."""
    fake = FakeAlloy()
    user, cred = await setup(fake)
    fake.fail("execute", 500)
    policy = RetryPolicy(retry_unsafe=True)
    async with fake.client(retry=policy) as alloy:
        await execute_call(alloy, user, cred)
    assert len(fake.executions) == 1
    assert len([r for r in fake.requests if r.route == "execute"]) == 2


async def test_connection_error_exhausts_to_api_connection_error() -> None:
    """Persistent "never sent" failures end as APIConnectionError after the retries."""
    fake = FakeAlloy()
    fake.script("connectors.list", *[Fault(reset="before")] * 4)
    async with fake.client(max_retries=3) as alloy:
        with pytest.raises(APIConnectionError) as info:
            await alloy.request("GET", "/connectors")
    assert not isinstance(info.value, OutcomeUnknownError)
    assert len(fake.requests) == 4


async def test_throttle_listener_hears_every_429() -> None:
    """The pipeline tells a listener about throttling, with the scope and Retry-After."""
    fake = FakeAlloy()
    heard: list[tuple[str, float | None]] = []
    fake.fail("connectors.list", 429, retry_after="2", times=2)
    async with fake.client() as alloy:
        requester = alloy._requester.evolve(throttle_listener=lambda s, r: heard.append((s, r)))
        await requester.request_json("GET", "/connectors", scope="catalog")
    assert heard == [("catalog", 2.0), ("catalog", 2.0)]


def test_policy_validates_its_numbers() -> None:
    """Negative numbers are refused with the field named."""
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy(max_retries=-1)
    with pytest.raises(ValueError, match="deadline"):
        RetryPolicy(deadline=0)
