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
import os
import re
from collections.abc import AsyncIterator
from typing import Any

import attrs
import orjson

from .._checks import check_number
from ..engine.coordinator import check_rate
from ..errors import CoordinatorError, InvalidRequestError
from ..limiters import AdaptiveLimiter
from ._journal import RedisJournal
from ._limits import LocalCount, RedisCoolDown, RedisRate, RedisSlots
from ._quarantine import RedisQuarantine
from ._redis import Shared, check_url, safe_url
from ._scripts import RENEW
from ._writes import LeaseBook, Publish, Writer

__all__ = ["RedisCoordinator", "RedisRun", "RedisStatistics"]

_NAMESPACE = re.compile(r"[A-Za-z0-9_.:\-]{1,100}")
_URL = re.compile(r"(redis|rediss|unix)://", re.IGNORECASE)


@attrs.frozen
class RedisStatistics:
    """A snapshot of a :class:`RedisCoordinator` in this process.

    Attributes:
        retries: Redis calls retried through an outage (a restart, a dropped connection).
        held_leases: slot leases this process holds (renewed in the background).
        live_runs: runs of this process announced on Redis.
        queued_writes: outcomes, releases and throttles not yet written.
        write_error: the last batch of writes that failed past ``unavailable_timeout``.
        quarantined: credentials quarantined on the namespace, as this process knows them.
    """

    retries: int
    held_leases: int
    live_runs: int
    queued_writes: int
    write_error: str | None
    quarantined: int = 0


