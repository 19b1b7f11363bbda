"""Credential quarantine on Redis (issue 15): a chunk's quarantined jobs are kept as not sent,
so a rerun on the same namespace after the user reconnects sends exactly them; and the driver
sends again what ``--out`` says was never acted on."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio
from redis_server import RedisServer, running_redis

from alloy_async.cli._bulk_output import keys_in_out
from alloy_async.distributed import RedisCoordinator, run_chunk
from alloy_async.testing import FakeAlloy


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as server:
        yield server


def _jobs(pairs: list[tuple[str, str]], n: int) -> list[dict[str, Any]]:
    return [
        {
            "connectorId": "slack", "actionId": "chat_postMessage",
            "credentialId": pairs[i % len(pairs)][1], "userId": pairs[i % len(pairs)][0],
            "requestBody": {"channel": "C1", "text": f"j{i}"}, "key": f"j{i}", "_line": i + 1,
        }
        for i in range(n)
    ]  # fmt: skip


def _sent(fake: FakeAlloy, since: int = 0) -> Counter[str]:
    return Counter(
        r.json["requestBody"]["text"] for r in fake.requests[since:] if r.route == "execute"
    )


async def test_a_rerun_of_a_namespace_sends_what_the_quarantine_held_back(
    redis_server: RedisServer,
) -> None:
    fake = FakeAlloy(latency=0.01)
    users = [fake.add_user(f"u{i}@example.com") for i in range(3)]
    pairs = [(u, fake.add_credential(u, "slack")) for u in users]
    bad = pairs[1][1]
    fake.revoke_credential(bad)
    jobs = _jobs(pairs, 30)
    async with fake.client() as alloy:
        async with RedisCoordinator(redis_server.url, namespace="q1") as coord:
            rows = await run_chunk(alloy, coord, jobs, concurrency=2)
            names = {r["key"]: coord.journal.job_key(r["key"]) for r in rows}
        held = {
            r["key"] for r in rows if r.get("error", {}).get("type") == "CredentialQuarantinedError"
        }
        refused = {
            r["key"] for r in rows if r.get("error", {}).get("type") == "AuthenticationError"
        }
        assert held and refused and len(refused) <= 2  # at most the jobs in flight were sent
        assert all(r["ok"] for r in rows if r["key"] not in held | refused)
        assert {r["error"]["source"] for r in rows if r["key"] in refused} == {"THIRD_PARTY"}
        # Nothing is kept on Redis of a job never acted on (no row without a record: such a
        # key would never expire).
        client = redis.asyncio.Redis.from_url(redis_server.url)
        try:
            kept = {k for k in held | refused if await client.exists(names[k])}
        finally:
            await client.aclose()
        assert kept == set()
        before = len(fake.requests)

        fake.revoked.discard(bad)  # the user reconnected
        async with RedisCoordinator(redis_server.url, namespace="q1") as coord:
            again = await run_chunk(alloy, coord, jobs, concurrency=2)
    # The server's record: exactly the held-back and refused jobs are sent again, once each.
    assert _sent(fake, before) == Counter(dict.fromkeys(held | refused, 1))
    assert all(r["ok"] for r in again) and len(again) == len(jobs)
    assert sum(1 for e in fake.executions if e.credential_id == bad) == len(held | refused)


def test_out_lines_of_jobs_never_acted_on_do_not_count_as_done(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    rows = [
        {"key": "a", "ok": True},
        {"key": "b", "ok": False, "error": {"type": "CredentialQuarantinedError"}},
        {"key": "c", "ok": False, "error": {"type": "RateLimitError", "status": 429}},
        {"key": "d", "ok": False,
         "error": {"type": "AuthenticationError", "status": 401, "source": "THIRD_PARTY"}},
        {"key": "e", "ok": False, "error": {"type": "AuthenticationError", "status": 401}},
        {"key": "f", "ok": False, "error": {"type": "BadRequestError", "status": 400}},
        {"key": "b", "ok": True},  # sent again by a rerun: now done
    ]  # fmt: skip
    out.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    keys, torn = keys_in_out(str(out))
    assert keys == {"a", "b", "e", "f"} and not torn
