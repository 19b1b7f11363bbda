"""The connection to Redis: one client, retries through an outage, errors that say what failed.

Every command of the distributed coordinator goes through :meth:`Shared.call`: a connection
error or a timeout is retried (``backoff``, exponential with jitter) for up to
``unavailable_timeout`` seconds, so a Redis restart is a pause, not a failure; past that it is
a :class:`~alloy_async.errors.CoordinatorError` naming the operation and the server (never its
password). Only idempotent operations are retried: the Lua scripts take an id chosen before
the first attempt, so a retry of one that did run changes nothing.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import backoff
import redis.asyncio as aioredis
from redis import exceptions as redis_errors
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ..errors import CoordinatorError, InvalidRequestError

__all__ = ["TRANSIENT", "Shared", "check_url", "ping", "safe_url", "through_outage"]

T = TypeVar("T")

#: What a call to an unreachable (or restarting) Redis raises: worth retrying.
TRANSIENT = (redis_errors.ConnectionError, redis_errors.TimeoutError, TimeoutError, OSError)


def safe_url(url: str) -> str:
    """``url`` without its password, in the user part or in the query (``?password=``, which
    redis-py also reads): what error messages may show."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None and "password=" not in parts.query.lower():
        return url
    if parts.query:
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        masked = [(k, "***" if k.lower() == "password" else v) for k, v in query]
        parts = parts._replace(query=urllib.parse.urlencode(masked, safe="*"))
    if parts.password is not None:
        host = parts.netloc.rpartition("@")[2]  # as written: the port may not be a number
        user = f"{parts.username}:***@" if parts.username else "***@"
        parts = parts._replace(netloc=user + host)
    return urllib.parse.urlunsplit(parts)


def check_url(url: str) -> None:
    """InvalidRequestError naming ``url`` (without its password) when redis-py cannot use it
    (a port that is not a number, an option it cannot read); connects to nothing."""
    try:
        aioredis.ConnectionPool.from_url(url)
    except (ValueError, TypeError) as exc:
        raise InvalidRequestError(
            f"the Redis URL {safe_url(url)} is not usable: {exc}", field="url"
        ) from None


async def ping(url: str, *, within: float) -> None:
    """One PING within ``within`` seconds, or a CoordinatorError naming the server (never its
    password): whether Redis can be used at all, before a run starts."""
    client = aioredis.Redis.from_url(url, socket_timeout=None, socket_connect_timeout=within)
    try:
        async with asyncio.timeout(within):
            await client.ping()
    except (*TRANSIENT, redis_errors.RedisError) as exc:
        why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise CoordinatorError(f"Redis at {safe_url(url)} cannot be used: {why}") from None
    finally:
        await client.aclose()


async def through_outage(
    what: str,
    fn: Callable[..., Awaitable[T]],
    *args: Any,
    url: str,
    max_time: float,
    op_timeout: float | None = None,
    on_retry: Callable[[], None] | None = None,
) -> T:
    """``await fn(*args)``, retried (``backoff``: exponential, 50 ms to 1 s) while Redis is
    unreachable, for up to ``max_time`` seconds; then, or when Redis refuses the command for
    good, a :class:`CoordinatorError` saying ``what`` failed on which server (no password).
    ``op_timeout`` bounds each attempt; ``on_retry`` is called before each retry.
    """

    def give_up(details: Any) -> None:
        exc = details["exception"]
        why = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, redis_errors.AuthenticationError):
            raise CoordinatorError(f"Redis at {safe_url(url)} refused {what}: {why}") from exc
        raise CoordinatorError(
            f"Redis at {safe_url(url)} unreachable for {details['elapsed']:.1f} s while "
            f"{what}: {why}"
        ) from exc

    def retrying(details: Any) -> None:
        if on_retry is not None:
            on_retry()

    @backoff.on_exception(
        backoff.expo,
        TRANSIENT,
        # A refused password is a ConnectionError to redis-py, but waiting will not fix it.
        giveup=lambda exc: isinstance(exc, redis_errors.AuthenticationError),
        max_time=max_time,
        max_value=1.0,
        factor=0.05,
        on_giveup=give_up,
        on_backoff=retrying,
        logger=None,  # the caller counts or says it; the CoordinatorError says the rest
        raise_on_giveup=True,
    )
    async def attempt() -> T:
        async with asyncio.timeout(op_timeout):
            return await fn(*args)

    try:
        return await attempt()
    except redis_errors.RedisError as exc:  # refused for good: a script error, no auth
        raise CoordinatorError(
            f"Redis at {safe_url(url)} refused {what}: {type(exc).__name__}: {exc}"
        ) from exc


class Shared:
    """One Redis client (created in the running loop on first use) and the retry policy.

    Args:
        url: ``redis://``, ``rediss://`` or ``unix://``.
        op_timeout: seconds one command may take before it counts as failed (and is retried).
        unavailable_timeout: seconds of failures before a :class:`CoordinatorError`.
    """

    def __init__(self, url: str, *, op_timeout: float, unavailable_timeout: float) -> None:
        self.url = url
        self.op_timeout = op_timeout
        self.unavailable_timeout = unavailable_timeout
        self.id = os.urandom(8).hex()  # this process's name in leases and messages
        # One counter for every run sharing this connection: two runs numbering their lease
        # and permit members each from 0 collided, and a collision is a cap or a rate overrun.
        self._members = itertools.count()
        self._client: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}
        self.retries = 0  # calls retried through an outage (statistics)

    def new_member(self) -> str:
        """A lease or permit member no other run or process on this namespace uses."""
        return f"{self.id}:{next(self._members)}"

    @property
    def client(self) -> aioredis.Redis:
        """The client, created on first use."""
        if self._client is None:
            # socket_timeout=None: redis-py 8 on 3.11 implements it with wait_for, which can
            # swallow a cancellation; every call is bounded by our own asyncio.timeout instead.
            self._client = aioredis.Redis.from_url(
                self.url,
                socket_timeout=None,
                socket_connect_timeout=self.op_timeout,
                health_check_interval=30,
                # Our retries (``call``) bound the whole outage; redis-py's own would stack
                # seconds of pauses under each of them.
                retry=Retry(NoBackoff(), 0),
            )
        return self._client

    def script(self, source: str) -> Any:
        """The registered Lua script (redis-py reloads it if a restarted Redis forgot it)."""
        found = self._scripts.get(source)
        if found is None:
            found = self._scripts[source] = self.client.register_script(source)
        return found

    async def call(self, what: str, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``await fn(*args)`` with a timeout, retried through an outage; else CoordinatorError."""
        return await through_outage(
            what,
            fn,
            *args,
            url=self.url,
            max_time=self.unavailable_timeout,
            op_timeout=self.op_timeout,
            on_retry=self._count_retry,
        )

    async def batch(self, what: str, build: Callable[[Any], Awaitable[None] | None]) -> list[Any]:
        """Run the commands ``build(pipe)`` queues as one pipeline, retried like :meth:`call`.

        Each attempt builds a new pipeline: redis-py empties one once it has run, even when it
        failed, so running the same one again sends nothing and answers ``[]`` (a write lost
        silently, a read answered with nothing).
        """

        async def attempt() -> list[Any]:
            async with self.client.pipeline(transaction=False) as pipe:
                queued = build(pipe)
                if queued is not None:
                    await queued
                answers: list[Any] = await pipe.execute()
                return answers

        return await self.call(what, attempt)

    def _count_retry(self) -> None:
        self.retries += 1

    async def aclose(self) -> None:
        """Close the client's connections."""
        client, self._client = self._client, None
        self._scripts.clear()
        if client is not None:
            await client.aclose()
