"""``RedisCoordinator``: one rate budget, one set of caps, one cool-down and one write-ahead
journal for every process on a namespace, on Redis.

Per job, in Redis round trips: one to claim the key (the intent; it also says whether another
run has the job); with ``per_user`` / ``per_connector`` one to lease the capped keys, with
``rate`` one per rate permit, and with either one more before them to peek at the journal (so a
done job spends no lease and no permit). The outcome, the release of the leases and any
throttle are queued and written in batches by one writer task. Renewals (leases, live
runs) cost one batch every ``lease_ttl / 3`` seconds per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import Counter
from typing import Any

import attrs
import orjson

from .._checks import check_number
from ..errors import CoordinatorError, InvalidRequestError
from ..limiters import AdaptiveLimiter
from ._journal import RedisJournal
from ._limits import LocalCount, RedisCoolDown, RedisRate, RedisSlots
from ._redis import Shared, check_url, safe_url
from ._scripts import FORGET, RENEW

__all__ = ["RedisCoordinator", "RedisRun", "RedisStatistics"]

_NAMESPACE = re.compile(r"[A-Za-z0-9_.:\-]{1,100}")
_URL = re.compile(r"(redis|rediss|unix)://", re.IGNORECASE)
_BATCH = 512


@attrs.frozen
class RedisStatistics:
    """A snapshot of a :class:`RedisCoordinator` in this process.

    Attributes:
        retries: Redis calls retried through an outage (a restart, a dropped connection).
        held_leases: slot leases this process holds (renewed in the background).
        live_runs: runs of this process announced on Redis.
        queued_writes: outcomes, releases and throttles not yet written.
        write_error: the last batch of writes that failed past ``unavailable_timeout``.
    """

    retries: int
    held_leases: int
    live_runs: int
    queued_writes: int
    write_error: str | None


@attrs.define
class RedisRun:
    """The coordinator of one run (``RedisCoordinator.configure``): its limits on Redis."""

    slots: RedisSlots
    rate: RedisRate | None
    cooldown: RedisCoolDown | None
    journal: RedisJournal


class RedisCoordinator:
    """The engine's coordinator on Redis, shared by every process using ``namespace``.

    ``alloy.actions.execute_many(jobs, rate=120, per_user=2, coordinator=RedisCoordinator(url,
    namespace="welcome"))`` run in N processes at once sends at most 120 requests per second
    in all, never more than 2 calls at once per user across them, cools a connector down in
    every process when one of them is throttled, and never sends a job (by its key) that any
    of them has sent: on resume, a job whose intent a dead process left is reported
    :class:`~alloy_async.errors.OutcomeUnknownError`, never sent again.

    Args:
        url: ``redis://[user:password@]host:port/db`` (also ``rediss://``, ``unix://``).
        namespace: what the processes share (letters, digits, ``_ . : -``; at most 100).
        concurrency: calls in flight in this process across every run using this object
            (None: each run's own ``concurrency`` only).
        lease_ttl: seconds a slot lease (and a run's liveness) lasts unless renewed; a
            killed process's slots come back, and its in-flight jobs read as outcome-unknown,
            that long after it died.
        outcome_ttl: seconds a job's journal record is kept (None: forever). A rerun after
            it expired sends the job again.
        op_timeout: seconds one Redis command may take.
        unavailable_timeout: seconds Redis may be unreachable (retrying) before a run stops
            with :class:`~alloy_async.errors.CoordinatorError`; nothing is sent meanwhile.
        adaptive_limit: the cool-down's starting concurrency per scope (the AIMD limit).

    Use it as ``async with`` (or ``await aclose()``): it connects on first use, renews its
    leases in the background, and closing flushes every queued write. A single-loop object.
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str,
        concurrency: int | None = None,
        lease_ttl: float = 10.0,
        outcome_ttl: float | None = 7 * 86400.0,
        op_timeout: float = 5.0,
        unavailable_timeout: float = 30.0,
        adaptive_limit: int = 32,
    ) -> None:
        if not isinstance(url, str) or not _URL.match(url):
            raise InvalidRequestError(
                "url must be a redis://, rediss:// or unix:// URL", field="url"
            )
        check_url(url)
        if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
            raise InvalidRequestError(
                f"namespace must be 1 to 100 letters, digits or _ . : -, got {namespace!r}",
                field="namespace",
            )
        check_number("concurrency", concurrency, low=1, integer=True, optional=True)
        check_number("lease_ttl", lease_ttl, low=0.1)
        check_number("outcome_ttl", outcome_ttl, low=1.0, optional=True)
        check_number("op_timeout", op_timeout, low=0.0, strict=True)
        check_number("unavailable_timeout", unavailable_timeout, low=0.0)
        check_number("adaptive_limit", adaptive_limit, low=1, integer=True)
        self.namespace = namespace
        self.lease_ttl = float(lease_ttl)
        self.outcome_ttl = outcome_ttl
        self._shared = Shared(url, op_timeout=op_timeout, unavailable_timeout=unavailable_timeout)
        self._prefix = f"alloy:{{{namespace}}}:"
        self._channel = self._prefix + "cool"
        self._local = LocalCount(concurrency)
        self._held: dict[str, str] = {}  # lease member|key -> key, renewed in the background
        self._live_runs: set[str] = set()
        self._writes: asyncio.Queue[tuple[Any, ...]] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._write_error: CoordinatorError | None = None
        # Slot keys with a release queued and not yet written, and the event set when the
        # writer's next batch is written: a lease refused only because of this process's own
        # queued release waits for that batch instead of for the engine's retry timer.
        self._releasing: Counter[str] = Counter()
        self._batch_written: asyncio.Event | None = None
        self._closed = False
        self.cooldown = RedisCoolDown(AdaptiveLimiter(adaptive_limit), self._publish)
        default = self.configure(concurrency=1, per_user=None, per_connector=None, rate=None)
        self.slots = default.slots
        self.rate: RedisRate | None = None
        self.journal = default.journal

    def __repr__(self) -> str:
        return f"RedisCoordinator({safe_url(self._shared.url)!r}, namespace={self.namespace!r})"

    def configure(
        self,
        *,
        concurrency: int,
        per_user: int | None,
        per_connector: int | None,
        rate: float | None,
    ) -> RedisRun:
        """One run's coordinator: ``per_user``, ``per_connector`` and ``rate`` are shared by
        every process on the namespace (they should all pass the same numbers)."""
        if self._closed:
            raise CoordinatorError("the RedisCoordinator is closed")
        caps = {k: v for k, v in {"user": per_user, "connector": per_connector}.items() if v}
        slots = RedisSlots(
            self._shared, self._prefix, caps, self._local, lease_ttl=self.lease_ttl,
            held=self._held, queue_write=self._queue, until_released=self._until_released,
        )  # fmt: skip
        budget = None if rate is None else RedisRate(self._shared, self._prefix + "rate", rate)
        journal = RedisJournal(
            self._shared, self._prefix, outcome_ttl=self.outcome_ttl,
            live_runs=self._live_runs, queue_write=self._queue, flush=self.flush,
            run_ttl=self.lease_ttl,
        )  # fmt: skip
        return RedisRun(slots=slots, rate=budget, cooldown=self.cooldown, journal=journal)

    async def __aenter__(self) -> RedisCoordinator:
        self._start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def flush(self) -> None:
        """Wait until every queued write (outcomes, releases, throttles) is on Redis."""
        self._start()
        assert self._writes is not None
        await self._writes.join()
        if self._write_error is not None:
            raise self._write_error

    async def aclose(self) -> None:
        """Flush the queued writes, stop the background tasks, close the connections."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._writes is not None and self._tasks:
                with contextlib.suppress(CoordinatorError):
                    await self._writes.join()
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks.clear()
            await self._shared.aclose()

    def statistics(self) -> RedisStatistics:
        """What this process's side of the coordinator is doing."""
        return RedisStatistics(
            retries=self._shared.retries,
            held_leases=len(self._held),
            live_runs=len(self._live_runs),
            queued_writes=self._writes.qsize() if self._writes is not None else 0,
            write_error=None if self._write_error is None else str(self._write_error),
        )

    # -- background ----------------------------------------------------------------------

    def _start(self) -> None:
        if self._tasks or self._closed:
            return
        loop = asyncio.get_running_loop()
        self._writes = asyncio.Queue()
        self._tasks = [
            loop.create_task(self._writer(), name="alloy-redis-writer"),
            loop.create_task(self._renewer(), name="alloy-redis-renewer"),
            loop.create_task(self._listener(), name="alloy-redis-cooldown"),
        ]

    def _queue(self, op: tuple[Any, ...]) -> None:
        self._start()
        assert self._writes is not None
        self._writes.put_nowait(op)
        if op[0] == "unlease":
            self._releasing.update(op[1])

    async def _until_released(self, key: str) -> bool:
        """Wait until the writer has written a batch, if a release of slot ``key`` is queued
        (True); False at once if none is."""
        if self._releasing[key] <= 0:
            return False
        if self._batch_written is None:
            self._batch_written = asyncio.Event()
        await self._batch_written.wait()
        return True

    def _written(self, ops: list[tuple[Any, ...]]) -> None:
        for op in ops:
            if op[0] == "unlease":
                self._releasing.subtract(op[1])
                for name in op[1]:
                    if self._releasing[name] <= 0:
                        del self._releasing[name]
        written, self._batch_written = self._batch_written, None
        if written is not None:
            written.set()

    def _publish(self, scope: str, retry_after: float | None) -> None:
        message = orjson.dumps(
            {"scope": scope, "retry_after": retry_after, "from": self._shared.id}
        )
        self._queue(("publish", self._channel, message))

    async def _writer(self) -> None:
        """Write queued operations in batches, in order (one key's writes stay ordered)."""
        queue = self._writes
        assert queue is not None
        while True:
            ops = [await queue.get()]
            while len(ops) < _BATCH and not queue.empty():
                ops.append(queue.get_nowait())
            try:
                pipe = self._shared.client.pipeline(transaction=False)
                for op in ops:
                    await _add(pipe, op, self._shared)
                await self._shared.call("writing outcomes and releases", pipe.execute)
            except CoordinatorError as exc:
                # The intents stay: a rerun reports those jobs outcome-unknown, never sends.
                self._write_error = exc
            finally:
                self._written(ops)  # written or failed for good: either way, not queued
                for _ in ops:
                    queue.task_done()

    async def _renewer(self) -> None:
        """Keep this process's leases and live runs from lapsing."""
        every = self.lease_ttl / 3
        ttl_ms = max(1, round(self.lease_ttl * 1000))
        script = self._shared.script(RENEW)
        while True:
            await asyncio.sleep(every)
            held = list(self._held.items())
            runs = list(self._live_runs)
            if not held and not runs:
                continue
            pipe = self._shared.client.pipeline(transaction=False)
            if held:
                keys = [key for _, key in held]
                members = [name.split("|", 1)[0] for name, _ in held]
                await script(keys=keys, args=[ttl_ms, *members], client=pipe)
            for run_id in runs:
                pipe.pexpire(self._prefix + "run:" + run_id, ttl_ms)
            # A failed renewal is retried on the next tick; a long outage lets the leases
            # lapse, which other processes read as this one being gone (safe: never twice).
            with contextlib.suppress(CoordinatorError):
                await self._shared.call("renewing leases", pipe.execute)

    async def _listener(self) -> None:
        """Apply other processes' throttles to this one's cool-down."""
        while True:
            pubsub = self._shared.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._heard(message.get("data"))
            except Exception:  # an outage: subscribe again
                await asyncio.sleep(min(1.0, self._shared.op_timeout))
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]  # typed from redis 8.2

    def _heard(self, data: Any) -> None:
        try:
            message = orjson.loads(data)
        except (orjson.JSONDecodeError, TypeError):
            return
        if not isinstance(message, dict) or message.get("from") == self._shared.id:
            return
        scope, retry_after = message.get("scope"), message.get("retry_after")
        if isinstance(scope, str) and (retry_after is None or isinstance(retry_after, int | float)):
            self.cooldown.heard(scope, None if retry_after is None else float(retry_after))


async def _add(pipe: Any, op: tuple[Any, ...], shared: Shared) -> None:
    """Queue one operation on ``pipe`` (a script call is queued by awaiting it)."""
    kind = op[0]
    if kind == "record":
        _, key, state, ttl_ms = op
        pipe.hset(key, "s", state)
        if ttl_ms:
            pipe.pexpire(key, ttl_ms)
    elif kind == "forget":
        await shared.script(FORGET)(keys=[op[1]], args=[op[2]], client=pipe)
    elif kind == "unlease":
        _, names, member = op
        for name in names:
            pipe.zrem(name, member)
    elif kind == "publish":
        pipe.publish(op[1], op[2])
