"""OpenTelemetry spans and metrics (extra ``otel``: ``opentelemetry-api`` only, no SDK).

Spans (tracer ``alloy_async``):

* one INTERNAL span per SDK call, named after it (``alloy.actions.execute``), with
  ``alloy.connector_id`` / ``alloy.action_id`` where the call has them, the retries as
  ``http.request.resend_count`` and, on failure, ``error.type`` (the error's class name:
  ``OutcomeUnknownError`` shows as such) and an ERROR status;
* under it, one CLIENT span per HTTP attempt, after the stable HTTP semantic conventions
  (``http.request.method``, ``server.address``, ``server.port``, ``url.full`` without
  credentials, ``http.response.status_code``, ``http.request.resend_count`` on a retry,
  ``error.type``). The attempt's context goes into the request headers (W3C ``traceparent``)
  through the configured propagator;
* in ``execute_many``, one span for the run and one per job, each job in its own trace with a
  link to the run (not one giant trace), carrying the seconds the job waited in the queue (a
  user's slot, a connector's cap, a cool-down) and for a rate permit.

Metrics (meter ``alloy_async``): ``alloy.client.call.duration`` (histogram, s),
``alloy.client.retries``, ``alloy.client.throttles`` (429/503 answers),
``alloy.bulk.wait.duration`` (histogram, s, ``alloy.wait`` = ``queue`` or ``rate``) and
``alloy.bulk.jobs`` (by ``alloy.outcome``).
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import attrs
from opentelemetry import context as otel_context
from opentelemetry import metrics, propagate, trace
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from .._http import Request, Response
from .._version import __version__
from ..errors import AlloyError
from .base import CallInfo, Observer

__all__ = ["OpenTelemetryObserver", "providers_set"]

_NAME = "alloy_async"


def providers_set() -> bool:
    """Whether the application has set a tracer or meter provider (else spans are no-ops)."""
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return True
    # The API keeps its default meter provider in a private proxy class; only its name is used.
    return type(metrics.get_meter_provider()).__name__ != "_ProxyMeterProvider"


def _safe_url(url: str) -> str:
    """``url`` without user:password (the SDK never puts credentials there; a base URL might)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _ids(path: str) -> dict[str, str]:
    """``alloy.connector_id`` / ``alloy.action_id`` from a ``/connectors/{c}/actions/{a}`` path."""
    parts = path.split("/")
    out: dict[str, str] = {}
    for i, part in enumerate(parts[:-1]):
        if part == "connectors":
            out["alloy.connector_id"] = unquote(parts[i + 1])
        elif part == "actions":
            out["alloy.action_id"] = unquote(parts[i + 1])
    return out


@attrs.define(slots=True)
class _CallState:
    span: Any
    token: object
    started: float
    http: Any = None


