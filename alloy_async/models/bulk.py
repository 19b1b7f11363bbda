"""Bulk execution models: the job going in, the outcome coming out, the run's report.

Plain attrs classes (no cattrs, no I/O). :class:`ExecuteJob` validates its ids when it is built
so a bad job fails before anything is sent, with the offending field named.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import attrs
import orjson

from ..errors import InvalidRequestError
from ._base import non_finite_path, redact_header_values, repr_masked
from ._fields import CAMEL, SNAKE

__all__ = ["BulkReport", "ExecuteJob", "JobOutcome"]


def _non_empty_id(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequestError(
            f"ExecuteJob.{attribute.name} must be a non-empty string, got {repr_masked(value)}",
            field=attribute.name,
        )


def _optional_mapping(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, Mapping):
        raise InvalidRequestError(
            f"ExecuteJob.{attribute.name} must be a mapping or None, got {type(value).__name__}",
            field=attribute.name,
        )


def _check_job(job: ExecuteJob, _attribute: attrs.Attribute[Any], _value: str | None) -> None:
    """Every field of ``job``, in field order (the validator of its last field); the helpers
    run only to raise the error naming the first bad field."""
    c, a, k, u = job.connector_id, job.action_id, job.credential_id, job.user_id
    if type(c) is not str or not c or c.isspace():
        _non_empty_id(job, _FIELDS["connector_id"], c)
    if type(a) is not str or not a or a.isspace():
        _non_empty_id(job, _FIELDS["action_id"], a)
    if type(k) is not str or not k or k.isspace():
        _non_empty_id(job, _FIELDS["credential_id"], k)
    if u is not None and (type(u) is not str or not u or u.isspace()):
        _non_empty_id(job, _FIELDS["user_id"], u)
    q, p, h = job.query_parameters, job.path_params, job.additional_headers
    if q is not None and type(q) is not dict:
        _optional_mapping(job, _FIELDS["query_parameters"], q)
    if p is not None and type(p) is not dict:
        _optional_mapping(job, _FIELDS["path_params"], p)
    if h is not None and type(h) is not dict:
        _optional_mapping(job, _FIELDS["additional_headers"], h)
    if (key := job.key) is not None and (type(key) is not str or not key or key.isspace()):
        _non_empty_id(job, _FIELDS["key"], key)


# camelCase (the wire / Alloy docs spelling) and snake_case both map to the attribute name.
_FIELD_ALIASES: dict[str, str] = {name: name for name in CAMEL} | SNAKE


@attrs.frozen(slots=True)
class ExecuteJob:
    """One action execution to run in bulk (the arguments of ``actions.execute``).

    Attributes:
        connector_id: the connector (``"hubspot"``).
        action_id: the action of that connector to run (``"createContact"``).
        credential_id: the user's credential to run it with.
        user_id: the end user (``x-alloy-userid``); also the fairness key of ``execute_many``.
        request_body: the body sent to the third party, as for ``actions.execute``.
        query_parameters: the third party's query parameters, as for ``actions.execute``.
        path_params: the values of the action's path parameters, as for ``actions.execute``.
        additional_headers: extra headers for the third party, as for ``actions.execute``.
        key: a stable idempotency / checkpoint key; None derives one from the content
            (see :attr:`effective_key`).
    """

    connector_id: str
    action_id: str
    credential_id: str
    user_id: str | None = None
    # The body and parameters may carry secrets (``password``, ``apiKey``...) at any depth:
    # their values are masked in the repr.
    request_body: Any = attrs.field(default=None, repr=repr_masked)
    query_parameters: Mapping[str, Any] | None = attrs.field(default=None, repr=repr_masked)
    path_params: Mapping[str, Any] | None = attrs.field(default=None, repr=repr_masked)
    # The values are third-party credentials (``Authorization``...): masked in the repr.
    additional_headers: Mapping[str, str] | None = attrs.field(
        default=None, repr=redact_header_values
    )
    # The validator of the last field checks every field: attrs runs validators once all
    # fields are set, so one call does what nine did (once per job on the bulk hot path), and
    # attrs.validate / attrs.validators.disabled() / attrs.evolve still apply.
    key: str | None = attrs.field(default=None, validator=_check_job)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> ExecuteJob:
        """Build a job from a mapping with camelCase or snake_case keys.

        Raises:
            InvalidRequestError: on an unknown key (named), a key given twice in both
                spellings, or a bad value.
        """
        if isinstance(mapping, ExecuteJob):
            return mapping
        if not isinstance(mapping, Mapping):
            raise InvalidRequestError(
                f"a job must be an ExecuteJob or a mapping, got {type(mapping).__name__}",
                field="job",
            )
        kwargs: dict[str, Any] = {}
        for raw_key, value in mapping.items():
            name = _FIELD_ALIASES.get(raw_key) if isinstance(raw_key, str) else None
            if name is None:
                known = ", ".join(sorted(n for n in _FIELD_ALIASES if n == _FIELD_ALIASES[n]))
                raise InvalidRequestError(
                    f"unknown ExecuteJob field {raw_key!r} (known: {known})", field=str(raw_key)
                )
            if name in kwargs:
                raise InvalidRequestError(
                    f"ExecuteJob field {name!r} given twice (camelCase and snake_case)",
                    field=name,
                )
            kwargs[name] = value
        for required in ("connector_id", "action_id", "credential_id"):
            if required not in kwargs:
                raise InvalidRequestError(
                    f"ExecuteJob field {required!r} is missing", field=required
                )
        return cls(**kwargs)

    @property
    def effective_key(self) -> str:
        """``key`` when set, else a stable hash of the job's content.

        The hash is SHA-256 over the canonical JSON (sorted keys) of every field but ``key``,
        so the same job gets the same key across runs and processes (checkpoints rely on it).

        Raises:
            InvalidRequestError: the content holds NaN or +-Infinity (JSON has none; orjson
                would write ``null``, giving two different jobs one key), naming its path.
        """
        if self.key is not None:
            return self.key
        canonical = orjson.dumps(
            {
                "connector_id": self.connector_id,
                "action_id": self.action_id,
                "credential_id": self.credential_id,
                "user_id": self.user_id,
                "request_body": self.request_body,
                "query_parameters": self.query_parameters,
                "path_params": self.path_params,
                "additional_headers": self.additional_headers,
            },
            option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
        )
        # orjson writes NaN and +-Infinity as null. Each field that is None is one null; only
        # when there are more (a None inside the body, a NaN, or "null" in a string) is the
        # content walked.
        nones = (
            (self.user_id is None)
            + (self.request_body is None)
            + (self.query_parameters is None)
            + (self.path_params is None)
            + (self.additional_headers is None)
        )
        if canonical.count(b"null") > nones:
            self._refuse_non_finite()
        return hashlib.sha256(canonical).hexdigest()[:32]

    def _refuse_non_finite(self) -> None:
        for name in ("request_body", "query_parameters", "path_params", "additional_headers"):
            found = non_finite_path(getattr(self, name), name)
            if found is not None:
                where, value = found
                raise InvalidRequestError(
                    f"ExecuteJob.{where} is {value!r}: JSON has no NaN or Infinity",
                    field=where,
                )


_FIELDS = attrs.fields_dict(ExecuteJob)


@attrs.frozen(slots=True)
class JobOutcome:
    """What happened to one job.

    Attributes:
        job: the job.
        ok: True when the execute call returned (``result`` is set, ``error`` is None).
        result: what the execute call returned (an ``ExecutionResult``), or None.
        error: the exception the job ended with, or None. An
            :class:`~alloy_async.errors.OutcomeUnknownError` means the action may have run.
        attempts: HTTP attempts spent on the job (retries included).
        elapsed: seconds from dispatch to completion.
        index: the job's position in the input (0-based, skipped jobs not counted).

    A job that could not be built (a mapping with a missing field, a body JSON cannot
    encode) ends with an :class:`~alloy_async.errors.InvalidRequestError` naming the field
    and the index; then ``job`` is what the input gave.
    """

    # ``job`` is the mapping as given when it could not be made a job; ``result`` may be any
    # value: both are shown with secret-looking keys masked at any depth.
    job: ExecuteJob = attrs.field(repr=repr_masked)
    ok: bool
    result: Any = attrs.field(repr=repr_masked)
    error: BaseException | None
    attempts: int
    elapsed: float
    index: int | None = None


@attrs.frozen(slots=True)
class BulkReport:
    """Counts for one ``execute_many`` run (a snapshot; ``run.report`` gives the latest).

    Attributes:
        succeeded: jobs whose call returned.
        failed: jobs that ended with a definitive error (e.g. a 4xx, or a bad job).
        outcome_unknown: jobs that may or may not have run (sent, then no answer; or
            cancelled while in flight). They are never re-sent automatically.
        skipped: jobs skipped because the journal says an earlier run finished them.
        duplicates: jobs skipped because a job with the same key came earlier in this run.
        not_dispatched: jobs taken from the input but never started (stop, deadline, close).
        by_error: error class name -> count.
        attempts: HTTP attempts over all jobs.
        retries: attempts beyond the first of each job.
        throttled_seconds: seconds jobs spent waiting on 429/503 throttling.
        wall_time: seconds from the start of the run to now (or to its end).
        stopped_early: dispatch stopped before the input was exhausted.
        stop_reason: why, when ``stopped_early``.
        quarantined: jobs not sent because their credential was quarantined earlier in the
            run (a 401/403 from the third party); counted in ``failed`` too.
        quarantined_credentials: those credentials' ids.
    """

    succeeded: int = 0
    failed: int = 0
    outcome_unknown: int = 0
    skipped: int = 0
    duplicates: int = 0
    not_dispatched: int = 0
    by_error: Mapping[str, int] = attrs.field(factory=dict)
    attempts: int = 0
    retries: int = 0
    throttled_seconds: float = 0.0
    wall_time: float = 0.0
    stopped_early: bool = False
    stop_reason: str | None = None
    quarantined: int = 0
    quarantined_credentials: tuple[str, ...] = ()

    @property
    def finished(self) -> int:
        """Jobs that ran to an outcome (succeeded + failed + outcome_unknown)."""
        return self.succeeded + self.failed + self.outcome_unknown

    def summary(self) -> str:
        """A short human-readable account of the run, several lines."""
        lines = [
            f"{self.finished} jobs in {self.wall_time:.2f} s: {self.succeeded} succeeded, "
            f"{self.failed} failed, {self.outcome_unknown} outcome unknown"
            f"; {self.skipped} skipped (journal), {self.duplicates} duplicates, "
            f"{self.not_dispatched} not dispatched",
            f"attempts {self.attempts} (retries {self.retries}), "
            f"throttled {self.throttled_seconds:.2f} s",
        ]
        if self.by_error:
            errors = ", ".join(
                f"{name} x{count}"
                for name, count in sorted(self.by_error.items(), key=lambda kv: (-kv[1], kv[0]))
            )
            lines.append(f"errors: {errors}")
        if self.quarantined_credentials:
            lines.append(
                f"quarantined credentials: {', '.join(self.quarantined_credentials)} "
                f"({self.quarantined} jobs not sent: reconnect, then rerun)"
            )
        if self.stopped_early:
            lines.append(f"stopped early: {self.stop_reason}")
        return "\n".join(lines)
