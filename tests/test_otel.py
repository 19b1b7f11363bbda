"""OpenTelemetry spans and metrics (issue 14), with opentelemetry-sdk's in-memory exporters.

The providers are handed to the observer (never set globally: a process may set the global
ones once only), and the server's own record of requests is what the trace context is
checked against.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from alloy_async import AlloyClient, FakeTransport, OutcomeUnknownError, Request, Response
from alloy_async.models.bulk import ExecuteJob
from alloy_async.observability import telemetry_observer
from alloy_async.observability.otel import OpenTelemetryObserver, _safe_url

KEY = "sk_live_otel_secret_0123456789"
OK = orjson.dumps({"success": True, "result": {"id": "m1"}})


class Telemetry:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.observer = OpenTelemetryObserver(
            tracer_provider=tracer_provider,
            meter_provider=MeterProvider(metric_readers=[self.reader]),
        )

    def finished(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if name is None or s.name == name]

    def metrics(self) -> dict[str, list[Any]]:
        """Metric name -> its data points."""
        data = self.reader.get_metrics_data()
        out: dict[str, list[Any]] = {}
        assert data is not None
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    out[metric.name] = list(metric.data.data_points)
        return out


Handler = Callable[[Request], Awaitable[Response]]


def answers(*responses: Response | BaseException) -> tuple[FakeTransport, list[Request]]:
    """A transport answering ``responses`` in turn (the last one again after that)."""
    seen: list[Request] = []

    async def handler(request: Request) -> Response:
        seen.append(request)
        item = responses[min(len(seen), len(responses)) - 1]
        if isinstance(item, BaseException):
            raise item
        return item

    return FakeTransport(handler), seen


def ok(request_id: str = "req_1") -> Response:
    return Response(200, {"content-type": "application/json", "x-request-id": request_id}, OK)


def client(transport: FakeTransport, telemetry: Telemetry) -> AlloyClient:
    return AlloyClient(
        api_key=KEY, base_url="http://127.0.0.1:9", transport=transport,
        telemetry=telemetry.observer, max_retries=2,
    )  # fmt: skip


async def execute(alloy: AlloyClient) -> Any:
    return await alloy.actions.execute(
        "slack", "chat_postMessage", credential_id="cred_1", user_id="u1",
        request_body={"text": "hi"},
    )  # fmt: skip


async def test_a_call_has_an_sdk_span_and_an_http_client_span_whose_context_is_sent() -> None:
    t = Telemetry()
    transport, seen = answers(ok())
    async with client(transport, t) as alloy:
        await execute(alloy)
    [sdk] = t.finished("alloy.actions.execute")
    [http] = t.finished("POST")
    assert sdk.kind is SpanKind.INTERNAL and http.kind is SpanKind.CLIENT
    assert sdk.attributes is not None and http.attributes is not None
    assert sdk.attributes["alloy.connector_id"] == "slack"
    assert sdk.attributes["alloy.action_id"] == "chat_postMessage"
    assert "http.request.resend_count" not in sdk.attributes
    assert sdk.status.status_code is not StatusCode.ERROR
    assert http.parent is not None and http.parent.span_id == sdk.context.span_id
    assert http.attributes["http.request.method"] == "POST"
    assert http.attributes["server.address"] == "127.0.0.1"
    assert http.attributes["server.port"] == 9
    assert http.attributes["url.full"] == (
        "http://127.0.0.1:9/connectors/slack/actions/chat_postMessage/execute"
    )
    assert http.attributes["http.response.status_code"] == 200
    # W3C trace context in what the server received: the attempt's own span.
    traceparent = seen[0].headers["traceparent"]
    version, trace_id, span_id, _flags = traceparent.split("-")
    assert (version, int(trace_id, 16), int(span_id, 16)) == (
        "00", http.context.trace_id, http.context.span_id,
    )  # fmt: skip
    # Never a credential in any span attribute.
    for span in t.finished():
        assert KEY not in repr(dict(span.attributes or {}))
    points = t.metrics()["alloy.client.call.duration"]
    assert sum(p.count for p in points) == 1


async def test_a_retried_call_counts_resends_throttles_and_retries() -> None:
    t = Telemetry()
    throttled = Response(429, {"retry-after": "0", "content-type": "application/json"}, b"{}")
    transport, seen = answers(throttled, ok())
    async with client(transport, t) as alloy:
        await execute(alloy)
    assert len(seen) == 2
    [sdk] = t.finished("alloy.actions.execute")
    assert sdk.attributes is not None
    assert sdk.attributes["http.request.resend_count"] == 1
    first, second = sorted(t.finished("POST"), key=lambda s: s.start_time or 0)
    assert first.attributes is not None and second.attributes is not None
    assert first.attributes["http.response.status_code"] == 429
    assert first.attributes["error.type"] == "429"
    assert "http.request.resend_count" not in first.attributes
    assert second.attributes["http.request.resend_count"] == 1
    assert [e.name for e in sdk.events] == ["retry"]
    metrics = t.metrics()
    assert sum(p.value for p in metrics["alloy.client.retries"]) == 1
    assert sum(p.value for p in metrics["alloy.client.throttles"]) == 1
    # Each attempt sent its own span's context.
    assert seen[0].headers["traceparent"] != seen[1].headers["traceparent"]


async def test_an_outcome_unknown_call_is_named_as_such_on_its_spans() -> None:
    t = Telemetry()
    lost = OutcomeUnknownError("server disconnected", method="POST", path="/x")
    transport, seen = answers(lost)
    async with client(transport, t) as alloy:
        with pytest.raises(OutcomeUnknownError):
            await execute(alloy)
    assert len(seen) == 1  # never re-sent
    [sdk] = t.finished("alloy.actions.execute")
    [http] = t.finished("POST")
    assert sdk.attributes is not None and http.attributes is not None
    assert sdk.attributes["error.type"] == "OutcomeUnknownError"
    assert sdk.status.status_code is StatusCode.ERROR
    assert http.attributes["error.type"] == "OutcomeUnknownError"
    [point] = t.metrics()["alloy.client.call.duration"]
    assert dict(point.attributes)["error.type"] == "OutcomeUnknownError"


async def test_execute_many_has_a_run_span_and_a_linked_span_per_job_in_its_own_trace() -> None:
    t = Telemetry()
    transport, seen = answers(ok())
    jobs = [ExecuteJob("slack", "chat_postMessage", "cred_1", user_id=f"u{i}") for i in range(5)]
    alloy = client(transport, t)
    async with alloy, alloy.actions.execute_many(jobs, concurrency=2, rate=1000.0) as run:
        outcomes = [o async for o in run]
    assert all(o.ok for o in outcomes) and len(seen) == 5
    [run_span] = t.finished("alloy.actions.execute_many")
    job_spans = t.finished("alloy.job")
    assert len(job_spans) == 5
    assert run_span.attributes is not None
    assert run_span.attributes["alloy.jobs.succeeded"] == 5
    sdk_spans = {s.parent.span_id: s for s in t.finished("alloy.actions.execute") if s.parent}
    trace_ids = set()
    for job in job_spans:
        assert job.attributes is not None
        assert job.parent is None  # a root: one trace per job, not one giant trace
        assert [link.context.span_id for link in job.links] == [run_span.context.span_id]
        assert job.attributes["alloy.outcome"] == "succeeded"
        assert job.attributes["alloy.wait.queue_s"] >= 0
        assert job.attributes["alloy.wait.rate_s"] >= 0
        assert job.context.span_id in sdk_spans  # the call's span is the job's child
        trace_ids.add(job.context.trace_id)
    assert len(trace_ids) == 5
    metrics = t.metrics()
    [jobs_point] = metrics["alloy.bulk.jobs"]
    assert jobs_point.value == 5 and dict(jobs_point.attributes) == {"alloy.outcome": "succeeded"}
    waits = {dict(p.attributes)["alloy.wait"]: p.count for p in metrics["alloy.bulk.wait.duration"]}
    assert waits == {"queue": 5, "rate": 5}


async def test_hooks_and_telemetry_together_both_see_the_call() -> None:
    t = Telemetry()
    transport, _ = answers(ok())
    statuses: list[int] = []
    async with AlloyClient(
        api_key=KEY, base_url="http://127.0.0.1:9", transport=transport,
        telemetry=t.observer, event_hooks={"response": [lambda e: statuses.append(e.status)]},
    ) as alloy:  # fmt: skip
        await execute(alloy)
    assert statuses == [200]
    assert len(t.finished("alloy.actions.execute")) == 1


def test_without_a_provider_there_is_no_observer_and_the_fast_path_stays() -> None:
    # This process never sets a global provider (the tests pass theirs to the observer).
    assert telemetry_observer(None) is None
    assert telemetry_observer(False) is None
    assert isinstance(telemetry_observer(True), OpenTelemetryObserver)
    alloy = AlloyClient(api_key=KEY, base_url="http://127.0.0.1:9")
    assert alloy._requester.observer is None


def test_url_full_never_carries_user_info() -> None:
    assert _safe_url("https://user:pw@api.example/x?a=1") == "https://api.example/x?a=1"
    assert _safe_url("http://127.0.0.1:9/x") == "http://127.0.0.1:9/x"
