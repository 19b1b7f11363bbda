"""One execute request, built without I/O: its route (memoised) and its documented body, with
the checks that name the bad argument; and its result read from the answer. ``actions.execute``
and every bulk job build and read theirs here.
"""

from __future__ import annotations

import functools
from typing import Any

from .._convert import execution_result
from .._http import Request, Response, check_header, header_value_ok
from .._wire import build_url, decode_json
from ..errors import InvalidRequestError
from ..models.actions import ExecutionResult
from ._base import check_id, check_mapping

__all__ = ["EXECUTE_OPERATION", "execute_body", "execute_result", "execute_route"]

#: The operation observers see for an execute call (``execute`` and each bulk job: the
#: pipeline's scope is the connector, so its 429s cool it).
EXECUTE_OPERATION = "alloy.actions.execute"

_EXECUTE = "/connectors/{connectorId}/actions/{actionId}/execute"


@functools.lru_cache(maxsize=4096)
def execute_route(base_url: str, connector_id: str, action_id: str) -> tuple[str, str]:
    """``(url, path)`` of an execute call, memoised: the bulk hot path builds the same few
    connector/action URLs over and over (raises :class:`InvalidRequestError`)."""
    return build_url(base_url, _EXECUTE, {"connectorId": connector_id, "actionId": action_id}, None)


def execute_body(
    credential_id: object,
    request_body: Any,
    query_parameters: object,
    path_params: object,
    additional_headers: object,
) -> dict[str, Any]:
    """The documented execute body, omitting what is None; checks name the bad argument."""
    if type(credential_id) is not str or not credential_id or credential_id.isspace():
        check_id("credential_id", credential_id)
    body: dict[str, Any] = {"credentialId": credential_id}
    if request_body is not None:
        body["requestBody"] = request_body
    if query_parameters is not None:
        body["queryParameters"] = check_mapping("query_parameters", query_parameters)
    if path_params is not None:
        body["pathParams"] = check_mapping("path_params", path_params)
    if additional_headers is not None:
        headers = check_mapping("additional_headers", additional_headers)
        for name, value in (headers or {}).items():
            # Alloy forwards these to the third party as HTTP headers: no CR, LF or NUL in the
            # value (header injection), and a valid token as the name.
            if not isinstance(value, str) or not header_value_ok(value):
                raise InvalidRequestError(
                    f"additional_headers[{name!r}] must be a string without CR, LF or NUL",
                    field="additional_headers",
                )
            try:
                check_header(name, value)
            except InvalidRequestError:
                raise InvalidRequestError(
                    f"additional_headers has an invalid header name {name!r}",
                    field="additional_headers",
                ) from None
        body["additionalHeaders"] = headers
    return body


def execute_result(request: Request, response: Response) -> ExecutionResult:
    """An execute call's result from its answer (a plain function, awaited nowhere: one frame
    less between the caller and the transport on the bulk hot path)."""
    return execution_result(
        decode_json(response, request), status_code=response.status, request_id=response.request_id
    )
