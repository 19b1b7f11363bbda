"""The sandbox: FakeAlloy served over real HTTP on 127.0.0.1 (aiohttp.web).

The same simulator as the tests, reachable by any HTTP client, with fault injection
(``--faults 429=0.05,503=0.02,reset=0.01 --latency 5ms``), an optional server-side rate limit
answering 429 with ``Retry-After``, ``GET /_sandbox/stats`` reporting peaks in flight, and
``GET /_sandbox/executions`` listing every action it really executed (the judge of "was
anything done twice").
It only ever binds loopback addresses.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Mapping
from typing import Any

import attrs
import orjson
from aiohttp import web

from ._http import Request, is_loopback
from .errors import ConfigurationError
from .testing.fake import FakeAlloy, FaultPlan, SimulatedDisconnect

__all__ = ["SandboxServer", "parse_duration", "parse_faults"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|us)?\s*$")


def parse_duration(text: str) -> float:
    """``"5ms"`` -> 0.005, ``"2s"``/``"2"`` -> 2.0, ``"250us"`` -> 0.00025."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 5ms, 0.2s)")
    value, unit = float(match.group(1)), match.group(2) or "s"
    return value / {"s": 1.0, "ms": 1e3, "us": 1e6}[unit]


def parse_faults(text: str) -> dict[str, float]:
    """``"429=0.05,503=0.02,reset=0.01"`` -> ``{"429": 0.05, ...}``, checked."""
    rates: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep:
            raise ValueError(f"fault {part!r} needs a rate, e.g. {part}=0.05")
        if not (name.isdigit() or name in ("reset", "reset_before", "reset_after", "slow")):
            raise ValueError(
                f"unknown fault {name!r}: use a status code, reset, reset_after or slow"
            )
        try:
            rate = float(value)
        except ValueError:
            raise ValueError(f"fault rate for {name!r} is not a number: {value!r}") from None
        if not 0 <= rate <= 1:
            raise ValueError(f"fault rate for {name!r} must be within 0..1")
        rates[name] = rate
    if sum(rates.values()) > 1:
        raise ValueError("fault rates add up to more than 1")
    return rates


class _RateLimit:
    """A server-side token bucket: ``rate`` per second, ``burst`` at once."""

    def __init__(self, rate: float, burst: int | None) -> None:
        self.rate = rate
        self.capacity = float(burst if burst is not None else max(1, math.ceil(rate)))
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def take(self) -> float | None:
        """None if allowed, else seconds until a token is free."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return None
        return (1 - self.tokens) / self.rate


class SandboxServer:
    """Serve a :class:`FakeAlloy` on a loopback address.

    Args:
        fake: the simulator to serve (a new one when None).
        host: a loopback address (127.0.0.1 by default); anything else is refused.
        port: 0 picks any free port.
        rate_limit: requests per second the server accepts before answering 429.
        burst: requests allowed at once under ``rate_limit``.

    Use ``async with SandboxServer() as server:`` then ``server.url``.
    """

    def __init__(
        self,
        fake: FakeAlloy | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        rate_limit: float | None = None,
        burst: int | None = None,
    ) -> None:
        if not is_loopback(host):
            raise ConfigurationError(f"the sandbox only binds loopback addresses, not {host!r}")
        if rate_limit is not None and rate_limit <= 0:
            raise ConfigurationError("rate_limit must be > 0")
        self.fake = fake if fake is not None else FakeAlloy()
        self.host = host
        self.port = port
        self.rate_limited = 0
        self._limit = _RateLimit(rate_limit, burst) if rate_limit else None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The base URL to give :class:`~alloy_async.AlloyClient` (``base_url=``)."""
        if self._runner is None:
            raise RuntimeError("the sandbox is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> str:
        """Start serving; returns the base URL."""
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_get("/_sandbox/stats", self._stats)
        app.router.add_get("/_sandbox/executions", self._executions)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, backlog=1024)
        await site.start()
        self._runner = runner
        sockets: Any = getattr(site._server, "sockets", None)
        if sockets:
            self.port = sockets[0].getsockname()[1]
        return self.url

    async def close(self) -> None:
        """Stop serving and close every connection."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> SandboxServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def stats(self) -> dict[str, Any]:
        """The simulator's counters plus the server's own (rate-limited answers)."""
        return {**self.fake.stats(), "rate_limited": self.rate_limited}

    async def _stats(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.stats())

    async def _executions(self, request: web.Request) -> web.StreamResponse:
        rows = [attrs.asdict(e) for e in self.fake.executions]
        return web.Response(body=orjson.dumps(rows), content_type="application/json")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self._limit is not None:
            wait = self._limit.take()
            if wait is not None:
                self.rate_limited += 1
                error = {
                    "error": {
                        "source": "CONNECTIVITY_API",
                        "code": "RATE_LIMITED",
                        "message": "Too many requests",
                    }
                }
                return web.Response(
                    status=429,
                    body=orjson.dumps(error),
                    content_type="application/json",
                    headers={"Retry-After": str(max(1, math.ceil(wait)))},
                )
        body = await request.read()
        sdk_request = Request(
            method=request.method,
            url=f"http://{request.host}{request.raw_path}",
            headers=_lower(request.headers),
            body=body or None,
            path=request.raw_path.split("?", 1)[0],
        )
        try:
            response = await self.fake.process(sdk_request)
        except SimulatedDisconnect:
            # Drop the connection without an answer, as a reset would.
            if request.transport is not None:
                request.transport.close()
            raise asyncio.CancelledError from None
        return web.Response(status=response.status, body=response.body, headers=response.headers)


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def fault_plan(
    spec: str | None, *, seed: int = 0, retry_after: str | None = "1"
) -> FaultPlan | None:
    """A :class:`FaultPlan` from a ``--faults`` string (None when empty)."""
    if not spec:
        return None
    return FaultPlan(rates=parse_faults(spec), seed=seed, retry_after=retry_after)
