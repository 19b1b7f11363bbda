"""What observing costs per in-process ``execute`` call (issue 14).

``python -m benchmarks.bench_observe``

The same loop as benchmark 4 (``bench_inproc``: FakeTransport answering canned bytes), four
clients side by side, rounds interleaved, medians of microseconds per call:

* none: no hooks, no telemetry (the fast path);
* hooks: one sync ``response`` hook that does nothing (every call takes the observed path,
  and each answer builds a redacted :class:`~alloy_async.observability.ResponseEvent`);
* otel: OpenTelemetry with the SDK's tracer and meter providers, spans to a no-op processor
  (the cost of two spans, two metric points and a ``traceparent`` per call);
* raw: ``with_raw_response.actions.execute`` (the capture observer).
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

from alloy_async import AlloyClient
from alloy_async.observability.otel import OpenTelemetryObserver
from alloy_async.transports.fake import FakeTransport

from .bench_inproc import handler

BODY = {"to": "u@x.io", "subject": "hi"}


def _client(**kwargs: Any) -> AlloyClient:
    return AlloyClient(
        api_key="sk_bench",
        base_url="http://127.0.0.1:9",
        transport=FakeTransport(handler, record=False),
        telemetry=kwargs.pop("telemetry", False),
        **kwargs,
    )


async def run(n: int = 20_000, rounds: int = 5) -> dict[str, float]:
    """Median microseconds per call of each variant."""
    otel = OpenTelemetryObserver(tracer_provider=TracerProvider(), meter_provider=MeterProvider())
    clients = {
        "none": _client(),
        "hooks": _client(event_hooks={"response": [lambda event: None]}),
        "otel": _client(telemetry=otel),
        "raw": _client(),
    }

    def caller(name: str) -> Callable[[], Awaitable[Any]]:
        alloy = clients[name]
        if name == "raw":
            raw = alloy.with_raw_response.actions
            return lambda: raw.execute(
                "sendgrid", "sendEmail", credential_id="cred_1", user_id="user_1",
                request_body=BODY,
            )  # fmt: skip
        return lambda: alloy.actions.execute(
            "sendgrid", "sendEmail", credential_id="cred_1", user_id="user_1", request_body=BODY
        )

    calls = {name: caller(name) for name in clients}
    got: dict[str, list[float]] = {name: [] for name in clients}
    try:
        for name in clients:  # warm-up
            for _ in range(500):
                await calls[name]()
        for r in range(rounds):
            for name in list(clients) if r % 2 == 0 else list(clients)[::-1]:
                call = calls[name]
                gc.collect()
                t0 = time.perf_counter()
                for _ in range(n):
                    await call()
                got[name].append(1e6 * (time.perf_counter() - t0) / n)
    finally:
        for alloy in clients.values():
            await alloy.aclose()
    return {name: statistics.median(v) for name, v in got.items()}


def main() -> None:
    for name, us in asyncio.run(run()).items():
        print(f"{name:8} {us:7.2f} us/call")


if __name__ == "__main__":
    main()
