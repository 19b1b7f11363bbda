"""Fault injection for FakeAlloy, and the documented error answers it (and the sandbox) send.

:class:`Fault` is one scripted fault, :class:`FaultPlan` draws random ones by rate,
:class:`SimulatedDisconnect` is how the simulated server drops a connection, and
:func:`error_body` is the documented JSON error body.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

import attrs
import orjson

from .._http import Response

__all__ = [
    "JSON_HEADERS",
    "Fault",
    "FaultPlan",
    "HTTPError",
    "SimulatedDisconnect",
    "error_body",
    "error_response",
    "fault_name",
]

JSON_HEADERS = {"content-type": "application/json"}


class SimulatedDisconnect(Exception):
    """The simulated server drops the connection; ``processed`` tells whether it acted first."""

    def __init__(self, processed: bool) -> None:
        super().__init__("connection reset " + ("after" if processed else "before") + " processing")
        self.processed = processed


class HTTPError(Exception):
    """An error answer in the documented shape, raised by a route handler (internal)."""

    def __init__(
        self, status: int, code: str, message: str, *, source: str = "CONNECTIVITY_API"
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.source = status, code, message, source


@attrs.frozen
class Fault:
    """One injected fault: a status answer, a reset before/after processing, or a hang.

    Attributes:
        status: answer with this status (and the documented error body) instead of acting.
        retry_after: value of the ``Retry-After`` header for a status fault.
        reset: ``"before"`` (never processed) or ``"after"`` (processed, then no answer).
        hang: process nothing and never answer (until the client gives up).
        delay: a latency spike: wait this many seconds, then serve the request normally.
    """

    status: int | None = None
    retry_after: str | None = None
    reset: str | None = None
    hang: bool = False
    delay: float = 0.0


@attrs.define
class FaultPlan:
    """Random faults by rate, reproducible from ``seed``.

    Attributes:
        rates: fault name -> the probability a request gets it: ``"429"``, ``"503"`` (any
            status code), ``"reset"``/``"reset_before"``, ``"reset_after"`` and ``"slow"``
            (a latency spike of ``spike`` seconds, then a normal answer). They add up to at
            most 1.
        seed: seeds the generator that draws the faults.
        retry_after: the ``Retry-After`` value sent with 429/503 answers (None: no header).
        routes: the route names the plan applies to (e.g. ``{"execute"}``); None: all.
        retry_after_share: the share of 429/503 answers that carry ``retry_after`` (drawn
            from the seeded generator; the others carry no header).
        spike: seconds a ``"slow"`` fault adds.

    Raises:
        ValueError: a rate outside 0..1, an unknown fault name, rates adding up to more
            than 1, or a bad ``retry_after_share`` or ``spike``.
    """

    rates: Mapping[str, float]
    seed: int = 0
    retry_after: str | None = "1"
    routes: frozenset[str] | None = None
    retry_after_share: float = 1.0
    spike: float = 0.05
    _rng: random.Random = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        for name, rate in self.rates.items():
            if not 0 <= rate <= 1:
                raise ValueError(f"fault rate for {name!r} must be within 0..1, got {rate}")
            if name not in ("reset", "reset_before", "reset_after", "slow") and not (
                name.isdigit() and 100 <= int(name) <= 599
            ):
                raise ValueError(f"unknown fault {name!r}: a status code, reset, ... or slow")
        if sum(self.rates.values()) > 1 + 1e-9:
            raise ValueError("fault rates add up to more than 1")
        if not 0 <= self.retry_after_share <= 1:
            raise ValueError(f"retry_after_share must be within 0..1, got {self.retry_after_share}")
        if self.spike < 0:
            raise ValueError(f"spike must be >= 0 seconds, got {self.spike}")

    def draw(self, route: str) -> Fault | None:
        """Pick at most one fault for a request to ``route``."""
        if self.routes is not None and route not in self.routes:
            return None
        x = self._rng.random()
        for name, rate in self.rates.items():
            if x < rate:
                if name in ("reset", "reset_before"):
                    return Fault(reset="before")
                if name == "reset_after":
                    return Fault(reset="after")
                if name == "slow":
                    return Fault(delay=self.spike)
                retry_after = self.retry_after
                if self.retry_after_share < 1 and self._rng.random() >= self.retry_after_share:
                    retry_after = None
                return Fault(status=int(name), retry_after=retry_after)
            x -= rate
        return None


def fault_name(fault: Fault) -> str:
    """The name a fault is counted and logged under: ``"429"``, ``"reset_after"``, ``"slow"``..."""
    if fault.reset:
        return f"reset_{fault.reset}"
    if fault.hang:
        return "hang"
    if fault.status is None and fault.delay:
        return "slow"
    return str(fault.status)


def error_body(status: int, code: str, message: str, *, source: str = "CONNECTIVITY_API") -> bytes:
    """The JSON body of every error FakeAlloy and the sandbox answer: the documented shape
    ``{"error": {"source", "code", "message", "details": {"httpStatusCode"}}}``."""
    error = {"source": source, "code": code, "message": message}
    return orjson.dumps({"error": {**error, "details": {"httpStatusCode": status}}})


def error_response(
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    *,
    source: str = "CONNECTIVITY_API",
) -> Response:
    """A :class:`Response` carrying :func:`error_body` (JSON content type unless ``headers``)."""
    body = error_body(status, code, message, source=source)
    return Response(status, headers or dict(JSON_HEADERS), body)
