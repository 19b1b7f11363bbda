"""Issue 9: never twice, never lost — the engine side (duplicates, stops, caps, the journal).

Every "executed" count here is the server's own record (``FakeAlloy.executions``), never the
client's report. The signal tests (SIGKILL, SIGTERM, Ctrl-C) on real processes are in
``test_kill.py`` and ``test_cli_signals.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from alloy_async.errors import (
    InvalidRequestError,
    JournalError,
    JournalLockedError,
    NotFoundError,
    OutcomeUnknownError,
)
from alloy_async.journal import SqliteJournal, read_journal
from alloy_async.models import ExecuteJob, JobOutcome
from alloy_async.testing import FakeAlloy, Fault
from alloy_async.transports import Request, Response, Transport


def _setup(fake: FakeAlloy, users: int = 1) -> list[tuple[str, str]]:
    out = []
    for i in range(users):
        user = fake.add_user(f"u{i}@example.com")
        out.append((user, fake.add_credential(user, "slack")))
    return out


def _job(user: str, cred: str, key: str, *, with_user: bool = True) -> ExecuteJob:
    return ExecuteJob(
        "slack",
        "chat_postMessage",
        cred,
        user if with_user else None,
        {"channel": "C", "text": key},
        key=key,
    )


def _executed(fake: FakeAlloy) -> Counter[str]:
    return Counter(str(e.request_body["text"]) for e in fake.executions)


async def _collect(run: Any) -> list[JobOutcome]:
    async with run:
        return [o async for o in run]


# -- item 5: the same key twice -------------------------------------------------------------


@pytest.mark.virtual_time
async def test_the_same_key_twice_runs_once_in_one_run_and_across_runs(tmp_path: Path) -> None:
    fake = FakeAlloy(latency=0.05)
    [(user, cred)] = _setup(fake)
    keys = ["a", "b", "a", "c", "b", "a"]  # duplicates near (in flight) and far (finished)
    skips: list[tuple[str | None, str]] = []
    journal = tmp_path / "run.db"
    async with fake.client() as alloy:
        run = alloy.actions.execute_many(
            [_job(user, cred, k) for k in keys],
            concurrency=4,
            checkpoint=journal,
            on_skip=lambda job, why: skips.append((job.key, why)),
        )
        first = await _collect(run)
        assert sorted(o.job.key or "" for o in first) == ["a", "b", "c"]
        assert run.report.duplicates == 3 and run.report.skipped == 0
        assert sorted(skips) == [("a", "duplicate"), ("a", "duplicate"), ("b", "duplicate")]
        # a second run over the same keys: each is skipped as done by the first run
        skips.clear()
        run2 = alloy.actions.execute_many(
            [_job(user, cred, k) for k in keys],
            checkpoint=journal,
            on_skip=lambda job, why: skips.append((job.key, why)),
        )
        assert await _collect(run2) == []
        assert run2.report.skipped == 6 and run2.report.duplicates == 0
        assert {why for _, why in skips} == {"done"}
    assert _executed(fake) == {"a": 1, "b": 1, "c": 1}


@pytest.mark.virtual_time
async def test_a_duplicate_of_a_job_still_in_flight_is_not_sent(tmp_path: Path) -> None:
    fake = FakeAlloy(latency=5.0)  # the first "k" is still in flight when the second arrives
    [(user, cred)] = _setup(fake)
    async with fake.client() as alloy:
        run = alloy.actions.execute_many(
            [_job(user, cred, "k"), _job(user, cred, "other"), _job(user, cred, "k")],
            concurrency=3,
            checkpoint=tmp_path / "j.db",
        )
        outcomes = await _collect(run)
    assert len(outcomes) == 2 and run.report.duplicates == 1
    assert _executed(fake) == {"k": 1, "other": 1}


# -- item 4: one run per journal ------------------------------------------------------------


async def test_a_second_run_on_a_held_journal_is_refused_naming_the_holder(
    tmp_path: Path,
) -> None:
    fake = FakeAlloy(latency=0.2)
    [(user, cred)] = _setup(fake)
    path = tmp_path / "held.db"
    async with fake.client() as alloy:
        first = alloy.actions.execute_many(
            [_job(user, cred, f"k{i}") for i in range(20)], concurrency=2, checkpoint=path
        )
        async with first:
            second = alloy.actions.execute_many(
                [_job(user, cred, f"k{i}") for i in range(20)], checkpoint=path
            )
            with pytest.raises(JournalLockedError, match="in use by pid") as info:
                await _collect(second)
            assert info.value.holder.startswith("pid ") and info.value.path == str(path)
            outcomes = [o async for o in first]
        assert len(outcomes) == 20
        # the lock goes with the run: a third run may take the journal (and skips all)
        third = alloy.actions.execute_many(
            [_job(user, cred, f"k{i}") for i in range(20)], checkpoint=path
        )
        assert await _collect(third) == [] and third.report.skipped == 20
    assert set(_executed(fake).values()) == {1}


# -- item 1 (in process): an intent without an outcome is never sent again -------------------


async def test_an_intent_left_by_a_dead_run_is_reported_unknown_and_not_sent(
    tmp_path: Path,
) -> None:
    path = tmp_path / "dead.db"
    # What a SIGKILLed run leaves: intents committed, no outcome (the process died mid-call).
    journal = SqliteJournal(path)
    await journal.open("dead-run")
    for key in ("k1", "k3"):
        await journal.intend(key)
    journal.record("k3", "succeeded")
    await journal.aclose()
    fake = FakeAlloy()
    [(user, cred)] = _setup(fake)
    async with fake.client() as alloy:
        run = alloy.actions.execute_many(
            [_job(user, cred, f"k{i}") for i in range(5)], checkpoint=path
        )
        outcomes = {o.job.key: o for o in await _collect(run)}
    assert sorted(outcomes) == ["k0", "k1", "k2", "k4"]  # k3 finished in the dead run
    assert isinstance(outcomes["k1"].error, OutcomeUnknownError)
    assert _executed(fake) == {"k0": 1, "k2": 1, "k4": 1}  # k1 was not sent again
    assert dict(read_journal(path)) == {
        "k0": "succeeded",
        "k1": "outcome_unknown",
        "k2": "succeeded",
        "k3": "succeeded",
        "k4": "succeeded",
    }


class _JournalProbe:
    """A transport that reads the journal file, as another process would, at each ``send()``.

    It opens its own read-only SQLite connection to the file (not the journal's overlay or its
    connections) the moment the engine hands it a request, before passing the request on.
    """

    def __init__(self, inner: Transport, path: Path) -> None:
        self.inner = inner
        self.path = path
        self.seen: dict[str, list[str | None]] = {}

    async def send(self, request: Request) -> Response:
        if request.method == "POST" and request.body is not None:
            key = json.loads(request.body)["requestBody"]["text"]
            uri = f"file:{self.path}?mode=ro"
            db = sqlite3.connect(uri, uri=True)
            try:
                row = db.execute("SELECT state FROM jobs WHERE key = ?", (key,)).fetchone()
            finally:
                db.close()
            self.seen.setdefault(key, []).append(None if row is None else row[0])
        return await self.inner.send(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_the_intent_is_durable_before_the_request_reaches_the_transport(
    tmp_path: Path,
) -> None:
    """Catches: the engine writing a job's intent without waiting for its commit (not awaited)."""
    fake = FakeAlloy(latency=0.01)
    [(user, cred)] = _setup(fake)
    path = tmp_path / "wal.db"
    probe = _JournalProbe(fake.transport(), path)
    async with fake.client(transport=probe) as alloy:
        run = alloy.actions.execute_many(
            [_job(user, cred, f"job-{i:03}") for i in range(200)],
            concurrency=16,
            checkpoint=path,
        )
        outcomes = await _collect(run)
    assert len(outcomes) == 200 and all(o.ok for o in outcomes)
    assert len(fake.executions) == 200
    # Every job's intent was committed (readable from another connection) when its request
    # reached the transport.
    assert sorted(probe.seen) == sorted(f"job-{i:03}" for i in range(200))
    not_durable = {k: v for k, v in probe.seen.items() if v != ["intent"]}
    assert not not_durable, (
        f"{len(not_durable)} of 200 sent without a committed intent "
        f"(key: journal state at each send): {dict(sorted(not_durable.items())[:5])}"
    )


