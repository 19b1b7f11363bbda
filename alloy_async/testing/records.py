"""What FakeAlloy records: the requests it received, the faults it injected, the executions
it performed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["ExecutionRecord", "FaultRecord", "RecordedRequest"]


@attrs.frozen
class RecordedRequest:
    """A request FakeAlloy received (``Authorization`` redacted)."""

    method: str
    path: str
    route: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    json: Any
    at: float


@attrs.frozen
class FaultRecord:
    """A fault FakeAlloy injected: the route, the fault's name (``"429"``, ``"reset_after"``,
    ``"slow"``...) and the decoded JSON body of the request it hit."""

    route: str
    fault: str
    json: Any


@attrs.frozen
class ExecutionRecord:
    """An action execution FakeAlloy actually performed (a side effect happened)."""

    user_id: str
    connector_id: str
    action_id: str
    credential_id: str
    request_body: Any
    query_parameters: Any
    path_params: Any
    #: When the server acted, on its own monotonic clock (its event loop's time), so rates
    #: can be judged by the server's record.
    at: float = 0.0
