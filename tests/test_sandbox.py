"""The sandbox server: fault flags really produce faults, the rate limit answers 429."""

from __future__ import annotations

import asyncio
from collections import Counter

import aiohttp
import pytest

from alloy_async import (
    AlloyClient,
    AuthenticationError,
    ConfigurationError,
    OutcomeUnknownError,
    RateLimitError,
    RetryPolicy,
    ServerError,
)
from alloy_async.sandbox import SandboxServer, fault_plan, parse_duration, parse_faults
from alloy_async.testing import FakeAlloy


async def test_fault_flags_produce_counted_faults() -> None:
    """--faults rates turn into real 429s, 503s and resets, counted on both sides.

    Executes (POST) are used because aiohttp itself silently re-sends an idempotent GET once
    when a reused keep-alive connection drops, which would hide resets from the count.
    """
    fake = FakeAlloy(faults=fault_plan("429=0.2,503=0.1,reset=0.1,reset_after=0.05", seed=3))
    user = fake.add_user("f@example.com")
    cred = fake.add_credential(user, "slack")
    seen: Counter[str] = Counter()
    waits: set[float | None] = set()
    async with (
        SandboxServer(fake) as server,
        AlloyClient(fake.api_key, base_url=server.url, retry=RetryPolicy(max_retries=0)) as alloy,
    ):
        for n in range(400):
            try:
                await alloy.actions.execute(
                    "slack",
                    "chat_postMessage",
                    credential_id=cred,
                    user_id=user,
                    request_body={"channel": "C", "text": str(n)},
                )
                seen["ok"] += 1
            except RateLimitError as exc:
                waits.add(exc.retry_after)
                seen["429"] += 1
            except ServerError as exc:
                seen[str(exc.status)] += 1
            except OutcomeUnknownError:
                seen["reset"] += 1
        stats = server.stats()
    faults = stats["faults"]
    assert waits == {1.0}  # every 429 carried the plan's Retry-After
    assert (faults["429"], faults["503"]) == (seen["429"], seen["503"])
    # Over HTTP a reset before or after processing looks the same to the client: unknown.
    assert faults["reset_before"] + faults["reset_after"] == seen["reset"]
    assert 60 <= seen["429"] <= 100  # 20 % of 400, loosely
    assert 20 <= seen["503"] <= 60
    assert 30 <= seen["reset"] <= 90
    assert stats["executions"] == seen["ok"] + faults["reset_after"]


async def test_server_side_rate_limit_answers_429_with_retry_after() -> None:
    """With rate_limit=5/s and burst 5, a burst of 40 gets 35 answers of 429."""
    fake = FakeAlloy()
    async with (
        SandboxServer(fake, rate_limit=5, burst=5) as server,
        AlloyClient(fake.api_key, base_url=server.url, max_retries=0) as alloy,
    ):
        results = await asyncio.gather(
            *(alloy.request("GET", "/connectors") for _ in range(40)), return_exceptions=True
        )
        limited = [r for r in results if isinstance(r, RateLimitError)]
        assert len(limited) >= 34
        assert all(r.retry_after is not None and r.retry_after >= 1 for r in limited)
        assert server.stats()["rate_limited"] == len(limited)


async def test_stats_report_peak_in_flight_per_user() -> None:
    """Concurrent requests for two users show up as peaks, globally and per user."""
    fake = FakeAlloy(latency=0.05)
    async with (
        SandboxServer(fake) as server,
        AlloyClient(fake.api_key, base_url=server.url) as alloy,
    ):
        await asyncio.gather(
            *(alloy.request("GET", "/connectors", user_id=f"u{i % 2}") for i in range(8))
        )
        stats = await alloy.request("GET", "/_sandbox/stats")
    assert stats["peak_in_flight"] == 8
    assert stats["peak_in_flight_per_user"] == 4


def test_parsers_and_loopback_only() -> None:
    """Durations and fault specs parse; bad ones and non-loopback hosts are refused."""
    assert parse_duration("5ms") == pytest.approx(0.005)
    assert parse_duration("2") == 2.0
    assert parse_faults("429=0.05, 503=0.02,reset_after=0.01") == {
        "429": 0.05,
        "503": 0.02,
        "reset_after": 0.01,
    }
    for bad in ("429", "teapot=0.1", "429=2", "429=x", "429=0.6,503=0.6"):
        with pytest.raises(ValueError):
            parse_faults(bad)
    with pytest.raises(ValueError):
        parse_duration("fast")
    with pytest.raises(ConfigurationError):
        SandboxServer(host="0.0.0.0")


async def test_a_credential_is_revoked_and_reconnected_over_http() -> None:
    """``PUT``/``DELETE /_sandbox/credentials/{id}/revoked``: what the CLI tests use to revoke a
    credential in a sandbox subprocess. Catches: a revoke that does not reach the executes
    (answered 401 ``THIRD_PARTY``, nothing executed, counted per credential), a reconnect that
    leaves it revoked, an unknown credential answered anything but a JSON 404."""
    fake = FakeAlloy()
    user = fake.add_user("r@example.com")
    cred = fake.add_credential(user, "slack")
    job = {"credential_id": cred, "user_id": user, "request_body": {"channel": "C1", "text": "hi"}}
    async with (
        SandboxServer(fake) as server,
        AlloyClient(fake.api_key, base_url=server.url) as alloy,
        aiohttp.ClientSession() as http,
    ):
        revoked = f"{server.url}/_sandbox/credentials/{cred}/revoked"
        async with http.put(revoked) as resp:
            assert (resp.status, await resp.json()) == (
                200,
                {"credentialId": cred, "revoked": True},
            )
        with pytest.raises(AuthenticationError) as info:
            await alloy.actions.execute("slack", "chat_postMessage", **job)
        assert info.value.source == "THIRD_PARTY"
        async with http.get(f"{server.url}/_sandbox/stats") as resp:
            assert (await resp.json())["revoked_requests"] == {cred: 1}
        assert fake.executions == []
        async with http.delete(revoked) as resp:
            assert (await resp.json())["revoked"] is False
        await alloy.actions.execute("slack", "chat_postMessage", **job)
        assert len(fake.executions) == 1
        async with http.put(f"{server.url}/_sandbox/credentials/nope/revoked") as resp:
            assert resp.status == 404
            assert (await resp.json())["error"]["code"] == "NOT_FOUND"
