"""The fields of an execute call in their two spellings, for every module that maps them.

snake_case is the Python spelling (``actions.execute``'s arguments, :class:`ExecuteJob`'s
attributes); camelCase is the wire's (the execute body, the Alloy docs, a bulk input line, the
job in a worker's task message).
"""

from __future__ import annotations

__all__ = ["BODY_PARTS", "CAMEL", "OPTIONAL", "SNAKE"]

#: ExecuteJob's fields in its field order: snake_case -> camelCase.
CAMEL: dict[str, str] = {
    "connector_id": "connectorId",
    "action_id": "actionId",
    "credential_id": "credentialId",
    "user_id": "userId",
    "request_body": "requestBody",
    "query_parameters": "queryParameters",
    "path_params": "pathParams",
    "additional_headers": "additionalHeaders",
    "key": "key",
}
#: camelCase -> snake_case.
SNAKE: dict[str, str] = {camel: snake for snake, camel in CAMEL.items()}
#: The fields a job may leave out (None) besides ``key``, snake_case.
OPTIONAL = ("user_id", "request_body", "query_parameters", "path_params", "additional_headers")
#: The optional parts of the execute body (what the third party's call gets), camelCase.
BODY_PARTS = tuple(CAMEL[name] for name in OPTIONAL if name != "user_id")
