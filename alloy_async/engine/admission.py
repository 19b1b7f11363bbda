"""From one input item to one :class:`Slot`: build the job, find its key, skip what is done.

The journal decides what a key means for this run: nothing yet (run it), a duplicate of a key
read earlier in this run, done by an earlier run (skip), or an intent an earlier run left
without an outcome (it died mid-call: report outcome-unknown, never send). One bad job (a
malformed mapping, a body JSON cannot encode) becomes a slot whose outcome is already decided.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..errors import InvalidRequestError, OutcomeUnknownError
from ..models.bulk import ExecuteJob
from .coordinator import KeyedSlots
from .journal import Journal, State
from .outcomes import Tally
from .scheduler import Slot

__all__ = ["Admission", "locate"]


class Admission:
    """Admits jobs into a run and journals what the consumer has taken.

    ``claimed`` holds the keys read in this run whose outcome is not journaled yet (bounded by
    the look-ahead and the calls in flight), so a duplicate is caught even before its first
    occurrence has reached the journal.
    """

    def __init__(
        self,
        *,
        run_id: str,
        slots: KeyedSlots,
        scope: Callable[[ExecuteJob], str],
        default_user: str | None,
        on_skip: Callable[[ExecuteJob, str], None] | None,
        tally: Tally,
    ) -> None:
        self.journal: Journal | None = None
        self.claimed: set[str] = set()
        self._run_id = run_id
        self._slots = slots
        self._scope = scope
        self._default_user = default_user
        self._on_skip = on_skip
        self._tally = tally

    def admit(self, raw: ExecuteJob | Mapping[str, Any], index: int) -> Slot | None:
        """The slot for input item ``raw`` at ``index``, or None when it is skipped."""
        job, key, preset = self._build(raw, index)
        if key is not None:
            seen = self._lookup(key)
            if seen == "intent":
                preset = preset or OutcomeUnknownError(
                    "an earlier run stopped while this job may have been in flight; "
                    "it is not sent again"
                )
            elif seen is not None:
                if seen == "duplicate":
                    self._tally.duplicates += 1
                else:
                    self._tally.skipped += 1
                if self._on_skip is not None:
                    self._on_skip(job, seen)
                return None
            self.claimed.add(key)
        if preset is not None:
            slot = Slot(index, job, key, (), "", "")
            slot.preset = preset
            return slot
        user = job.user_id or self._default_user or ""
        keys = self._slots.keys_for({"user": user or None, "connector": job.connector_id})
        return Slot(index, job, key, keys, self._scope(job), user)

    def taken(self, key: str | None, state: State | None) -> None:
        """Journal the outcome of ``key`` (None: forget it, the server never acted)."""
        journal = self.journal
        if key is None or journal is None:
            return
        self.claimed.discard(key)
        if state is None:
            journal.forget(key)
        else:
            journal.record(key, state)

    def _build(self, raw: Any, index: int) -> tuple[Any, str | None, BaseException | None]:
        """``(job, journal key, preset error)``: one bad job is one failed outcome."""
        try:
            job = raw if isinstance(raw, ExecuteJob) else ExecuteJob.from_mapping(raw)
            if self.journal is None:
                return job, None, None
            job_key = job.effective_key
            try:
                job_key.encode("utf-8")
            except UnicodeEncodeError:  # a lone surrogate: no journal can store it
                bad = InvalidRequestError(
                    f"job at index {index}: key {job_key!r} is not valid UTF-8", field="key"
                )
                return job, None, bad
            return job, job_key, None
        except (InvalidRequestError, TypeError, ValueError) as exc:
            field = exc.field if isinstance(exc, InvalidRequestError) else "request_body"
            if not isinstance(exc, InvalidRequestError):
                exc = InvalidRequestError(f"the job cannot be encoded as JSON: {exc}")
            preset = InvalidRequestError(f"job at index {index}: {exc}", field=field)
            given = raw.get("key") if isinstance(raw, Mapping) else getattr(raw, "key", None)
            key = given if isinstance(given, str) and self.journal is not None else None
            return raw, key, preset

    def _lookup(self, key: str) -> str | None:
        """None (run it), "intent" (an earlier run died mid-call), "duplicate" or "done"."""
        if key in self.claimed:
            return "duplicate"
        assert self.journal is not None
        found = self.journal.lookup(key)
        if found is None:
            return None
        state, run = found
        if run == self._run_id:
            return "duplicate"
        return "intent" if state == "intent" else "done"


def locate(error: InvalidRequestError, index: int) -> InvalidRequestError:
    """``error`` (refused before sending) with the job's position in its message."""
    if str(error).startswith("job at index "):
        return error
    located = InvalidRequestError(
        f"job at index {index}: {error}", field=error.field, problems=error.problems
    )
    located.__cause__ = error
    return located
