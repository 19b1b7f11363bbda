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

__all__ = ["ChunkResult", "queue_state", "take_results"]


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
    """The results ready among ``task_ids``, read and deleted in one round trip (``GETDEL``).

    A driver killed before writing the rows it took loses nothing: its rerun sends those jobs
    again and the journal answers with their stored rows.
    """
    if not task_ids:
        return {}
    async with (
        Redis(connection_pool=broker.connection_pool) as conn,
        conn.pipeline(transaction=False) as pipe,
    ):
        for task_id in task_ids:
            pipe.getdel(f"{broker.queue_name}:result:{task_id}")
        raws = await pipe.execute()
    return {t: _parse_result(raw) for t, raw in zip(task_ids, raws, strict=True) if raw}


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