@attrs.define
class RedisRun:
    """The coordinator of one run (``RedisCoordinator.configure``): its limits on Redis.

    ``execute_many(coordinator=RedisCoordinator(...))`` makes one per run; it is the
    :class:`~alloy_async.engine.Coordinator` the engine then uses.

    Attributes:
        slots (alloy_async.engine.KeyedSlots): the concurrency caps: a local count, then
            leases on Redis (also a :class:`~alloy_async.engine.coordinator.LeasedSlots`).
        rate (alloy_async.engine.RateBudget | None): the rate budget shared on the
            namespace, or None.
        cooldown (alloy_async.engine.CoolDown | None): the adaptive cool-down per scope,
            shared on the namespace (a throttle seen by one process slows all), or None.
        journal (alloy_async.engine.Journal): the write-ahead journal on Redis (also a
            :class:`~alloy_async.engine.coordinator.SharedJournal`).
        quarantine (alloy_async.engine.coordinator.SharedQuarantine): the namespace's
            credential quarantine, shared by every run on it.
    """

    slots: RedisSlots
    rate: RedisRate | None
    cooldown: RedisCoolDown | None
    journal: RedisJournal
    quarantine: RedisQuarantine


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
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._writer = Writer(self._shared, on_queue=self._start)
        self._leases = LeaseBook(self._writer)
        self.cooldown = RedisCoolDown(AdaptiveLimiter(adaptive_limit), self._publish)
        self.quarantine = RedisQuarantine(
            self._shared,
            self._prefix,
            ttl_ms=self._ttl_ms,
            writer=self._writer,
            channel=self._channel,
        )
        default = self.configure(concurrency=1, per_user=None, per_connector=None, rate=None)
        self.slots = default.slots
        self.rate: RedisRate | None = None
        self.journal = default.journal

    @property
    def _ttl_ms(self) -> int:
        """``lease_ttl`` in milliseconds, as Redis takes it."""
        return max(1, round(self.lease_ttl * 1000))

    def __repr__(self) -> str:
        return f"RedisCoordinator({safe_url(self._shared.url)!r}, namespace={self.namespace!r})"

    def configure(
        self,
        *,
        concurrency: int,
        per_user: int | None,
        per_connector: int | None,
        rate: float | None,
        burst: int | None = None,
    ) -> RedisRun:
        """One run's coordinator: ``per_user``, ``per_connector``, ``rate`` and its ``burst``
        (None: a tenth of a second's worth) are shared by every process on the namespace (they
        should all pass the same numbers)."""
        if self._closed:
            raise CoordinatorError("the RedisCoordinator is closed")
        check_rate(rate, burst)  # refused, naming it, without a rate: never dropped
        caps = {k: v for k, v in {"user": per_user, "connector": per_connector}.items() if v}
        slots = RedisSlots(
            self._shared,
            self._prefix,
            caps,
            self._local,
            lease_ttl=self.lease_ttl,
            leases=self._leases,
        )
        budget = (
            None
            if rate is None
            else RedisRate(self._shared, self._prefix + "rate", rate, burst=burst)
        )
        journal = RedisJournal(
            self._shared,
            self._prefix,
            outcome_ttl=self.outcome_ttl,
            writer=self._writer,
            quarantine=self.quarantine,
        )
        return RedisRun(
            slots=slots,
            rate=budget,
            cooldown=self.cooldown,
            journal=journal,
            quarantine=self.quarantine,
        )

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[None]:
        """Count as a live run of the namespace while the block runs.

        The namespace's credential quarantine lasts while it has live runs; a process that
        runs many short ``execute_many`` calls one after another holds a session around them,
        so the quarantine survives the gaps between runs (``alloy-async bulk --redis`` holds
        one for the whole run). Raises :class:`~alloy_async.errors.CoordinatorError` when
        Redis cannot be reached within ``unavailable_timeout``.
        """
        journal = self.configure(concurrency=1, per_user=None, per_connector=None, rate=None)
        await journal.journal.open("session-" + os.urandom(6).hex())
        try:
            yield
        finally:
            await journal.journal.aclose()

    async def lift_quarantine(self, *credential_ids: str) -> None:
        """End the quarantine of these credentials for every run on the namespace (the users
        reconnected them): their jobs are sent again from the next job on.

        Raises :class:`~alloy_async.errors.CoordinatorError` when Redis cannot be reached.
        """
        for credential_id in credential_ids:
            if not isinstance(credential_id, str) or not credential_id:
                raise InvalidRequestError(
                    "credential ids must be non-empty strings", field="credential_ids"
                )
        self._start()
        await self.quarantine.lift(credential_ids)

    async def __aenter__(self) -> RedisCoordinator:
        self._start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def flush(self) -> None:
        """Wait until every queued write (outcomes, releases, throttles) is on Redis."""
        self._start()
        await self._writer.flush()

    async def aclose(self) -> None:
        """Flush the queued writes, stop the background tasks, close the connections."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._tasks:
                with contextlib.suppress(CoordinatorError):
                    await self._writer.flush()
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
            held_leases=len(self._leases),
            live_runs=len(self.quarantine.live),
            queued_writes=self._writer.queued,
            write_error=None if self._writer.error is None else str(self._writer.error),
            quarantined=len(self.quarantine.bad),
        )

    # -- background ----------------------------------------------------------------------

    def _start(self) -> None:
        if self._tasks or self._closed:
            return
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._writer.run(), name="alloy-redis-writer"),
            loop.create_task(self._renewer(), name="alloy-redis-renewer"),
            loop.create_task(self._listener(), name="alloy-redis-cooldown"),
        ]

    def _publish(self, scope: str, retry_after: float | None) -> None:
        message = orjson.dumps(
            {"scope": scope, "retry_after": retry_after, "from": self._shared.id}
        )
        self._writer.queue(Publish(self._channel, message))

    async def _renewer(self) -> None:
        """Keep this process's leases and live runs from lapsing."""
        while True:
            await asyncio.sleep(self.lease_ttl / 3)
            if len(self._leases) or self.quarantine.live:
                # A failed renewal is retried on the next tick; a long outage lets the leases
                # lapse, which other processes read as this one being gone (never twice).
                with contextlib.suppress(CoordinatorError):
                    await self._renew()

    async def _renew(self) -> None:
        names, members = self._leases.held()
        runs = bool(self.quarantine.live)

        async def build(pipe: Any) -> None:
            if names:
                renew = self._shared.script(RENEW)
                await renew(keys=names, args=[self._ttl_ms, *members], client=pipe)
            if runs:  # answered with the quarantine: a message missed is made up for
                await self.quarantine.renew(pipe)

        answers = await self._shared.batch("renewing leases", build)
        if runs:
            self.quarantine.refresh(answers[-1])

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
        if "quarantine" in message or "lift" in message:
            self.quarantine.heard(message)
            return
        scope, retry_after = message.get("scope"), message.get("retry_after")
        if isinstance(scope, str) and (retry_after is None or isinstance(retry_after, int | float)):
            self.cooldown.heard(scope, None if retry_after is None else float(retry_after))
