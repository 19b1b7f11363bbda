"""Cancellation and lifecycle: a large run cancelled at random points leaves nothing behind.

Over many seeds an ``execute_many`` run is stopped at a random moment, in a random way (the
consumer breaks out, the consuming task is cancelled, or ``run.aclose()`` is called). After the
stop: no task of the run is left, nothing is in flight at the server, nothing more is executed,
every job taken from the input is accounted for exactly once, and every side effect that
happened is in the checkpoint journal as succeeded or outcome-unknown (so a rerun never repeats
it). Most seeds run on virtual time against FakeAlloy; a few run over real HTTP against the
sandbox with the real aiohttp transport, and then also check that the connection pool is closed.
"""

from __future__ import annotations

import asyncio
import gc
import random
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alloy_async import (
    AlloyClient,
    AlloyError,
    APIConnectionError,
    ConfigurationError,
    RetryPolicy,
)
from alloy_async.journal import SqliteJournal, read_journal
from alloy_async.limiters import AdaptiveLimiter
from alloy_async.models import ExecuteJob, JobOutcome
from alloy_async.sandbox import SandboxServer
from alloy_async.testing import FakeAlloy, FaultPlan
from alloy_async.transports import AiohttpTransport

VIRTUAL_SEEDS = 30
REAL_SEEDS = 4
N_JOBS = 2_000
#: How long a consumer may take to leave its loop after ``run.aclose()`` from another task.
ACLOSE_BOUND = 30.0


def _say(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():
        print(f"\n[reliability] {text}")


class _Source:
    """The jobs of one run, counting how many were taken from it."""

    def __init__(self, creds: dict[str, str], n: int) -> None:
        self.creds = creds
        self.n = n
        self.taken = 0

    def __iter__(self) -> Iterator[ExecuteJob]:
        users = list(self.creds)
        for i in range(self.n):
            self.taken += 1
            user = users[i % len(users)]
            yield ExecuteJob(
                connector_id="slack",
                action_id="chat_postMessage",
                credential_id=self.creds[user],
                user_id=user,
                request_body={"channel": "C", "text": f"job-{i}"},
                key=f"job-{i}",
            )


def _setup(fake: FakeAlloy, users: int) -> dict[str, str]:
    creds = {}
    for i in range(users):
        user = fake.add_user(f"c{i}@example.com")
        creds[user] = fake.add_credential(user, "slack")
    return creds


async def _stop_at_random(run: Any, rng: random.Random, mode: str, at: float) -> list[JobOutcome]:
    """Consume ``run`` and stop it at ``at`` seconds (or after some outcomes) in ``mode``."""
    outcomes: list[JobOutcome] = []
    if mode == "break":
        limit = rng.randrange(1, 400)
        async for outcome in run:
            outcomes.append(outcome)
            if len(outcomes) >= limit:
                break
        await asyncio.sleep(0)  # the abandoned generator is finalised on the next turns
        await run.aclose()
        return outcomes

    running = asyncio.Event()

    async def consume() -> None:
        async for outcome in run:
            outcomes.append(outcome)
            running.set()

    consumer = asyncio.create_task(consume())
    # ``at`` counts from the first outcome: the run has started (its journal is open, which
    # takes real time in a thread while virtual time would jump past any ``at``).
    first = asyncio.create_task(running.wait())
    await asyncio.wait({consumer, first}, return_when=asyncio.FIRST_COMPLETED)
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    assert running.is_set(), f"the run ended without an outcome: {consumer}"
    await asyncio.sleep(at)
    assert not consumer.done(), f"the run ended by itself before {at:.2f} s: nothing to stop"
    if mode == "cancel":
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
    else:  # aclose from outside while the consumer is waiting
        await run.aclose()
        # aclose() alone must end the consumer's loop: nothing cancels it. The bound only keeps
        # a regression from hanging the test; everything of the run already ended in aclose(),
        # so a woken consumer needs a few loop turns (on virtual time the bound costs nothing).
        await asyncio.wait({consumer}, timeout=ACLOSE_BOUND)
        if not consumer.done():
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)
            pytest.fail(
                f"aclose() from another task did not end the consumer's `async for` within "
                f"{ACLOSE_BOUND} s: it still waits for outcomes of a closed run"
            )
        assert consumer.exception() is None  # the loop ended normally, not by an error
    return outcomes


