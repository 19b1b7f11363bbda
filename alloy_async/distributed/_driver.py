"""The driver's side of the taskiq queue: reading chunks' results and looking at the queue.

Used by ``alloy-async bulk --redis`` through :mod:`alloy_async.distributed.taskiq`, which
re-exports these names.
"""

from __future__ import annotations

from typing import Any, Literal

import attrs
import orjson
from redis import exceptions as redis_errors
from redis.asyncio import Redis
from taskiq_redis import RedisStreamBroker

__all__ = ["ChunkResult", "entries_gone", "forget_results", "queue_state", "take_results"]


@attrs.frozen
class ChunkResult:
    """A chunk's result as the driver reads it: its rows, or why its task failed."""

    rows: list[dict[str, Any]] | None
    error: str | None


def _parse_result(raw: bytes) -> ChunkResult:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return ChunkResult(None, "the worker's result is not JSON")
    if not isinstance(doc, dict):
        return ChunkResult(None, "the worker's result is not a JSON object")
    if doc.get("is_err"):
        err = doc.get("error")
        if isinstance(err, dict):  # taskiq's ExceptionRepr: read as text, never rebuilt
            args = err.get("exc_message") or []
            text = "; ".join(map(str, args)) if isinstance(args, list) else str(args)
            return ChunkResult(None, f"{err.get('exc_type', 'Exception')}: {text}")
        return ChunkResult(None, f"the task failed: {err!r}")
    rows = doc.get("return_value")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        return ChunkResult(None, "the worker's result is not a list of rows")
    return ChunkResult(rows, None)


async def take_results(broker: RedisStreamBroker, task_ids: list[str]) -> dict[str, ChunkResult]:
    """The results ready among ``task_ids``, read in one round trip (``GET``: safe to retry,
    unlike ``GETDEL`` whose lost reply would lose the rows). :func:`forget_results` deletes
    them once they are written."""
    if not task_ids:
        return {}
    async with (
        Redis(connection_pool=broker.connection_pool) as conn,
        conn.pipeline(transaction=False) as pipe,
    ):
        for task_id in task_ids:
            pipe.get(_result_key(broker, task_id))
        raws = await pipe.execute()
    return {t: _parse_result(raw) for t, raw in zip(task_ids, raws, strict=True) if raw}


async def forget_results(broker: RedisStreamBroker, task_ids: list[str]) -> None:
    """Delete results the driver has written (a driver killed before this leaves them to
    expire: its rerun uses new task ids and the journal answers)."""
    if task_ids:
        async with Redis(connection_pool=broker.connection_pool) as conn:
            await conn.delete(*(_result_key(broker, t) for t in task_ids))


def _result_key(broker: RedisStreamBroker, task_id: str) -> str:
    return f"{broker.queue_name}:result:{task_id}"


async def queue_state(broker: RedisStreamBroker) -> Literal["gone", "busy", "idle"]:
    """One look at the stream and its group (``XINFO``): ``gone`` (Redis lost them), ``busy``
    (chunks queued or running), or ``idle`` (neither: a chunk without a result is lost)."""
    async with (
        Redis(connection_pool=broker.connection_pool) as conn,
        conn.pipeline(transaction=True) as pipe,  # one consistent look
    ):
        pipe.xinfo_stream(broker.queue_name)
        pipe.xinfo_groups(broker.queue_name)
        try:
            stream, groups = await pipe.execute()
        except redis_errors.ResponseError:  # no such key
            return "gone"
    group = next((g for g in groups if g["name"] == broker.consumer_group_name.encode()), None)
    if group is None:
        return "gone"
    queued = stream["length"] > 0 and group["last-delivered-id"] != stream["last-generated-id"]
    return "busy" if queued or group["pending"] else "idle"


async def entries_gone(broker: RedisStreamBroker, entries: list[bytes | str]) -> list[bool]:
    """For each stream entry, whether it left the stream (acked: its worker is done with it,
    and its result, if it has one, was stored before), in one round trip."""
    if not entries:
        return []
    async with (
        Redis(connection_pool=broker.connection_pool) as conn,
        conn.pipeline(transaction=False) as pipe,
    ):
        for entry in entries:
            pipe.xrange(broker.queue_name, entry, entry, count=1)
        found = await pipe.execute()
    return [not rows for rows in found]