# -- item 6: stops are obeyed by workers waiting for a rate permit --------------------------


@pytest.mark.virtual_time
async def test_deadline_interrupts_workers_waiting_for_a_rate_permit() -> None:
    fake = FakeAlloy(latency=0.01)
    [(user, cred)] = _setup(fake)
    loop = asyncio.get_running_loop()
    async with fake.client() as alloy:
        start = loop.time()
        run = alloy.actions.execute_many(
            [_job(user, cred, f"k{i}") for i in range(10)], rate=0.5, deadline=3, concurrency=4
        )
        outcomes = await _collect(run)
        ended = loop.time() - start
    sent_at = sorted(r.at - start for r in fake.requests if r.route == "execute")
    assert sent_at and max(sent_at) < 3.0, sent_at  # nothing sent after the deadline
    assert ended < 3.5, ended  # the run ended at its deadline, not when a permit came
    assert len(outcomes) == len(fake.executions) == len(sent_at)
    assert run.report.stopped_early and "deadline" in (run.report.stop_reason or "")
    assert run.report.not_dispatched == 10 - len(outcomes)


@pytest.mark.virtual_time
async def test_stop_when_interrupts_workers_waiting_for_a_rate_permit() -> None:
    fake = FakeAlloy(latency=0.01)
    [(user, cred)] = _setup(fake)
    async with fake.client() as alloy:
        run = alloy.actions.execute_many(
            [_job(user, cred, f"k{i}") for i in range(10)],
            rate=0.5,
            concurrency=8,
            stop_when=lambda report: report.succeeded >= 2,
        )
        outcomes = await _collect(run)
        await asyncio.sleep(30)  # a worker that ignored the stop would send by now
    assert len(outcomes) == 2
    assert len(fake.executions) == 2