def _journal(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    return dict(read_journal(path))


def _judge(
    fake: FakeAlloy, run: Any, source: _Source, outcomes: list[JobOutcome], journal: dict[str, str]
) -> None:
    """The invariants every stopped run must keep."""
    report = run.report
    executed = Counter(str(e.request_body["text"]) for e in fake.executions)
    assert not [k for k, n in executed.items() if n > 1], "a job was executed twice"
    # Every side effect is on record as succeeded or outcome-unknown: a rerun never repeats it.
    for key in executed:
        assert journal.get(key) in ("succeeded", "outcome_unknown"), key
    # What was yielded as a success really ran, once.
    assert all(executed[o.job.key or ""] == 1 for o in outcomes if o.ok)
    # Every job taken from the input is accounted for exactly once.
    assert report.finished + report.not_dispatched == source.taken, report
    assert report.finished >= len(outcomes)
    assert report.stopped_early


@pytest.mark.virtual_time
async def test_cancel_at_random_points_virtual_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Many seeds, each stopping a 2,000-job run (with faults) at a random point and way.

    Catches: ``run.aclose()`` from another task not ending the consumer's ``async for``."""
    modes: Counter[str] = Counter()
    stopped_in_flight = 0
    for seed in range(VIRTUAL_SEEDS):
        rng = random.Random(seed)
        plan = FaultPlan(
            rates={"429": 0.05, "503": 0.03, "reset_after": 0.02, "slow": 0.05},
            seed=seed,
            retry_after="0.5",
            retry_after_share=0.5,
            routes=frozenset({"execute"}),
        )
        fake = FakeAlloy(seed=seed, faults=plan, latency=rng.uniform(0.05, 0.5))
        source = _Source(_setup(fake, rng.randrange(1, 30)), N_JOBS)
        journal_path = tmp_path / f"journal-{seed}.jsonl"
        before = asyncio.all_tasks()
        mode = rng.choice(["break", "cancel", "aclose"])
        modes[mode] += 1
        async with fake.client(retry=RetryPolicy(max_retries=2, backoff_base=0.1)) as alloy:
            run = alloy.actions.execute_many(
                source,
                concurrency=rng.choice([1, 4, 16, 64]),
                per_user=rng.choice([None, 1, 3]),
                checkpoint=str(journal_path),
                adaptive=AdaptiveLimiter(64, default_cooldown=0.2),
            )
            outcomes = await _stop_at_random(run, rng, mode, rng.uniform(0.0, 8.0))
            assert asyncio.all_tasks() == before, f"seed {seed} ({mode}) left tasks behind"
            assert fake.in_flight == 0
            served, ran = len(fake.requests), len(fake.executions)
            await asyncio.sleep(60)  # nothing is dispatched after the stop
            assert (len(fake.requests), len(fake.executions)) == (served, ran)
        _judge(fake, run, source, outcomes, _journal(journal_path))
        stopped_in_flight += run.report.by_error.get("OutcomeUnknownError", 0)
    assert set(modes) == {"break", "cancel", "aclose"}
    _say(
        capsys,
        f"cancellation: {VIRTUAL_SEEDS} virtual-time seeds of {N_JOBS} jobs stopped at random "
        f"({dict(modes)}), {stopped_in_flight} jobs stopped in flight or unknown",
    )


@pytest.mark.virtual_time
async def test_aclose_from_another_task_ends_the_consumers_loop() -> None:
    """``await run.aclose()`` from a shutdown handler ends the consumer's ``async for``."""
    fake = FakeAlloy(latency=1.0)
    source = _Source(_setup(fake, 3), 500)
    before = asyncio.all_tasks()
    async with fake.client() as alloy:
        run = alloy.actions.execute_many(source, concurrency=4)
        seen: list[JobOutcome] = []

        async def consume() -> None:
            async for outcome in run:
                seen.append(outcome)

        consumer = asyncio.create_task(consume())
        await asyncio.sleep(2.5)
        await run.aclose()
        done, _ = await asyncio.wait({consumer}, timeout=10)
        if not done:
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)
        assert done, "the consumer still waits for outcomes of a closed run"
    assert asyncio.all_tasks() == before
    assert run.report.stopped_early and len(seen) == 8


