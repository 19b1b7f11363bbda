"""Issue 23 item "typed public options": ``actions.execute_many`` names every option it takes
(no ``**options``), forwards each one, and takes the ``burst`` docs/fanout.md documents for
``rate``.

What ran is judged by the server's record (``FakeAlloy.executions`` and their server times),
never by the client's report.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest

from alloy_async.engine import InProcessCoordinator, execute_many
from alloy_async.errors import CredentialQuarantinedError, InvalidRequestError
from alloy_async.limiters import RateLimiter
from alloy_async.models import ExecuteJob, JobOutcome
from alloy_async.services.actions import Actions
from alloy_async.testing import FakeAlloy

#: The engine's arguments the service fills in itself (not options of the public method).
_WIRED = {"execute_one", "jobs", "observer", "preflight"}


def _jobs(fake: FakeAlloy, n: int, *, keys: list[str] | None = None) -> list[ExecuteJob]:
    user = fake.add_user("u@example.com")
    cred = fake.add_credential(user, "slack")
    return [
        ExecuteJob("slack", "chat_postMessage", cred, user, {"channel": "C", "text": k}, key=k)
        for k in (keys if keys is not None else [f"k{i}" for i in range(n)])
    ]


async def _collect(run: Any) -> list[JobOutcome]:
    async with run:
        return [o async for o in run]


def test_execute_many_names_every_option_the_engine_takes() -> None:
    """Catches: ``**options: Any`` on the public method (IDEs and type checkers cannot see
    ``coordinator``, ``adaptive``, ``lookahead``, ``on_skip``, ``on_credential_error``...), or
    an option of the engine missing, renamed, or with another default or type."""
    public = inspect.signature(Actions.execute_many).parameters
    engine = inspect.signature(execute_many).parameters
    assert [p for p in public.values() if p.kind is inspect.Parameter.VAR_KEYWORD] == []
    for name, option in engine.items():
        if name in _WIRED:
            continue
        assert name in public, name
        assert public[name].kind is inspect.Parameter.KEYWORD_ONLY, name
        assert public[name].default == option.default, name
        assert public[name].annotation == option.annotation, name
    assert public["burst"].default is None and public["burst"].annotation == "int | None"


@pytest.mark.virtual_time
async def test_each_typed_option_reaches_the_run(tmp_path: Path) -> None:
    """Catches: an option the signature takes but does not hand to the engine (``scope``,
    ``on_skip``, ``on_outcome``, ``on_credential_error`` dropped on the way, so the call
    quietly does without it)."""
    fake = FakeAlloy()
    jobs = _jobs(fake, 0, keys=["a", "b", "a"])
    scoped: list[str | None] = []
    skipped: list[tuple[str | None, str]] = []
    seen: list[str | None] = []
    refused: list[str] = []
    async with fake.client() as alloy:
        run = alloy.actions.execute_many(
            jobs,
            concurrency=1,
            checkpoint=tmp_path / "run.db",  # the journal finds the duplicate
            scope=lambda job: scoped.append(job.key) or "one",
            on_skip=lambda job, why: skipped.append((job.key, why)),
            on_outcome=lambda outcome: seen.append(outcome.job.key),
            lookahead=100,
            max_requeues=1,
            adaptive=False,
        )
        outcomes = await _collect(run)
    assert sorted(o.job.key or "" for o in outcomes) == ["a", "b"]
    assert sorted(k or "" for k in scoped) == ["a", "b"]
    assert skipped == [("a", "duplicate")]
    assert sorted(k or "" for k in seen) == ["a", "b"]
    assert len(fake.executions) == 2

    fake = FakeAlloy()
    jobs = _jobs(fake, 3)
    fake.revoke_credential(jobs[0].credential_id)
    async with fake.client() as alloy:
        run = alloy.actions.execute_many(
            jobs,
            concurrency=1,
            on_credential_error=lambda user, cred, error: refused.append(cred),
        )
        outcomes = await _collect(run)
    assert refused == [jobs[0].credential_id]
    assert any(isinstance(o.error, CredentialQuarantinedError) for o in outcomes)
    assert fake.executions == []  # the refused call is not an execution; the others not sent


@pytest.mark.virtual_time
async def test_burst_lets_that_many_calls_go_at_once_and_no_more() -> None:
    """``rate=10, burst=5``: five calls at once, then no window of ``burst / rate`` = 0.5 s
    holds more than five, by the server's clock. Catches: ``burst=`` refused (a TypeError
    before), or accepted and ignored (the default burst at 10/s is 1: one call at once)."""
    fake = FakeAlloy()
    async with fake.client() as alloy:
        run = alloy.actions.execute_many(
            _jobs(fake, 20), concurrency=20, rate=10, burst=5, adaptive=False
        )
        outcomes = await _collect(run)
    assert len(outcomes) == 20 and all(o.ok for o in outcomes)
    times = sorted(e.at for e in fake.executions)
    assert len(times) == 20
    assert sum(1 for t in times if t - times[0] < 0.01) == 5
    assert max(sum(1 for u in times if t <= u < t + 0.5 - 1e-6) for t in times) == 5
    assert times[-1] - times[0] >= 1.5  # 20 calls in bursts of 5 every 0.5 s


@pytest.mark.parametrize("burst", [0, -1, True, 1.5, "5", 2**70 * 0.5])
async def test_a_bad_burst_is_refused_naming_it(burst: Any) -> None:
    """Catches: a bad ``burst`` accepted (or failing as a TypeError, or naming another
    argument). Nothing is sent."""
    fake = FakeAlloy()
    async with fake.client() as alloy:
        with pytest.raises(InvalidRequestError) as info:
            alloy.actions.execute_many(_jobs(fake, 1), rate=10, burst=burst)
    assert info.value.field == "burst"
    assert "burst" in str(info.value)
    assert fake.executions == []


@pytest.mark.parametrize(
    "given",
    [
        {},  # no rate: a burst of nothing
        {"rate": RateLimiter(10)},  # a rate budget of your own has its own burst
        {"coordinator": InProcessCoordinator.build(concurrency=4, rate=10)},
    ],
    ids=["no-rate", "own-budget", "coordinator"],
)
async def test_a_burst_that_would_not_apply_is_refused_naming_it(given: dict[str, Any]) -> None:
    """``burst=`` where this call does not build the rate limiter: an error naming ``burst``,
    never silently ignored. Catches: a burst dropped without a word (the run would go at the
    other budget's burst while the caller believes theirs holds)."""
    fake = FakeAlloy()
    async with fake.client() as alloy:
        with pytest.raises(InvalidRequestError) as info:
            alloy.actions.execute_many(_jobs(fake, 1), burst=3, **given)
    assert info.value.field == "burst"
    assert fake.executions == []


class _Configurable:
    """A coordinator that builds its run from ``execute_many``'s limits, as RedisCoordinator
    does (in process here: what it is given is what is checked). It has no ``cooldown`` of its
    own (only the runs it configures do): the service must not need one."""

    def __init__(self, *, takes_burst: bool) -> None:
        self.given: list[dict[str, Any]] = []
        if not takes_burst:  # one written before ``burst`` existed
            self.configure = self._configure_without_burst  # type: ignore[method-assign]

    def configure(
        self,
        *,
        concurrency: int,
        per_user: int | None,
        per_connector: int | None,
        rate: float | None,
        burst: int | None = None,
    ) -> InProcessCoordinator:
        self.given.append({"rate": rate, "burst": burst})
        return InProcessCoordinator.build(concurrency=concurrency, rate=rate, burst=burst)

    def _configure_without_burst(
        self,
        *,
        concurrency: int,
        per_user: int | None,
        per_connector: int | None,
        rate: float | None,
    ) -> InProcessCoordinator:
        self.given.append({"rate": rate})
        return InProcessCoordinator.build(concurrency=concurrency, rate=rate)


@pytest.mark.virtual_time
async def test_a_configurable_coordinator_is_given_the_burst() -> None:
    """``burst=`` with a coordinator that builds its run from the limits (RedisCoordinator):
    handed to ``configure``, and the run goes in bursts of that size (server's clock).
    Catches: burst refused with every coordinator (as before), or dropped on the way to
    ``configure`` (the budget's default burst at 10/s is 1)."""
    fake = FakeAlloy()
    coordinator = _Configurable(takes_burst=True)
    async with fake.client() as alloy:
        run = alloy.actions.execute_many(
            _jobs(fake, 10), concurrency=10, rate=10, burst=5, coordinator=coordinator
        )
        outcomes = await _collect(run)
    assert coordinator.given == [{"rate": 10.0, "burst": 5}]
    assert len(outcomes) == 10 and all(o.ok for o in outcomes)
    times = sorted(e.at for e in fake.executions)
    assert sum(1 for t in times if t - times[0] < 0.01) == 5
    assert max(sum(1 for u in times if t <= u < t + 0.5 - 1e-6) for t in times) == 5


async def test_a_coordinator_whose_configure_takes_no_burst_refuses_it_naming_it() -> None:
    """Catches: ``burst`` passed to a ``configure`` written before it existed (a TypeError
    from inside the SDK), or dropped there without a word. Without ``burst`` it still runs."""
    fake = FakeAlloy()
    coordinator = _Configurable(takes_burst=False)
    async with fake.client() as alloy:
        with pytest.raises(InvalidRequestError) as info:
            alloy.actions.execute_many(_jobs(fake, 1), rate=10, burst=3, coordinator=coordinator)
        assert info.value.field == "burst" and "configure" in str(info.value)
        assert fake.executions == [] and coordinator.given == []
        outcomes = await _collect(
            alloy.actions.execute_many(_jobs(fake, 1), rate=10, coordinator=coordinator)
        )
    assert [o.ok for o in outcomes] == [True]
    assert coordinator.given == [{"rate": 10.0}]


@pytest.mark.parametrize("rate", [None, RateLimiter(10)], ids=["no-rate", "own-budget"])
def test_building_a_coordinator_refuses_a_burst_it_would_drop(rate: RateLimiter | None) -> None:
    """``InProcessCoordinator.build(burst=5)`` without a numeric rate: an error naming
    ``burst``. Catches: the burst ignored by a coordinator built by hand (no limit, or the
    budget's own burst, while the caller believes theirs holds)."""
    with pytest.raises(InvalidRequestError) as info:
        InProcessCoordinator.build(concurrency=2, rate=rate, burst=5)
    assert info.value.field == "burst"
    built = InProcessCoordinator.build(concurrency=2, rate=10, burst=5)
    assert isinstance(built.rate, RateLimiter) and built.rate.burst == 5


@pytest.mark.parametrize(
    "given",
    [{"rate": "10"}, {"rate": "10", "burst": 3}, {"rate": object()}],
    ids=["string", "string-with-burst", "object"],
)
async def test_a_rate_that_is_neither_a_number_nor_a_budget_is_refused_naming_it(
    given: dict[str, Any],
) -> None:
    """Catches: ``rate="10"`` taken for a rate budget (it was accepted, and the run would fail
    at its first permit), or, with ``burst``, the error naming ``burst`` for ``rate``'s fault."""
    fake = FakeAlloy()
    async with fake.client() as alloy:
        with pytest.raises(InvalidRequestError) as info:
            alloy.actions.execute_many(_jobs(fake, 1), **given)
    assert info.value.field == "rate"
    assert fake.executions == []


#: An option of the wrong kind -> the field its error must name.
_BAD_OPTIONS: dict[str, dict[str, Any]] = {
    "lookahead 0": {"lookahead": 0},
    "lookahead negative": {"lookahead": -5},
    "lookahead text": {"lookahead": "x"},
    "max_requeues negative": {"max_requeues": -1},
    "max_requeues text": {"max_requeues": "3"},
    "max_requeues bool": {"max_requeues": True},
    "ordered text": {"ordered": "yes"},
    "adaptive text": {"adaptive": "x"},
    "coordinator int": {"coordinator": 5},
    "checkpoint int": {"checkpoint": 5},
    "default_user int": {"default_user": 5},
    "default_user blank": {"default_user": "  "},
    "stop_when": {"stop_when": 5},
    "scope": {"scope": "connector"},
    "on_skip": {"on_skip": 5},
    "on_outcome": {"on_outcome": 5},
    "on_credential_error": {"on_credential_error": 5},
}


@pytest.mark.parametrize("case", sorted(_BAD_OPTIONS))
async def test_an_option_of_the_wrong_kind_is_refused_when_the_run_is_made(case: str) -> None:
    """Every bad input gets a clear error naming the field, at the call: before, each of these
    was accepted and failed at the first job or the first callback (a TypeError or an
    AttributeError from inside the engine), or was never noticed (``lookahead=0`` read as the
    default, ``max_requeues=-1`` as none). Nothing is sent."""
    given = _BAD_OPTIONS[case]
    (name,) = given
    fake = FakeAlloy()
    async with fake.client() as alloy:
        with pytest.raises(InvalidRequestError) as info:
            alloy.actions.execute_many(_jobs(fake, 1), **given)
        assert info.value.field == name, info.value
        assert name in str(info.value)
        with pytest.raises(InvalidRequestError) as engine:  # the engine's own entry point too
            execute_many(alloy.actions._execute_one(None, None), _jobs(fake, 1), **given)
        assert engine.value.field == name
    assert fake.executions == []
