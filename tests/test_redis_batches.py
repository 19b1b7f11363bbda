"""A batch of Redis commands (a pipeline) retried through an outage is sent again in full.

redis-py empties a pipeline once it has run, whether it succeeded or not, so running the same
pipeline object again after a failure sends nothing and answers ``[]``: outcomes, releases,
stored rows and quarantine entries written during a Redis restart were silently dropped, and
a read of several keys answered nothing. Each test restarts a real ``redis-server`` (its AOF
keeps what was acknowledged) while the batch is being retried, then asks Redis itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from bounds import until
from redis_server import RedisServer, running_redis

from alloy_async.distributed import RedisCoordinator


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as server:
        yield server


async def _restart_once_retried(redis_server: RedisServer, coord: RedisCoordinator) -> None:
    """Bring Redis back once ``coord`` has failed at least once and is retrying."""
    await until(lambda: coord.statistics().retries >= 1, "a failed attempt", 10)
    await asyncio.to_thread(redis_server.start)


async def test_outcomes_queued_during_a_restart_are_written(redis_server: RedisServer) -> None:
    """Catches: the writer retrying the pipeline it already ran (the outcome stays an intent,
    which every later run reports as outcome-unknown although the job succeeded)."""
    async with RedisCoordinator(redis_server.url, namespace="b1", unavailable_timeout=20) as c:
        journal = c.journal
        await journal.open("run1")
        assert await journal.claim("k1") is None
        await journal.flush()
        redis_server.kill()
        journal.record("k1", "succeeded")
        await asyncio.gather(journal.flush(), _restart_once_retried(redis_server, c))
        stored = await journal.stored(["k1"])
        await journal.aclose()
    assert stored == {"k1": ("succeeded", "run1", None)}


async def test_rows_stored_and_read_during_a_restart(redis_server: RedisServer) -> None:
    """Catches: ``save_rows`` answering success for rows it never stored (a redelivered chunk
    then has no row for a job that ran), and ``stored`` answering nothing for a retried read
    (the chunk fails in the worker)."""
    row = {"key": "k2", "ok": True, "attempts": 1}
    async with RedisCoordinator(redis_server.url, namespace="b2", unavailable_timeout=20) as c:
        journal = c.journal
        await journal.open("run2")
        assert await journal.claim("k2") is None
        redis_server.kill()
        await asyncio.gather(journal.save_rows({"k2": row}), _restart_once_retried(redis_server, c))
        redis_server.kill()
        retries = c.statistics().retries
        read = asyncio.ensure_future(journal.stored(["k2"]))
        await until(lambda: c.statistics().retries > retries, "a failed read", 10)
        await asyncio.to_thread(redis_server.start)
        stored = await read
        await journal.aclose()
    assert stored == {"k2": ("intent", "run2", row)}


async def test_a_fresh_intent_drops_a_stale_row(redis_server: RedisServer) -> None:
    """A row written after its job's record went (a copy of a chunk storing late) must not
    become the row of the run that claims the key next. Catches: a claim that keeps it (a
    redelivered chunk would answer the stale row for a job this run is about to send)."""
    async with RedisCoordinator(redis_server.url, namespace="b3") as c:
        journal = c.journal
        await journal.open("run3")
        await journal.save_rows({"k3": {"key": "k3", "ok": False, "attempts": 0}})
        assert await journal.claim("k3") is None
        stored = await journal.stored(["k3"])
        await journal.aclose()
    assert stored == {"k3": ("intent", "run3", None)}