class OpenTelemetryObserver(Observer):
    """Spans and metrics for every SDK call (see the module's docstring).

    Args:
        tracer_provider, meter_provider: the providers to use; the global ones by default.
    """

    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        self.tracer = trace.get_tracer(_NAME, __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter(_NAME, __version__, meter_provider=meter_provider)
        self._duration = meter.create_histogram(
            "alloy.client.call.duration", unit="s", description="Duration of SDK calls"
        )
        self._retries = meter.create_counter(
            "alloy.client.retries", unit="{retry}", description="Attempts retried"
        )
        self._throttles = meter.create_counter(
            "alloy.client.throttles", unit="{answer}", description="429 and 503 answers"
        )
        self._waits = meter.create_histogram(
            "alloy.bulk.wait.duration", unit="s", description="Time a job waited before sending"
        )
        self._jobs = meter.create_counter(
            "alloy.bulk.jobs", unit="{job}", description="execute_many jobs by outcome"
        )

    # -- one SDK call --------------------------------------------------------------------------

    def call_started(self, call: CallInfo) -> None:
        attributes = {"alloy.operation": call.operation, **_ids(call.request.path)}
        span = self.tracer.start_span(call.operation, kind=SpanKind.INTERNAL, attributes=attributes)
        token = otel_context.attach(trace.set_span_in_context(span))
        call.state = _CallState(span, token, time.perf_counter())

    async def before_send(self, call: CallInfo, request: Request) -> Request:
        state: _CallState = call.state
        url = urlsplit(request.url)
        attributes: dict[str, Any] = {
            "http.request.method": request.method,
            "server.address": url.hostname or "",
            "server.port": url.port or (443 if url.scheme == "https" else 80),
            "url.full": _safe_url(request.url),
        }
        if call.attempt > 1:
            attributes["http.request.resend_count"] = call.attempt - 1
        parent = trace.set_span_in_context(state.span)
        state.http = self.tracer.start_span(
            request.method, context=parent, kind=SpanKind.CLIENT, attributes=attributes
        )
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(state.http))
        if not carrier:
            return request
        return request.with_headers({k.lower(): v for k, v in carrier.items()})

    async def answered(self, call: CallInfo, response: Response, elapsed: float) -> None:
        state: _CallState = call.state
        span, state.http = state.http, None
        if span is not None:
            span.set_attribute("http.response.status_code", response.status)
            if response.request_id:
                span.set_attribute("alloy.request_id", response.request_id)
            if response.status >= 400:
                span.set_attribute("error.type", str(response.status))
                span.set_status(Status(StatusCode.ERROR))
            span.end()
        if response.status in (429, 503):
            self._throttles.add(
                1, {"alloy.operation": call.operation, "http.response.status_code": response.status}
            )

    def attempt_failed(self, call: CallInfo, error: AlloyError, elapsed: float) -> None:
        state: _CallState = call.state
        span, state.http = state.http, None
        if span is not None:
            span.set_attribute("error.type", type(error).__name__)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            span.end()

    async def retrying(self, call: CallInfo, delay: float, reason: AlloyError) -> None:
        state: _CallState = call.state
        state.span.add_event(
            "retry",
            {
                "alloy.attempt": call.attempt,
                "alloy.retry.delay_s": delay,
                "error.type": type(reason).__name__,
            },
        )
        self._retries.add(
            1, {"alloy.operation": call.operation, "error.type": type(reason).__name__}
        )

    def call_ended(self, call: CallInfo, error: BaseException | None) -> None:
        state: _CallState = call.state
        span = state.span
        if state.http is not None:  # the attempt never got to answered(): cancelled, a hook
            what = type(error).__name__ if error else "cancelled"
            state.http.set_attribute("error.type", what)
            state.http.set_status(Status(StatusCode.ERROR, what))
            state.http.end()
        if call.attempt > 1:
            span.set_attribute("http.request.resend_count", call.attempt - 1)
        labels: dict[str, Any] = {"alloy.operation": call.operation}
        if error is not None:
            labels["error.type"] = type(error).__name__
            span.set_attribute("error.type", type(error).__name__)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        self._duration.record(time.perf_counter() - state.started, labels)
        otel_context.detach(state.token)  # type: ignore[arg-type, unused-ignore]
        span.end()

    # -- execute_many --------------------------------------------------------------------------

    def run_started(self, run_id: str, concurrency: int) -> Any:
        """The span of one ``execute_many`` run (its own trace unless one is current)."""
        return self.tracer.start_span(
            "alloy.actions.execute_many",
            attributes={"alloy.run_id": run_id, "alloy.concurrency": concurrency},
        )

    def run_ended(self, run: Any, counts: dict[str, int], stop_reason: str | None) -> None:
        """End the run's span with its counts."""
        for name, value in counts.items():
            run.set_attribute(f"alloy.jobs.{name}", value)
        if stop_reason is not None:
            run.set_attribute("alloy.stop_reason", stop_reason)
        run.end()

    def job_started(self, run: Any, index: int, job: Any, queued: float, rate_wait: float) -> Any:
        """A job's span, in a trace of its own, linked to the run; current until it ends."""
        attributes: dict[str, Any] = {
            "alloy.job.index": index,
            "alloy.connector_id": job.connector_id,
            "alloy.action_id": job.action_id,
            "alloy.wait.queue_s": queued,
            "alloy.wait.rate_s": rate_wait,
        }
        span = self.tracer.start_span(
            "alloy.job",
            context=otel_context.Context(),  # a new trace: the run's would hold millions of spans
            links=[Link(run.get_span_context())],
            attributes=attributes,
        )
        self._waits.record(queued, {"alloy.wait": "queue"})
        self._waits.record(rate_wait, {"alloy.wait": "rate"})
        return span, otel_context.attach(trace.set_span_in_context(span))

    def job_ended(self, handle: Any, outcome: str, error: BaseException | None) -> None:
        """End a job's span: ``outcome`` is succeeded, failed or outcome_unknown."""
        span, token = handle
        span.set_attribute("alloy.outcome", outcome)
        if error is not None:
            span.set_attribute("error.type", type(error).__name__)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        otel_context.detach(token)
        span.end()

    def job_finished(self, outcome: str) -> None:
        """Count a job's final outcome (once per job, sent or not)."""
        self._jobs.add(1, {"alloy.outcome": outcome})