class _Arrivals(FakeAlloy):
    """Sets ``arrived`` once ``count`` requests have reached the server."""

    def __init__(self, *, count: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.count = count
        self.posts = 0
        self.arrived = asyncio.Event()

    async def process(self, request: Any) -> Any:
        if request.method == "POST":
            self.posts += 1
            if self.posts == self.count:
                self.arrived.set()
        return await super().process(request)


async def test_stop_with_grace_gives_up_in_flight_calls_as_outcomes(tmp_path: Path) -> None:
    path = tmp_path / "grace.db"
    # A stop from another task (a signal handler) while the consumer waits for outcomes.
    fake = _Arrivals(latency=60.0, count=8)  # every call outlasts the grace
    [(user, cred)] = _setup(fake)
    async with fake.client() as alloy:
        run = alloy.actions.execute_many(
            [_job(user, cred, f"k{i}") for i in range(50)], concurrency=8, checkpoint=path
        )

        async def on_signal() -> None:
            await fake.arrived.wait()  # 8 requests are in flight
            run.stop("SIGTERM received", grace=0.2)

        stopper = asyncio.create_task(on_signal())
        got = await _collect(run)
        await stopper
    assert len(got) == 8 and fake.posts == 8  # the 8 in flight, nothing more
    assert all(isinstance(o.error, OutcomeUnknownError) for o in got)
    assert run.report.stop_reason == "SIGTERM received"
    assert run.report.outcome_unknown == 8 and run.report.not_dispatched == 42
    states = dict(read_journal(path))
    assert len(states) == 8 and set(states.values()) == {"outcome_unknown"}


# -- item 7: caps apply to the effective user; 0 is refused ---------------------------------


@pytest.mark.virtual_time
async def test_per_user_applies_to_the_clients_user() -> None:
    fake = FakeAlloy(latency=0.5)
    [(user, cred)] = _setup(fake)
    async with fake.client() as alloy:
        run = alloy.for_user(user).actions.execute_many(
            [_job(user, cred, f"k{i}", with_user=False) for i in range(40)],
            concurrency=16,
            per_user=2,
        )
        outcomes = await _collect(run)
    assert len(outcomes) == 40 and all(o.ok for o in outcomes)
    assert fake.peak_by_user[user] == 2


@pytest.mark.parametrize("name", ["per_user", "per_connector", "concurrency"])
@pytest.mark.parametrize("value", [0, -1, True, 1.5])
async def test_a_cap_of_zero_or_nonsense_is_refused_naming_it(name: str, value: Any) -> None:
    fake = FakeAlloy()
    async with fake.client() as alloy:
        with pytest.raises(InvalidRequestError) as info:
            alloy.actions.execute_many([], **{name: value})
    assert info.value.field == name


# -- item 13: the catalog's fan-out leaves nothing running ----------------------------------


async def test_catalog_cancels_its_other_calls_when_one_fails() -> None:
    fake = FakeAlloy(latency=0.05)
    before = asyncio.all_tasks()
    async with fake.client() as alloy:
        # the first connector fails at once; the others are still in flight (5 s)
        fake.script("connectors.resources", Fault(status=404), *[Fault(delay=5.0)] * 8)
        with pytest.raises(NotFoundError):
            await alloy.actions.catalog(concurrency=8).to_list()
        # nothing of the catalog is still running once the error has reached the caller
        assert asyncio.all_tasks() == before
        assert fake.in_flight == 0


class _FailingJournal(SqliteJournal):
    """A journal whose disk fills up after ``ok`` intents."""

    def __init__(self, path: Path, ok: int) -> None:
        super().__init__(path)
        self.ok = ok
        self.intended: list[str] = []

    async def intend(self, key: str) -> None:
        if len(self.intended) >= self.ok:
            raise JournalError("database or disk is full")
        await super().intend(key)
        self.intended.append(key)


async def test_a_failing_journal_stops_the_run_and_nothing_is_sent_without_an_intent(
    tmp_path: Path,
) -> None:
    fake = FakeAlloy(latency=0.01)
    [(user, cred)] = _setup(fake)
    journal = _FailingJournal(tmp_path / "full.db", ok=5)
    async with fake.client() as alloy:
        run = alloy.actions.execute_many(
            [_job(user, cred, f"k{i}") for i in range(100)], concurrency=4, checkpoint=journal
        )
        outcomes = await _collect(run)
    executed = set(_executed(fake))
    assert executed and executed <= set(journal.intended)  # nothing sent without an intent
    # An intent that committed while the run stopped was never sent: it is taken back, so a
    # rerun sends that job instead of calling it outcome-unknown.
    left = dict(read_journal(tmp_path / "full.db"))
    assert {key for key, state in left.items() if state == "intent"} <= executed, left
    failed = [o for o in outcomes if isinstance(o.error, JournalError)]
    assert failed and all(not o.ok for o in failed)
    assert run.report.stopped_early and "journal" in (run.report.stop_reason or "")


# -- review findings: the journal and shutdown under stress ----------------------------------


async def test_a_key_sqlite_cannot_store_fails_its_job_and_the_run_still_ends(
    tmp_path: Path,
) -> None:
    """A lone surrogate in a key made SQLite raise a non-sqlite error in the writer thread,
    which died: the run hung in `intend()` and the lock was never released. Now such a key is
    one bad job, naming the field."""
    fake = FakeAlloy()
    [(user, cred)] = _setup(fake)
    path = tmp_path / "odd.db"
    async with fake.client() as alloy:
        run = alloy.actions.execute_many(
            [_job(user, cred, "\ud800"), _job(user, cred, "fine")], checkpoint=path
        )
        outcomes = await asyncio.wait_for(_collect(run), timeout=30)
    bad = [o.error for o in outcomes if isinstance(o.error, InvalidRequestError)]
    assert len(bad) == 1 and bad[0].field == "key"
    assert set(_executed(fake)) == {"fine"}  # the odd one was never sent
    again = SqliteJournal(path)  # the lock went with the run
    await again.open("next")
    await again.aclose()


async def test_a_cancelled_journal_close_still_releases_the_lock(tmp_path: Path) -> None:
    journal = SqliteJournal(tmp_path / "j.db")
    await journal.open("one")
    journal.record("k", "succeeded")
    closing = asyncio.create_task(journal.aclose())
    await asyncio.sleep(0)
    closing.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await closing
    other = SqliteJournal(tmp_path / "j.db")
    await asyncio.wait_for(other.open("two"), timeout=10)  # not JournalLockedError
    assert other.lookup("k") == ("succeeded", "one")
    await other.aclose()


async def test_outcomes_finished_behind_a_slow_consumer_are_journaled_at_close(
    tmp_path: Path,
) -> None:
    fake = FakeAlloy(latency=0.001)
    [(user, cred)] = _setup(fake)
    path = tmp_path / "slow.db"
    async with fake.client() as alloy:
        run = alloy.actions.execute_many(
            [_job(user, cred, f"k{i}") for i in range(20)], concurrency=2, checkpoint=path
        )
        async with run:
            async for _ in run:
                await asyncio.sleep(0.05)  # the workers fill the outcome channel meanwhile
                break
    states = dict(read_journal(path))
    assert "intent" not in states.values(), states  # every finished job has its outcome
    assert set(states) == set(_executed(fake))


async def test_an_outcome_the_consumer_failed_on_is_not_journaled_as_done(
    tmp_path: Path,
) -> None:
    fake = FakeAlloy()
    [(user, cred)] = _setup(fake)
    path = tmp_path / "raised.db"
    async with fake.client() as alloy:
        run = alloy.actions.execute_many([_job(user, cred, "only")], checkpoint=path)

        async def consume() -> None:
            async with run:
                async for _ in run:
                    raise OSError("disk full")  # e.g. writing the outcome line failed

        with pytest.raises(OSError, match="disk full"):
            await consume()
    # never "succeeded": the consumer's record of it may not exist; a rerun reports it
    # outcome-unknown (and never sends it again)
    assert dict(read_journal(path)) == {"only": "intent"}
