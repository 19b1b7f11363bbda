"""``on_outcome``: a sink that runs before the journal says a job is done (issue 22, item 9).

A library user writing outcomes to a buffered file lost 45 of 30,323 lines to a SIGKILL while
the journal called those jobs done: the journal marks a job done once the consumer asks for the
next outcome, and the user's line was still in a buffer. ``on_outcome`` is the durable way: the
journal is told a job is done only after the sink returned; a sink that raises stops the run and
leaves the job's intent (a rerun reports it outcome-unknown and never sends it again). What ran
is the server's record.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from bounds import within

from alloy_async.errors import OutcomeUnknownError
from alloy_async.journal import SqliteJournal, read_journal
from alloy_async.models import ExecuteJob, JobOutcome
from alloy_async.testing import FakeAlloy


class _Told(SqliteJournal):
    """A journal that notes when it is told a job's outcome (before its own commit)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.told: set[str] = set()

    def record(self, key: str, state: Any) -> None:
        self.told.add(key)
        super().record(key, state)


def _setup(fake: FakeAlloy, n: int) -> list[ExecuteJob]:
    user = fake.add_user("a@example.com")
    cred = fake.add_credential(user, "slack")
    return [
        ExecuteJob("slack", "chat_postMessage", cred, user, {"channel": "C", "text": f"k{i}"},
                   key=f"k{i}")
        for i in range(n)
    ]  # fmt: skip


async def _drain(run: Any) -> None:
    async with run:
        async for _ in run:
            pass


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_the_journal_hears_of_a_job_only_after_the_sink_returned(
    kind: str, tmp_path: Path
) -> None:
    """Catches: the outcome journaled as done before ``on_outcome`` ran (or returned)."""
    fake = FakeAlloy(latency=0.001)
    jobs = _setup(fake, 60)
    journal = _Told(tmp_path / "wal.db")
    sunk: list[str] = []
    early: list[str] = []

    def note(outcome: JobOutcome) -> None:
        key = outcome.job.key
        assert key is not None
        if key in journal.told:
            early.append(key)
        sunk.append(key)

    async def note_async(outcome: JobOutcome) -> None:
        note(outcome)

    sink = note if kind == "sync" else note_async
    consumed: list[str] = []
    async with fake.client() as alloy:
        run = alloy.actions.execute_many(jobs, concurrency=8, checkpoint=journal, on_outcome=sink)
        async with run:
            async for outcome in run:
                assert outcome.job.key == sunk[-1]  # the sink had it before the consumer
                consumed.append(outcome.job.key or "")
    assert early == []
    assert sorted(sunk) == sorted(consumed) == sorted(j.key or "" for j in jobs)
    assert dict(read_journal(tmp_path / "wal.db")) == {j.key: "succeeded" for j in jobs}


async def test_a_sink_that_raises_stops_the_run_and_its_job_is_never_sent_again(
    tmp_path: Path,
) -> None:
    """Catches: a job whose sink failed journaled as done (its line is lost for good) or as
    never sent (the rerun sends it twice)."""
    fake = FakeAlloy(latency=0.001)
    jobs = _setup(fake, 40)
    checkpoint = tmp_path / "wal.db"
    failed_on: list[str] = []

    def sink(outcome: JobOutcome) -> None:
        if len(failed_on) == 0 and outcome.job.key == "k5":
            failed_on.append("k5")
            raise OSError("disk full")

    async with fake.client() as alloy:
        run = alloy.actions.execute_many(
            jobs, concurrency=1, checkpoint=checkpoint, on_outcome=sink
        )
        with pytest.raises(OSError, match="disk full"):
            await _drain(run)
        assert dict(read_journal(checkpoint)).get("k5") == "intent"
        rerun = alloy.actions.execute_many(jobs, concurrency=4, checkpoint=checkpoint)
        async with rerun:
            again = {o.job.key: o async for o in rerun}
    ran = Counter(e.request_body["text"] for e in fake.executions)
    assert max(ran.values()) == 1 and set(ran) == {j.key for j in jobs}  # none twice
    assert isinstance(again["k5"].error, OutcomeUnknownError)  # reported, not sent again


@pytest.mark.parametrize("how", ["raise", "aclose"])
async def test_outcomes_the_sink_never_had_are_not_journaled_as_done(
    how: str, tmp_path: Path
) -> None:
    """The sink fails on its 2nd outcome while more wait in the channel, or the run is closed
    from another task while the sink works: only what the sink returned from is journaled as
    succeeded; the rest keep their intents or are outcome-unknown (a rerun reports them,
    never sends them). Catches: a close that journals as done the outcome the sink is still
    writing, or the ones it never saw."""
    fake = FakeAlloy(latency=0.001)
    jobs = _setup(fake, 30)
    checkpoint = tmp_path / "wal.db"
    sunk: list[str] = []
    started = asyncio.Event()
    never = asyncio.Event()

    async def sink(outcome: JobOutcome) -> None:
        if len(sunk) == 1:
            if how == "raise":
                raise OSError("disk full")
            started.set()
            await never.wait()  # a slow commit, interrupted by the close
        sunk.append(outcome.job.key or "")

    async with fake.client() as alloy:
        run = alloy.actions.execute_many(
            jobs, concurrency=8, checkpoint=checkpoint, on_outcome=sink
        )
        if how == "raise":
            with pytest.raises(OSError, match="disk full"):
                await _drain(run)
        else:
            consumer = asyncio.create_task(_drain(run))
            await started.wait()
            await run.aclose()  # while the sink is still at work on its 2nd outcome
            never.set()  # then the sink finishes: its outcome was not done when the run closed
            await within(30, "the consumer after aclose()", consumer)
    states = dict(read_journal(checkpoint))
    done = {k for k, state in states.items() if state in ("succeeded", "failed")}
    assert done <= set(sunk), (how, {k: states[k] for k in sorted(done - set(sunk))})
