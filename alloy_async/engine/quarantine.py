"""Credential quarantine: one revoked credential does not burn the budget of all its jobs.

A job that fails with 401 or 403 whose ``source`` is ``THIRD_PARTY`` (the third party refused
the end user's credential: access revoked or expired) quarantines that credential for the rest
of the run: its jobs already in flight finish, those still queued are not sent and end with
:class:`~alloy_async.errors.CredentialQuarantinedError` (journaled as not sent, so a rerun
after the user reconnects sends them). ``on_credential_error(user_id, credential_id, error)``
is called once per credential.

A 401 from the Connectivity API itself (any other ``source``: our API key is bad) is not a
credential problem: every job would fail the same way, so the run stops at once, unless the
caller passed their own ``stop_when`` (then it is theirs to decide).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Literal

from .._aio import call_back
from ..errors import APIStatusError, CredentialQuarantinedError
from ..models.bulk import ExecuteJob
from .coordinator import SharedQuarantine

__all__ = ["OnCredentialError", "Quarantine", "credential_failure"]

#: ``execute_many(on_credential_error=...)``: ``(user_id, credential_id, error)``, sync or async.
OnCredentialError = Callable[[str | None, str, BaseException], Awaitable[None] | None]


def credential_failure(error: BaseException | None) -> Literal["credential", "api_key"] | None:
    """``"credential"``: the third party refused the job's credential; ``"api_key"``: the
    Connectivity API refused our API key; None: neither."""
    if not isinstance(error, APIStatusError) or error.status not in (401, 403):
        return None
    if (error.source or "").upper() == "THIRD_PARTY":
        return "credential"
    return "api_key" if error.status == 401 else None


class Quarantine:
    """The credentials quarantined in one run (see the module docstring), or in every run
    sharing its coordinator when that has a ``quarantine`` (a :class:`SharedQuarantine`)."""

    def __init__(
        self,
        on_credential_error: OnCredentialError | None,
        *,
        stop: Callable[[str], None],
        stop_on_api_key: bool,
        shared: SharedQuarantine | None = None,
    ) -> None:
        self._callback = on_credential_error
        self._stop = stop
        self._stop_on_api_key = stop_on_api_key
        self._shared = shared
        self._own: dict[str, BaseException] = {}
        #: Jobs not sent because their credential was quarantined.
        self.refused = 0
        #: The credentials this run found refused or held jobs back for, in that order.
        self.credentials: dict[str, None] = {}

    @property
    def bad(self) -> Mapping[str, BaseException]:
        """Credential id -> the error that quarantined it (the shared view, if any)."""
        return self._own if self._shared is None else self._shared.bad

    def blocked(self, job: ExecuteJob) -> CredentialQuarantinedError | None:
        """The error ``job`` ends with unsent, when its credential is quarantined."""
        error = self.bad.get(job.credential_id)
        if error is None:
            return None
        self.refused += 1
        self.credentials[job.credential_id] = None
        return CredentialQuarantinedError(job.credential_id, job.user_id, error)

    def saw(self, job: ExecuteJob, error: BaseException | None) -> bool:
        """Judge a job's error; True when the app's callback is owed (:meth:`notify`)."""
        kind = credential_failure(error)
        if kind == "api_key":
            if self._stop_on_api_key:
                self._stop(
                    f"the Connectivity API refused the API key ({type(error).__name__}, "
                    "401): every job would fail the same way; check ALLOY_API_KEY / api_key"
                )
            return False
        if kind is None:
            return False
        assert error is not None
        credential_id = job.credential_id
        self.credentials[credential_id] = None
        if self._shared is not None:
            first = self._shared.add(credential_id, job.user_id, error)
        else:
            first = credential_id not in self._own
            self._own.setdefault(credential_id, error)
        return first and self._callback is not None

    async def notify(self, job: ExecuteJob, error: BaseException) -> None:
        """Tell the app (once per credential) so it can ask the user to reconnect; what the
        callback raises ends the run and is raised to the consumer."""
        assert self._callback is not None
        await call_back(self._callback, job.user_id, job.credential_id, error)
