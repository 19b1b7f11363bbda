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
from bounds import until
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


# -- issue 22, item 3: one quarantine per namespace, shared by its runs in every process -----


def _held(rows: list[dict[str, Any]]) -> set[str]:
    return {
        r["key"] for r in rows if r.get("error", {}).get("type") == "CredentialQuarantinedError"
    }


async def test_a_credential_quarantined_in_one_process_is_held_back_in_another(
    redis_server: RedisServer,
) -> None:
    """Two coordinators on one namespace stand for two processes. Catches: a quarantine kept
    per run (the second process pays its own 401s for the revoked credential); a run that
    does not take the namespace's quarantine when it starts; a session that does not hold it
    between runs; the last run out leaving it behind (the rerun would refuse again)."""
    fake = FakeAlloy(latency=0.01)
    users = [fake.add_user(f"u{i}@example.com") for i in range(2)]
    pairs = [(u, fake.add_credential(u, "slack")) for u in users]
    bad = pairs[1][1]
    fake.revoke_credential(bad)
    first, second = _jobs(pairs, 20), _jobs(pairs, 40)[20:]
    async with (
        fake.client() as alloy,
        RedisCoordinator(redis_server.url, namespace="q2") as one,
        RedisCoordinator(redis_server.url, namespace="q2") as two,
    ):
        async with one.session():
            await run_chunk(alloy, one, first, concurrency=2)
            assert fake.revoked_requests[bad] >= 1
            paid = fake.revoked_requests[bad]
            rows = await run_chunk(alloy, two, second, concurrency=2)
            # The other process sent nothing of the revoked credential: all held back.
            assert fake.revoked_requests[bad] == paid
            assert _held(rows) == {j["key"] for j in second if j["credentialId"] == bad}
            assert two.statistics().quarantined == 1
        # Every run and the session have ended: the quarantine went with them.
        fake.revoked.discard(bad)  # the user reconnected
        again = await run_chunk(alloy, two, second, concurrency=2)
    assert all(r["ok"] for r in again)
    ran = Counter(e.request_body["text"] for e in fake.executions)
    assert ran == Counter(
        {j["key"]: 1 for j in first + second if j not in first or j["credentialId"] != bad}
    )


async def test_lifting_a_quarantine_reaches_every_process(redis_server: RedisServer) -> None:
    """Catches: ``lift_quarantine`` that ends it only in the process that asked (another
    process, still holding the credential as quarantined, refuses its jobs until its runs all
    end), or only on Redis (not in the views that processes already hold)."""
    fake = FakeAlloy(latency=0.01)
    user = fake.add_user("u@example.com")
    bad = fake.add_credential(user, "slack")
    fake.revoke_credential(bad)
    jobs = _jobs([(user, bad)], 6)
    async with (
        fake.client() as alloy,
        RedisCoordinator(redis_server.url, namespace="q3") as one,
        RedisCoordinator(redis_server.url, namespace="q3") as two,
        one.session(),
        two.session(),
    ):
        await run_chunk(alloy, one, jobs[:3], concurrency=1)
        await until(lambda: bad in two.quarantine.bad, "the quarantine reaching process two", 10)
        fake.revoked.discard(bad)
        await one.lift_quarantine(bad)
        await until(lambda: bad not in two.quarantine.bad, "the lift reaching process two", 10)
        rows = await run_chunk(alloy, two, jobs[3:], concurrency=1)
    assert all(r["ok"] for r in rows)
    assert fake.revoked_requests[bad] == 1  # the first run's first job; the rest held back
    assert _sent(fake) == Counter({j["key"]: 1 for j in [jobs[0], *jobs[3:]]})


async def test_a_dead_holders_quarantine_lapses_and_garbage_is_ignored(
    redis_server: RedisServer,
) -> None:
    """What a process that died mid-run leaves on Redis: its live-run entry (expired) and the
    quarantine it held, plus entries no run of ours wrote. Catches: a run that does not drop a
    dead holder's entry when it starts (the quarantine would outlive every crash); one that
    trusts a malformed entry (or crashes on it)."""
    fake = FakeAlloy(latency=0.0)
    users = [fake.add_user(f"u{i}@example.com") for i in range(3)]
    pairs = [(u, fake.add_credential(u, "slack")) for u in users]
    jobs = _jobs(pairs, 9)
    why = orjson.dumps(
        {"user": users[0], "type": "AuthenticationError", "status": 401, "message": "revoked",
         "source": "THIRD_PARTY", "code": None, "requestId": None}
    )  # fmt: skip
    client = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        async with RedisCoordinator(redis_server.url, namespace="q4") as probe:
            quarantine, runs = probe.quarantine.key, probe.quarantine.runs_key
        await client.zadd(runs, {"dead-run": 1})  # expired at the epoch
        await client.hset(quarantine, pairs[0][1], why)
        async with fake.client() as alloy, RedisCoordinator(redis_server.url, namespace="q4") as c:
            rows = await run_chunk(alloy, c, jobs, concurrency=2)
        assert all(r["ok"] for r in rows), rows
        # A live holder keeps it; garbage beside a good entry is skipped, not trusted.
        await client.zadd(runs, {"live-run": 2**50})
        await client.hset(
            quarantine,
            mapping={
                pairs[0][1]: why,
                pairs[1][1]: b"{not json",
                pairs[2][1]: b'{"status": 200, "message": "fine"}',
            },
        )
        jobs = [{**j, "key": "again-" + j["key"]} for j in jobs]  # not done yet
        async with fake.client() as alloy, RedisCoordinator(redis_server.url, namespace="q4") as c:
            rows = await run_chunk(alloy, c, jobs, concurrency=2)
    finally:
        await client.aclose()
    assert _held(rows) == {j["key"] for j in jobs if j["credentialId"] == pairs[0][1]}