class _GatedJournal(SqliteJournal):
    """A journal whose opening waits for ``gate``: the run is caught while it starts."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.opening = asyncio.Event()
        self.gate = asyncio.Event()

    async def open(self, run_id: str) -> None:
        self.opening.set()
        await self.gate.wait()
        await super().open(run_id)


async def test_aclose_while_the_journal_opens_ends_the_consumer_and_frees_the_lock(
    tmp_path: Path,
) -> None:
    """``run.aclose()`` from another task while the consumer is still opening the checkpoint
    journal: the consumer's loop ends, nothing is sent, and aclose() returns only once the
    journal is closed again and its lock free.

    Catches: a run closed while it started going on to start (workers, a consumer waiting
    forever, the journal lock held after aclose returned)."""
    fake = FakeAlloy(latency=0.01)
    creds = _setup(fake, 2)
    journal = _GatedJournal(tmp_path / "run.journal")
    async with fake.client() as alloy:
        run = alloy.actions.execute_many(_Source(creds, 50), concurrency=4, checkpoint=journal)
        seen: list[JobOutcome] = []

        async def consume() -> None:
            async for outcome in run:
                seen.append(outcome)

        consumer = asyncio.create_task(consume())
        await journal.opening.wait()  # the consumer is inside the run's start, opening
        closing = asyncio.create_task(run.aclose())
        for _ in range(10):
            await asyncio.sleep(0)
        assert not closing.done(), "aclose() returned while the journal was still opening"
        journal.gate.set()
        done, _ = await asyncio.wait({consumer, closing}, timeout=ACLOSE_BOUND)
        for task in {consumer, closing} - done:
            task.cancel()
        await asyncio.gather(consumer, closing, return_exceptions=True)
        assert done == {consumer, closing}, f"still waiting after {ACLOSE_BOUND} s: {done}"
        assert consumer.exception() is None and closing.exception() is None
        assert "closed" in repr(journal), journal
    second = SqliteJournal(tmp_path / "run.journal")
    await second.open("next-run")  # the lock is free: a rerun may start
    await second.aclose()
    assert seen == [] and fake.requests == [] and fake.executions == []
    assert run.report.stopped_early


async def _wait_idle(fake: FakeAlloy) -> None:
    for _ in range(500):
        if fake.in_flight == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the sandbox still has requests in flight")


async def test_cancel_at_random_points_real_http(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A few seeds over real HTTP: also the aiohttp session and connector end closed.

    Catches: ``run.aclose()`` from another task not ending the consumer's ``async for``."""
    for seed in range(REAL_SEEDS):
        rng = random.Random(1000 + seed)
        plan = FaultPlan(rates={"reset_after": 0.02, "503": 0.03}, seed=seed, retry_after="0.01")
        fake = FakeAlloy(seed=seed, faults=plan, latency=0.01)
        source = _Source(_setup(fake, 8), N_JOBS)
        journal_path = tmp_path / f"journal-{seed}.jsonl"
        mode = ["break", "cancel", "aclose", "cancel"][seed]
        before = asyncio.all_tasks()
        async with SandboxServer(fake) as server:
            transport = AiohttpTransport(max_connections=16)
            alloy = AlloyClient(fake.api_key, base_url=server.url, transport=transport)
            run = alloy.actions.execute_many(
                source, concurrency=16, per_user=4, checkpoint=str(journal_path)
            )
            outcomes = await _stop_at_random(run, rng, mode, rng.uniform(0.05, 0.4))
            session = transport._session
            assert session is not None
            connector = session.connector
            await alloy.aclose()
            await transport.aclose()
            assert session.closed and (connector is None or connector.closed)
            await _wait_idle(fake)  # handlers of requests cut mid-way finish server-side
            ran = len(fake.executions)
            await asyncio.sleep(0.1)
            assert len(fake.executions) == ran
        _judge(fake, run, source, outcomes, _journal(journal_path))
        gc.collect()  # an unclosed session would warn here (warnings are errors)
        await asyncio.sleep(0)
        assert asyncio.all_tasks() == before
    _say(capsys, f"cancellation: {REAL_SEEDS} real-HTTP seeds stopped at random, pool closed")


@pytest.mark.parametrize(
    "pool",
    [
        32,
        4,
    ],
)
async def test_aclose_while_calls_are_in_flight_ends_them_with_sdk_errors(pool: int) -> None:
    """Closing the client under load: every call ends with an AlloyError (never a bare
    CancelledError in a task nobody cancelled), none hangs, later calls are refused."""
    fake = FakeAlloy(latency=0.5)
    async with SandboxServer(fake) as server:
        alloy = AlloyClient(
            fake.api_key,
            base_url=server.url,
            max_connections=pool,
            retry=RetryPolicy(max_retries=0),
        )
        calls = [asyncio.create_task(alloy.request("GET", "/connectors")) for _ in range(20)]
        await asyncio.sleep(0.1)  # all on the wire, or 4 on the wire and 16 waiting for a slot
        await alloy.aclose()
        results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 5)
        assert all(isinstance(r, AlloyError) for r in results), [type(r) for r in results]
        with pytest.raises(ConfigurationError, match="closed"):
            await alloy.request("GET", "/connectors")
        transport = alloy.transport
        assert isinstance(transport, AiohttpTransport) and transport._session is None
        await _wait_idle(fake)


