"""What FakeAlloy records: the requests it received, the faults it injected, the executions
it performed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["ExecutionRecord", "FaultRecord", "RecordedRequest"]


@attrs.frozen
class RecordedRequest:
    """A request FakeAlloy received (``Authorization`` redacted).

    Attributes:
        method: the HTTP method.
        path: the URL path, without the query string.
        route: the route name it matched (``"execute"``, ``"users.get"``...), as
            :meth:`FakeAlloy.script <alloy_async.testing.FakeAlloy.script>` takes it.
        query: the query string's parameters (the last value of a repeated one).
        headers: the headers as received, ``authorization`` reading ``[REDACTED]``.
        json: the decoded JSON body; None without a body (a body that is not JSON is
            recorded as a placeholder object).
        at: when it arrived, on the event loop's clock (0.0 outside a loop).
    """

    method: str
    path: str
    route: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    json: Any
    at: float


@attrs.frozen
class FaultRecord:
    """A fault FakeAlloy injected.

    Attributes:
        route: the route name of the request it hit (``"execute"``...).
        fault: the fault's name (``"429"``, ``"reset_after"``, ``"slow"``...).
        json: the decoded JSON body of the request it hit, or None.
    """

    route: str
    fault: str
    json: Any


@attrs.frozen
class ExecutionRecord:
    """An action execution FakeAlloy actually performed (a side effect happened).

    Attributes:
        user_id: the user it ran for.
        connector_id: the connector.
        action_id: the action.
        credential_id: the credential it ran with.
        request_body: the body the third party got.
        query_parameters: the third party's query parameters.
        path_params: the action's path parameters.
        at: when the server acted, on its own monotonic clock (its event loop's time), so
            rates can be judged by the server's record.
    """

    user_id: str
    connector_id: str
    action_id: str
    credential_id: str
    request_body: Any
    query_parameters: Any
    path_params: Any
    at: float = 0.0
