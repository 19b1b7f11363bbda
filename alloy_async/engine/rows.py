"""One outcome as one JSON object: what the CLI writes per line and a worker stores per job.

Shared by ``alloy-async bulk`` (its ``--out`` lines) and ``alloy_async.distributed`` (the rows
workers store in the journal and the driver writes), so a line looks the same whichever ran it.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from ..errors import APIStatusError, CredentialQuarantinedError, InvalidRequestError
from ..models import JobOutcome

__all__ = ["dumps_line", "outcome_json"]


def dumps_line(row: Any) -> str:
    """One JSON line; orjson, or ``json`` for what orjson refuses (integers past 64 bits in
    an answer, which the SDK decodes exactly)."""
    try:
        return orjson.dumps(row, default=str).decode()
    except TypeError:
        return json.dumps(row, default=str, ensure_ascii=False, separators=(",", ":"))


def outcome_json(outcome: JobOutcome, line: int | None) -> dict[str, Any]:
    """One JSON object per outcome: the job key, ok, the result or a typed error."""
    job = outcome.job
    row: dict[str, Any] = {
        "line": line,
        "key": job.key or job.effective_key,
        "userId": job.user_id,
        "connectorId": job.connector_id,
        "actionId": job.action_id,
        "ok": outcome.ok,
        "attempts": outcome.attempts,
        "elapsed": round(outcome.elapsed, 6),
    }
    if outcome.ok:
        result = outcome.result
        row["data"] = getattr(result, "data", result)
        row["requestId"] = getattr(result, "request_id", None)
    else:
        err = outcome.error
        row["error"] = {"type": type(err).__name__, "message": str(err)}
        if isinstance(err, APIStatusError):
            row["error"].update(
                status=err.status, code=err.code, source=err.source, requestId=err.request_id
            )
        elif isinstance(err, InvalidRequestError) and err.problems:
            row["error"]["problems"] = [
                {"pointer": p.pointer, "message": p.message, "keyword": p.keyword}
                for p in err.problems
            ]
        elif isinstance(err, CredentialQuarantinedError):
            row["error"].update(credentialId=err.credential_id, cause=type(err.error).__name__)
    return row