async def test_closed_client_refuses_every_kind_of_work() -> None:
    """Views, services, paginators and execute_many of a closed client all say "closed"."""
    fake = FakeAlloy()
    user = fake.add_user("x@example.com")
    cred = fake.add_credential(user, "slack")
    alloy = fake.client()
    view = alloy.for_user(user).with_options(timeout=3)
    await alloy.aclose()
    for call in (
        view.users.list(),
        alloy.connectors.list(),
        view.actions.execute("slack", "chat_postMessage", credential_id=cred),
        alloy.users.token(user),
    ):
        with pytest.raises(ConfigurationError, match="closed"):
            await call
    with pytest.raises(ConfigurationError, match="closed"):
        async for _ in alloy.users.list():
            pass
    job = {"connectorId": "slack", "actionId": "chat_postMessage", "credentialId": cred}
    with pytest.raises(ConfigurationError, match="closed"):
        alloy.actions.execute_many([job] * 1000)
    assert fake.requests == []


async def test_closed_real_transport_creates_no_new_session() -> None:
    """After aclose the aiohttp transport refuses work without opening a new session."""
    transport = AiohttpTransport()
    async with AlloyClient("k", base_url="http://127.0.0.1:9", transport=transport) as alloy:
        pass
    await transport.aclose()
    with pytest.raises(ConfigurationError, match="closed"):
        await alloy.request("GET", "/x")
    with pytest.raises(ConfigurationError, match="closed"):
        await transport.send(alloy._requester.build("GET", "/x"))
    assert transport._session is None


def test_real_transport_from_a_second_loop_is_a_clear_error() -> None:
    """The aiohttp session is bound to its first loop: another loop (same or other thread) gets
    ConfigurationError, never aiohttp's "attached to a different loop", a hang or a leak."""
    fake = FakeAlloy()
    transport = AiohttpTransport()
    first_loop = asyncio.new_event_loop()
    try:
        server = SandboxServer(fake)
        url = first_loop.run_until_complete(server.start())
        alloy = AlloyClient(fake.api_key, base_url=url, transport=transport)
        first_loop.run_until_complete(alloy.request("GET", "/connectors"))
        # A second client on the same transport, first used in another loop: the transport's
        # own check answers (the client's check passes, it has never run).
        other = AlloyClient(fake.api_key, base_url=url, transport=transport)
        for client in (alloy, other):
            with pytest.raises(ConfigurationError, match="event loop"):
                asyncio.run(client.request("GET", "/connectors"))
        errors: list[BaseException] = []

        def in_thread() -> None:
            try:
                asyncio.run(
                    AlloyClient(fake.api_key, base_url=url, transport=transport).request(
                        "GET", "/connectors"
                    )
                )
            except BaseException as exc:
                errors.append(exc)

        t = threading.Thread(target=in_thread)
        t.start()
        t.join(10)
        assert len(errors) == 1 and isinstance(errors[0], ConfigurationError), errors
        # The first loop still works and closes everything cleanly.
        first_loop.run_until_complete(alloy.request("GET", "/connectors"))
        first_loop.run_until_complete(transport.aclose())
        first_loop.run_until_complete(server.close())
    finally:
        first_loop.close()
    assert fake.stats()["requests"] == 2


async def test_execute_many_from_a_second_loop_is_refused_at_once() -> None:
    """execute_many on a client bound to another loop fails at once, not once per job."""
    fake = FakeAlloy()
    user = fake.add_user("x@example.com")
    cred = fake.add_credential(user, "slack")
    alloy = fake.client()

    def bind_elsewhere() -> None:
        asyncio.run(alloy.request("GET", "/connectors"))

    t = threading.Thread(target=bind_elsewhere)
    t.start()
    t.join(10)
    job = {"connectorId": "slack", "actionId": "chat_postMessage", "credentialId": cred}
    with pytest.raises(ConfigurationError, match="event loop"):
        alloy.actions.execute_many([job] * 1000)


async def test_connection_refused_mid_run_is_never_outcome_unknown() -> None:
    """A server that vanishes mid-run: jobs end APIConnectionError (not sent), not unknown."""
    fake = FakeAlloy(latency=0.01)
    creds = _setup(fake, 4)
    server = SandboxServer(fake)
    await server.start()
    url = server.url
    async with AlloyClient(
        fake.api_key,
        base_url=url,
        retry=RetryPolicy(max_retries=1, backoff_base=0.01),
        max_connections=4,
    ) as alloy:
        await alloy.connectors.list()
        await server.close()
        run = alloy.actions.execute_many(_Source(creds, 40), concurrency=4)
        outcomes = [o async for o in run]
    assert len(outcomes) == 40
    assert all(isinstance(o.error, APIConnectionError) for o in outcomes)
    assert not [o for o in outcomes if type(o.error).__name__ == "OutcomeUnknownError"]
    assert fake.executions == []
