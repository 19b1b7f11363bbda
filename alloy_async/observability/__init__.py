"""Observing the SDK in production: event hooks, raw responses, OpenTelemetry (extra ``otel``).

Nothing here imports OpenTelemetry until a client asks for it (see :func:`telemetry_observer`).
"""

from __future__ import annotations

import importlib.util
from typing import Any

from ..errors import ConfigurationError
from .base import (
    HOOK_EVENTS,
    CallInfo,
    EventHooks,
    HookObserver,
    Observer,
    RequestEvent,
    ResponseEvent,
    RetryEvent,
    chain,
)
from .raw import RawResponse

__all__ = [
    "HOOK_EVENTS",
    "CallInfo",
    "EventHooks",
    "HookObserver",
    "Observer",
    "RawResponse",
    "RequestEvent",
    "ResponseEvent",
    "RetryEvent",
    "chain",
    "telemetry_observer",
]


def telemetry_observer(telemetry: bool | Any | None) -> Observer | None:
    """The OpenTelemetry observer a client uses, or None.

    ``telemetry``: None (the default) turns it on when ``opentelemetry-api`` is installed and
    a tracer or meter provider has been set by then; False turns it off; True requires it.
    """
    if telemetry is False:
        return None
    if importlib.util.find_spec("opentelemetry") is None:
        if telemetry is True:
            raise ConfigurationError(
                "telemetry=True needs OpenTelemetry: pip install 'alloy-async[otel]'"
            )
        return None
    from .otel import OpenTelemetryObserver, providers_set

    if telemetry is None and not providers_set():
        return None  # no provider: spans would be no-ops, so no cost at all
    return OpenTelemetryObserver()
