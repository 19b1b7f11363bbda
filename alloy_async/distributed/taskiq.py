"""taskiq on Redis: the broker ``alloy-async worker`` and ``alloy-async bulk --redis`` share.

One task, ``execute_chunk(namespace, jobs, limits)``, runs a chunk with :func:`run_chunk` in a
worker, through its one :class:`~alloy_async.client.AlloyClient` and one
:class:`RedisCoordinator` per namespace. The driver reads the rows back in bulk.

taskiq-redis's ``RedisStreamBroker`` (a consumer group: the one broker with acks), changed for
the traps of the stock one:

* ``listen()`` reclaims (``XAUTOCLAIM``) on every pass, not only after new messages arrived
  (so a SIGKILLed worker's chunks do not wait for new traffic), and reads no more messages than
  the worker can start.
* A heartbeat (every ``idle_timeout / 3``) renews what this worker holds: a chunk longer than
  ``idle_timeout`` stays with its live worker; only one that stopped answering loses its chunks.
* An ack deletes the entry (``XACK`` + ``XDEL``): the stream holds only chunks not yet done,
  and ``maxlen`` (a cap against runaway growth) never drops one still to run.
* ``socket_timeout=None``: redis-py 8 on Python 3.11 implements it with ``wait_for``, which can
  swallow a cancellation (the worker then hangs on SIGTERM).

Results are JSON, never pickle (a result read from a shared Redis must not run code); the
driver parses them itself and never rebuilds exception objects from them.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import importlib.metadata
import inspect
import logging
from collections.abc import AsyncGenerator, Callable
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from taskiq import AckableMessage, BrokerMessage, TaskiqEvents
from taskiq.exceptions import SendTaskError
from taskiq.receiver import Receiver
from taskiq.result import TaskiqResult
from taskiq.serializers import JSONSerializer
from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

from ..errors import ConfigurationError, CoordinatorError
from ._driver import ChunkResult, entries_gone, forget_results, queue_state, take_results
from ._redis import TRANSIENT, check_url, safe_url, through_outage
from ._runner import ChunkRunner

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_QUEUE",
    "DEFAULT_RESULT_TTL",
    "OP_TIMEOUT",
    "TASK_NAME",
    "TRANSIENT",
    "UNAVAILABLE",
    "ChunkBroker",
    "check_dependency_shape",
    "ChunkResult",
    "entries_gone",
    "forget_results",
    "ChunkRunner",
    "SendTaskError",
    "make_broker",
    "queue_state",
    "safe_url",
    "serve",
    "take_results",
    "through_outage",
]

log = logging.getLogger("alloy_async.distributed")

#: Seconds a worker keeps trying to store a result or ack a chunk while Redis is unreachable
#: (a restart is a pause); the driver waits as long for Redis before it stops.
UNAVAILABLE = 30.0
#: Seconds one Redis command may take before it counts as failed (and is retried).
OP_TIMEOUT = 10.0
#: Set in a message's task when its result could not be stored (read by its ack).
_UNSAVED: contextvars.ContextVar[bool] = contextvars.ContextVar("alloy_unsaved", default=False)

TASK_NAME = "alloy_async.execute_chunk"
DEFAULT_QUEUE = "alloy-async"
#: Seconds a message held by a worker that stopped answering (SIGKILL, a lost host) waits before
#: another worker takes it over. Live workers renew theirs every third of it (the heartbeat),
#: so it bounds the recovery time after a crash, not the length of a chunk.
DEFAULT_IDLE_TIMEOUT = 30.0
#: Seconds a result stays in Redis if no driver reads it (the driver deletes what it read).
DEFAULT_RESULT_TTL = 86_400
#: Cap on the stream's length (acked entries are deleted): 5 million jobs queued at 50 a chunk.
DEFAULT_MAXLEN = 100_000

# Resets the idle time of the messages this consumer still owns (XCLAIM ... JUSTID does not
# count a delivery); skips those acked or taken over by another consumer, and returns the rest.
_TOUCH = """
local kept = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    kept[#kept + 1] = ARGV[i]
  end
end
return kept
"""


# What ChunkBroker, _Results and serve() take from taskiq-redis and taskiq beyond their
# documented calls: the broker's settings read back as attributes, the methods overridden, the
# keywords passed. A release that renames one would otherwise fail deep in a worker, mid-run.
_BROKER_ATTRIBUTES = (
    "connection_pool",
    "queue_name",
    "consumer_group_name",
    "consumer_name",
    "maxlen",
    "approximate",
    "block",
    "count",
    "idle_timeout",
    "is_worker_process",
)
_OVERRIDDEN = {
    RedisStreamBroker: ("startup", "shutdown", "kick", "listen"),
    RedisAsyncResultBackend: ("set_result",),
}
_KEYWORDS: tuple[tuple[type[Any], tuple[str, ...]], ...] = (
    (RedisAsyncResultBackend, ("result_ex_time", "serializer", "prefix_str")),
    (Receiver, ("run_startup", "max_async_tasks", "max_prefetch", "wait_tasks_timeout")),
    (AckableMessage, ("data", "ack")),
)


def _versions() -> str:
    return ", ".join(f"{d} {importlib.metadata.version(d)}" for d in ("taskiq-redis", "taskiq"))


def check_dependency_shape(broker: RedisStreamBroker, *, idle_timeout_ms: int) -> None:
    """ConfigurationError, naming the installed taskiq-redis and taskiq, when they no longer
    have what :class:`ChunkBroker` relies on (attributes it reads, methods it overrides,
    keywords it passes); ``idle_timeout_ms`` is what ``broker`` was built with."""
    missing = [f"RedisStreamBroker.{a}" for a in _BROKER_ATTRIBUTES if not hasattr(broker, a)]
    missing += [
        f"{base.__name__}.{name}"
        for base, names in _OVERRIDDEN.items()
        for name in names
        if not inspect.iscoroutinefunction(getattr(base, name, None))
        and not inspect.isasyncgenfunction(getattr(base, name, None))
    ]
    for cls, keywords in _KEYWORDS:
        parameters = inspect.signature(cls).parameters
        missing += [f"{cls.__name__}({k}=)" for k in keywords if k not in parameters]
    if not missing and getattr(broker, "idle_timeout", None) != idle_timeout_ms:
        missing.append("RedisStreamBroker.idle_timeout (in milliseconds)")
    if missing:
        raise ConfigurationError(
            f"alloy-async's worker needs a taskiq-redis / taskiq release it was built for; "
            f"installed: {_versions()}, which lack {', '.join(missing)}"
        )


class ChunkBroker(RedisStreamBroker):
    """``RedisStreamBroker`` that reclaims without new traffic, renews what it holds and
    deletes what it acked (see the module docstring); build it with :func:`make_broker`."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.url = safe_url(url)  # as messages may show it
        self.held: set[bytes] = set()  # stream ids delivered here and not yet acked
        #: Set when the worker gives up on its running chunks (:func:`serve`): no more acks
        #: and no results, so they go to another worker.
        self.cut_short = False
        self._heartbeat: asyncio.Task[None] | None = None
        self._claim_from: bytes | str = "0-0"  # XAUTOCLAIM's cursor
        #: task id -> stream entry of the messages this broker sent (the driver takes them)
        self.entries: dict[str, bytes | str] = {}

    async def startup(self) -> None:
        """Create the consumer group (at ``$``: a sender must start up before it sends too)
        and, in a worker, start the heartbeat. CoordinatorError if Redis is unreachable."""
        try:
            await super().startup()
        except TRANSIENT as exc:
            why = f"{type(exc).__name__}: {exc}"
            raise CoordinatorError(f"Redis at {self.url} unreachable: {why}") from None
        if self.is_worker_process and self._heartbeat is None:
            self._heartbeat = asyncio.create_task(self._beat(), name="alloy-async-heartbeat")

    async def shutdown(self) -> None:
        """Stop the heartbeat, forget this consumer if it holds nothing, close the pools."""
        beat, self._heartbeat = self._heartbeat, None
        if beat is not None:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
        if self.is_worker_process:
            # Forget this consumer if it holds nothing (DELCONSUMER drops its pending entries).
            with contextlib.suppress(redis_errors.RedisError, OSError):  # best effort
                async with Redis(connection_pool=self.connection_pool) as conn:
                    group = (self.queue_name, self.consumer_group_name)
                    if not await conn.xpending_range(*group, "-", "+", 1, self.consumer_name):
                        await conn.xgroup_delconsumer(*group, self.consumer_name)
        await super().shutdown()

    async def kick(self, message: BrokerMessage) -> None:
        """Queue a message (as the stock broker does), keeping its stream entry id."""
        queue = message.labels.get("queue_name") or self.queue_name
        async with Redis(connection_pool=self.connection_pool) as conn:
            entry = await conn.xadd(
                queue, {b"data": message.message}, maxlen=self.maxlen, approximate=self.approximate
            )
        self.entries[message.task_id] = entry

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        """Messages for this worker: first those a dead worker left (idle past
        ``idle_timeout``), then new ones; reclaims on every pass, traffic or not."""
        async with Redis(connection_pool=self.connection_pool) as conn:
            while True:
                try:
                    batch = await self._fetch(conn)
                except redis_errors.ResponseError as exc:
                    if "NOGROUP" in str(exc):
                        # Redis lost the stream (restarted without its data): declare it again,
                        # from the start of whatever was sent since.
                        log.warning("the queue's consumer group is gone; creating it again")
                        with contextlib.suppress(redis_errors.ResponseError, *TRANSIENT):
                            await conn.xgroup_create(
                                self.queue_name, self.consumer_group_name, id="0", mkstream=True
                            )
                        continue
                    # READONLY after a failover, MISCONF while it cannot persist: wait it out.
                    log.warning("Redis refused to serve the queue (%s); retrying in 1 s", exc)
                    await asyncio.sleep(1.0)
                    continue
                except TRANSIENT as exc:
                    log.warning("Redis unreachable (%s); retrying in 1 s", type(exc).__name__)
                    await asyncio.sleep(1.0)
                    continue
                for msg_id, fields in batch:
                    # No "data" (not ours): taskiq cannot parse it, says so and acks it.
                    yield AckableMessage(data=fields.get(b"data", b""), ack=self._acker(msg_id))

    async def _fetch(self, conn: Redis) -> list[tuple[bytes, dict[bytes, bytes]]]:
        # Bounded: with socket_timeout=None a command to a host that vanished never returns.
        async with asyncio.timeout(OP_TIMEOUT + (self.block or 0) / 1000):
            return await self._read_batch(conn)

    async def _read_batch(self, conn: Redis) -> list[tuple[bytes, dict[bytes, bytes]]]:
        # The scan goes on from where the last one stopped (XAUTOCLAIM looks at a bounded
        # number of pending entries per call): a dead worker's chunks behind many live ones
        # are found within a few passes.
        claimed = await conn.xautoclaim(
            self.queue_name,
            self.consumer_group_name,
            self.consumer_name,
            min_idle_time=self.idle_timeout,
            start_id=self._claim_from,
            count=self.count or 1,
        )
        self._claim_from = claimed[0]
        batch: list[tuple[bytes, dict[bytes, bytes]]] = [
            (i, f) for i, f in claimed[1] if f is not None
        ]
        if not batch:
            fetched: Any = await conn.xreadgroup(
                self.consumer_group_name,
                self.consumer_name,
                {self.queue_name: ">"},
                block=self.block,
                count=self.count,
            )
            for _stream, entries in fetched or ():
                batch.extend((i, f) for i, f in entries if f is not None)
        self.held.update(i for i, _ in batch)
        return batch

    def _acker(self, msg_id: bytes) -> Callable[[], Any]:
        async def xack_xdel() -> None:
            async with (
                Redis(connection_pool=self.connection_pool) as conn,
                conn.pipeline(transaction=True) as pipe,
            ):
                pipe.xack(self.queue_name, self.consumer_group_name, msg_id)
                pipe.xdel(self.queue_name, msg_id)
                await pipe.execute()

        async def ack() -> None:
            if self.cut_short:
                return
            if _UNSAVED.get():
                # Its result could not be stored: not acked, not renewed, so another worker
                # runs it again after the idle timeout (the journal answers; nothing is sent).
                self.held.discard(msg_id)
                return
            try:
                await through_outage(
                    "acking a chunk",
                    xack_xdel,
                    url=self.url,
                    max_time=UNAVAILABLE,
                    op_timeout=OP_TIMEOUT,
                )
            except CoordinatorError as exc:
                # Not renewed any more: after the idle timeout another worker takes it over
                # and the journal answers with the rows this one stored.
                log.warning("%s; the chunk goes to another worker", exc)
            self.held.discard(msg_id)

        return ack

    async def _beat(self) -> None:
        interval = self.idle_timeout / 3000.0
        async with Redis(connection_pool=self.connection_pool) as conn:
            touch = conn.register_script(_TOUCH)
            while True:
                await asyncio.sleep(interval)
                ids = sorted(self.held)
                if not ids:
                    continue
                try:
                    async with asyncio.timeout(OP_TIMEOUT):
                        kept = await touch(
                            keys=[self.queue_name],
                            args=[self.consumer_group_name, self.consumer_name, *ids],
                        )
                except (redis_errors.RedisError, OSError) as exc:
                    log.warning("heartbeat failed (%s); retrying", type(exc).__name__)
                    continue
                lost = set(ids) - set(kept)
                if taken := len(lost & self.held):  # not acked meanwhile: taken over
                    why = f"this worker did not answer for {self.idle_timeout / 1000:g} s"
                    log.warning("%d chunk(s) went to another worker (%s)", taken, why)
                self.held -= lost


class _Results(RedisAsyncResultBackend[Any]):
    """The JSON result backend; stores nothing for a chunk cut short (another worker will)."""

    def __init__(self, broker: ChunkBroker, url: str, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self._broker = broker

    async def set_result(self, task_id: str, result: TaskiqResult[Any]) -> None:
        """Store the result (retried while Redis is unreachable), unless the worker is giving
        up on its chunks."""
        if self._broker.cut_short:
            return
        save = super().set_result
        try:
            await through_outage(
                "storing a result",
                save,
                task_id,
                result,
                url=self._broker.url,
                max_time=UNAVAILABLE,
                op_timeout=OP_TIMEOUT,
            )
        except CoordinatorError:
            _UNSAVED.set(True)  # taskiq acks anyway; our ack (same task) reads this
            raise


def make_broker(
    url: str,
    *,
    queue: str = DEFAULT_QUEUE,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    result_ttl: int = DEFAULT_RESULT_TTL,
    runner: ChunkRunner | None = None,
) -> ChunkBroker:
    """The broker on ``url`` (its stream: ``queue``) with its JSON result backend and the
    ``execute_chunk`` task. ``idle_timeout``: seconds before a chunk held by a dead worker goes
    to another one; ``result_ttl``: seconds a result no driver read stays; ``runner``: what
    runs the chunks, in a worker (``runner.chunks_at_once`` at a time).
    """
    check_url(url)
    idle_timeout_ms = max(1, round(idle_timeout * 1000))
    broker = ChunkBroker(
        url,
        queue_name=queue,
        consumer_group_name=queue,
        idle_timeout=idle_timeout_ms,
        # One message per read: the receiver asks for one whenever a chunk slot is free; a
        # second one read early would wait here, renewed, while another worker sits idle.
        xread_count=1,
        maxlen=DEFAULT_MAXLEN,
        socket_timeout=None,
    )
    check_dependency_shape(broker, idle_timeout_ms=idle_timeout_ms)
    broker.with_result_backend(
        _Results(
            broker,
            url,
            result_ex_time=result_ttl,
            serializer=JSONSerializer(),
            prefix_str=f"{queue}:result",
            socket_timeout=None,
        )
    )

    async def execute_chunk(
        namespace: str, jobs: list[dict[str, Any]], limits: dict[str, Any]
    ) -> list[dict[str, Any]]:
        if runner is None:
            raise RuntimeError("this broker was made without a ChunkRunner: not a worker")
        return await runner.run(namespace, jobs, limits)

    broker.register_task(execute_chunk, task_name=TASK_NAME)
    if runner is not None:
        broker.add_event_handler(TaskiqEvents.WORKER_SHUTDOWN, lambda _state: runner.aclose())
    return broker


# -- the worker side -------------------------------------------------------------------------


async def serve(
    broker: ChunkBroker,
    runner: ChunkRunner,
    *,
    stop: asyncio.Event,
    abort: asyncio.Event,
    grace: float,
    ready: Callable[[], None] = lambda: None,
) -> bool:
    """Run one receiver until ``stop`` is set; the chunks running then get ``grace`` seconds
    (none once ``abort`` is set). True when every chunk started here finished: one cut short
    is neither acked nor answered, so another worker takes it over after the idle timeout.
    (``Receiver.listen``: ``run_receiver_task`` stops only by cancelling the chunks.)
    """
    broker.is_worker_process = True
    await broker.startup()
    watcher: asyncio.Task[None] | None = None
    try:
        receiver = Receiver(
            broker,
            run_startup=False,
            max_async_tasks=runner.chunks_at_once,
            max_prefetch=0,
            wait_tasks_timeout=grace,
        )

        async def give_up_on_abort() -> None:
            await abort.wait()
            stop.set()
            broker.cut_short = True
            await runner.cut_short()

        await runner.open()
        watcher = asyncio.create_task(give_up_on_abort())
        ready()
        await receiver.listen(stop)
        finished = not runner.running and not broker.cut_short
        broker.cut_short = True  # whatever still runs is past its grace period
        await runner.cut_short()
        return finished
    finally:
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await broker.shutdown()
