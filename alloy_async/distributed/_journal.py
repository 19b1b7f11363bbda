"""The write-ahead journal on Redis, shared by every run on a namespace at once.

One hash per job key (``alloy:{ns}:job:<key>``): ``s`` its state (``intent``, ``succeeded``,
``failed``, ``outcome_unknown``), ``r`` the run that wrote the intent, ``row`` the outcome
line a worker stored for it. No lock keeps other runs out: :meth:`RedisJournal.claim` writes
an intent only where no run has recorded one (a Lua script), so of two runs that read the same
key exactly one sends it. A run is alive while its key (``alloy:{ns}:run:<id>``) exists, which
the coordinator renews: an intent whose run is gone means that run died mid-call, and the job
is reported outcome-unknown, never sent again.

Redis durability is the server's: with ``appendonly yes`` and ``appendfsync always`` an
acknowledged intent survives a Redis crash; with ``everysec`` (Redis's default when the AOF
is on) up to a second of intents can be lost, and with no persistence a restart forgets them
all (the README's "Running on many machines" says what that costs).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

import orjson

from ..engine.coordinator import Verdict
from ..engine.journal import State
from ..errors import CoordinatorError
from ._quarantine import RedisQuarantine
from ._redis import Shared
from ._scripts import CLAIM, PEEK
from ._writes import Forget, Record, Writer

__all__ = ["RedisJournal", "Stored"]

#: What the journal holds of one key: (state, the intent's run id, the stored row, or None).
Stored = tuple[State, str, "dict[str, Any] | None"]


class RedisJournal:
    """A :class:`~alloy_async.engine.journal.Journal` and ``SharedJournal`` on Redis.

    One per run (``RedisCoordinator.configure`` makes it); the connection, the writer of
    queued writes and the renewal of run keys belong to the coordinator.
    """

    def __init__(
        self,
        shared: Shared,
        prefix: str,
        *,
        outcome_ttl: float | None,
        writer: Writer,
        quarantine: RedisQuarantine,
    ) -> None:
        self._shared = shared
        self._prefix = prefix
        self._ttl_ms = 0 if outcome_ttl is None else max(1, round(outcome_ttl * 1000))
        self._writer = writer
        self._quarantine = quarantine  # also the book of this process's live runs
        self.run_id = ""

    def job_key(self, key: str) -> str:
        """The Redis key of job ``key``."""
        return f"{self._prefix}job:{key}"

    def run_key(self, run_id: str) -> str:
        """The Redis key that says run ``run_id`` is alive."""
        return f"{self._prefix}run:{run_id}"

    async def open(self, run_id: str) -> None:
        """Announce the run (its intents count as in flight while it lives; it holds the
        namespace's quarantine, which it takes)."""
        self.run_id = run_id
        await self._quarantine.join(run_id)

    def lookup(self, key: str) -> tuple[State, str] | None:
        """None: a shared journal answers in :meth:`peek` and :meth:`claim` (round trips)."""
        return None

    async def peek(self, key: str) -> Verdict | None:
        """What other runs recorded of ``key``."""
        found = await self._verdict(PEEK, "reading the journal", key, [self.run_id])
        return "claimed" if found == "mine" else found  # type: ignore[return-value]

    async def claim(self, key: str) -> Verdict | None:
        """Write ``key``'s intent unless a run recorded it (atomic)."""
        args = [self.run_id, self._ttl_ms]
        return await self._verdict(CLAIM, "writing an intent", key, args)  # type: ignore[return-value]

    async def intend(self, key: str) -> None:
        """:meth:`claim`, for a caller that knows no other run can hold ``key``."""
        found = await self.claim(key)
        if found is not None:
            raise CoordinatorError(f"job {key!r} is already recorded by another run ({found})")

    def record(self, key: str, state: State) -> None:
        """Record ``key``'s outcome (queued)."""
        self._writer.queue(Record(self.job_key(key), state, self._ttl_ms))

    def forget(self, key: str) -> None:
        """Remove ``key``: it was never sent (queued)."""
        self._writer.queue(Forget(self.job_key(key), self.run_id))

    async def flush(self) -> None:
        """Wait until every queued write is on Redis."""
        await self._writer.flush()

    async def aclose(self) -> None:
        """Flush and end the run (its key goes: its leftover intents now read as a dead run's).

        Never raises for Redis: writes that failed leave intents, which a rerun reports as
        outcome-unknown (never resends), and the run key lapses on its own; the run's report
        already says the coordinator failed, and ``statistics().write_error`` says what.
        """
        if not self.run_id:
            return
        run_id, self.run_id = self.run_id, ""
        with contextlib.suppress(CoordinatorError):
            await self.flush()
        with contextlib.suppress(CoordinatorError):
            await self._quarantine.leave(run_id)

    async def save_rows(self, rows: dict[str, dict[str, Any]]) -> None:
        """Store each job's outcome line (before its outcome is recorded: never lost)."""
        if not rows:
            return
        lines = {self.job_key(key): orjson.dumps(row, default=str) for key, row in rows.items()}

        def build(pipe: Any) -> None:
            for name, line in lines.items():
                pipe.hset(name, "row", line)

        await self._shared.batch("storing outcome lines", build)

    async def stored(self, keys: Iterable[str]) -> dict[str, Stored | None]:
        """What the journal holds of each key, and whether the intent's run is alive."""
        keys = list(keys)

        def build(pipe: Any) -> None:
            for key in keys:
                pipe.hmget(self.job_key(key), ["s", "r", "row"])

        got = await self._shared.batch("reading the journal", build)
        out: dict[str, Stored | None] = {}
        for key, (state, run, row) in zip(keys, got, strict=True):
            if state is None:
                out[key] = None
                continue
            out[key] = (
                state.decode(),
                run.decode() if run else "",
                orjson.loads(row) if row else None,
            )
        return out

    async def alive(self, run_ids: Iterable[str]) -> set[str]:
        """Which of these runs are alive."""
        ids = [r for r in set(run_ids) if r]
        if not ids:
            return set()

        def build(pipe: Any) -> None:
            for run_id in ids:
                pipe.exists(self.run_key(run_id))

        got = await self._shared.batch("reading run keys", build)
        return {run_id for run_id, n in zip(ids, got, strict=True) if n}

    async def _verdict(self, source: str, what: str, key: str, args: list[Any]) -> str | None:
        script = self._shared.script(source)
        keys = [self.job_key(key), self._prefix + "run:"]
        found = await self._shared.call(what, script, keys, args)
        return None if found is None else found.decode()
