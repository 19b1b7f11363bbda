"""Issue 26: the ``"makespan"`` schedule (longest remaining time first, kept fair) and the
``"round_robin"`` one it replaces as the default.

The scheduler's tests are loop-free (ticks of a simulated call); the engine's run on a virtual
clock against FakeAlloy, and are judged by its record (the time of each execution it
performed, its own peak in flight per user), never by the client's report.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Hashable
from typing import Any

import pytest

from alloy_async.engine import InProcessCoordinator, Schedule, execute_many
from alloy_async.engine.scheduler import USER_FULL, FairScheduler, Slot
from alloy_async.errors import InvalidRequestError
from alloy_async.limiters import ConcurrencyLimiter, RateLimiter
from alloy_async.models import ExecuteJob
from alloy_async.testing import FakeAlloy


def slot(i: int, user: str) -> Slot:
    return Slot(i, f"job-{i}", None, (("user", user),), "scope", user)


def simulate(
    sched: FairScheduler, owners: list[str], *, slots: int, cap: int
) -> tuple[int, dict[str, int]]:
    """Run ``owners``' jobs through ``sched``: at most ``slots`` at once and ``cap`` per user,
    each call one tick. Returns the tick the last one ended and each user's last tick."""
    for i, user in enumerate(owners):
        sched.add(slot(i, user))
    held: Counter[str] = Counter()
    running: list[tuple[int, Slot]] = []
    finished: dict[str, int] = {}
    now = 0

    def try_start(s: Slot) -> Hashable | None:
        if held[s.user] >= cap:
            return USER_FULL
        held[s.user] += 1
        return None

    while True:
        while len(running) < slots:
            picked = sched.pick(try_start)
            if picked is None:
                break
            running.append((now + 1, picked))
        if not running:
            return now, finished
        now = min(end for end, _ in running)
        for end, done in [r for r in running if r[0] == now]:
            running.remove((end, done))
            held[done.user] -= 1
            finished[done.user] = now
            sched.unblock_user(done.user)


def skewed(heavy: int, lights: int, each: int, seed: int = 1) -> list[str]:
    owners = ["heavy"] * heavy + [f"light{i % lights}" for i in range(lights * each)]
    random.Random(seed).shuffle(owners)
    return owners


def test_makespan_keeps_a_cap_bound_user_at_its_cap_and_ends_at_the_ideal() -> None:
    """Catches: round-robin's makespan (the heavy user gets 1/11 of the turns while the light
    users have work, then runs alone at its cap: 23 ticks for an ideal of 20), or a ranking
    that does not prefer the user with the most queued work."""
    owners = skewed(heavy=40, lights=10, each=4)
    ideal = max(len(owners) // 8, 40 // 2)  # 80 jobs / 8 slots, 40 heavy jobs / cap 2
    end, _ = simulate(FairScheduler("makespan", cap=2, slots=8), owners, slots=8, cap=2)
    assert end == ideal == 20
    end_rr, _ = simulate(FairScheduler("round_robin"), owners, slots=8, cap=2)
    assert end_rr > ideal  # what the default did before issue 26


def test_round_robin_keeps_todays_order() -> None:
    """Catches: ``schedule="round_robin"`` ranking users (one job per user per round is its
    whole contract): the exact order of the rotation, a full user leaving it until its
    release, its own jobs in order."""
    sched = FairScheduler("round_robin")
    for i, user in enumerate(["a"] * 6 + ["b"] * 2 + ["c"]):
        sched.add(slot(i, user))
    full = {"a": False}

    def try_start(s: Slot) -> Hashable | None:
        return USER_FULL if full.get(s.user) else None

    picked = [sched.pick(try_start) for _ in range(4)]
    assert [(s.user, s.index) for s in picked if s] == [("a", 0), ("b", 6), ("c", 8), ("a", 1)]
    full["a"] = True
    got = sched.pick(try_start)
    assert got is not None and (got.user, got.index) == ("b", 7)
    assert sched.pick(try_start) is None  # "a" is out until its release
    full["a"] = False
    sched.unblock_user("a")
    assert [s.index for s in iter(lambda: sched.pick(try_start), None)] == [2, 3, 4, 5]


def test_no_user_waits_more_than_one_round_for_its_next_job() -> None:
    """Catches: the ranking taking every pick (a user with few jobs would wait until every
    bigger queue had drained to its size): the rotation keeps every other pick, so a user in
    it waits at most one round of it, twice as many picks."""
    sched = FairScheduler("makespan")  # cap=0: the top user is always ahead
    for i in range(400):
        sched.add(slot(i, f"big{i % 4}"))  # never full: ranked ahead all along
    for i in range(400, 403):
        sched.add(slot(i, f"small{i}"))
    users = 4 + 3
    last: dict[str, int] = {}
    gaps: list[int] = []
    for n in range(200):
        got = sched.pick(lambda s: None)
        assert got is not None
        if got.user in last:
            gaps.append(n - last[got.user])
        elif got.user.startswith("small"):
            assert n < 2 * users, (got.user, n)  # its first job within one round
        last[got.user] = n
        if got.user.startswith("small"):
            sched.add(slot(1000 + n, got.user))  # it keeps one job queued
    assert {f"small{i}" for i in range(400, 403)} <= set(last)
    assert max(gaps) <= 2 * users


def test_nobody_is_ranked_ahead_unless_it_would_outlast_the_rest() -> None:
    """Catches: ranking without the gate (``queued(user) / cap > queued(all) / slots``): with
    input sorted by user and no user cap-bound, users with many jobs took every other pick and
    the small ones finished ~2x later than under round-robin, for no shorter run."""
    rng = random.Random(5)
    owners = [f"u{u}" for u in range(60) for _ in range(rng.choice([1, 3, 10, 40]))]
    slots, cap = 32, 4  # a user holds 1/8 of the slots; none has 1/8 of the jobs
    assert max(Counter(owners).values()) * slots < len(owners) * cap
    sched = FairScheduler("makespan", cap=cap, slots=slots)
    end, finished = simulate(sched, owners, slots=slots, cap=cap)
    end_rr, finished_rr = simulate(FairScheduler("round_robin"), owners, slots=slots, cap=cap)
    assert end == end_rr
    small = [user for user, jobs in Counter(owners).items() if jobs <= 3]
    # (near the end the last big users do outlast the rest, and go ahead: not the small ones)
    assert [finished[u] for u in small] == [finished_rr[u] for u in small]


def test_a_ranked_user_parks_one_job_at_a_time_on_a_full_connector() -> None:
    """Catches: the ranking parking its user's whole queue on a full connector in one pick
    (its jobs then come back first, one per release, ahead of every other user's on that
    connector): it parks one, as the rotation does for each user."""
    sched = FairScheduler("makespan")
    for i in range(100):
        sched.add(slot(i, "heavy"))
    for i in range(100, 104):
        sched.add(slot(i, f"light{i}"))
    full = ("connector", "slack")
    assert sched.pick(lambda s: full) is None
    parked = [s.user for s in sched.parked[full]]
    assert parked.count("heavy") <= 2 and len(parked) <= 6, parked
    sched.unpark(full, count=-1)
    again = [sched.pick(lambda s: None) for _ in range(6)]
    assert {s.user for s in again if s} >= {f"light{i}" for i in range(100, 104)}


def test_a_full_user_leaves_the_ranking_and_every_job_is_picked_once() -> None:
    """Catches: the ranking's bookkeeping going wrong across adds, picks, full users, parked
    and re-queued jobs (a job lost or picked twice, a user's own order broken, a full user
    asked again before its release: the ranking spinning on it)."""
    rng = random.Random(26)
    sched = FairScheduler("makespan", cap=2, slots=6)
    cap = 2
    held: Counter[str] = Counter()
    full_asks: Counter[str] = Counter()
    parked: list[str] = []
    running: list[Slot] = []
    picked: list[Slot] = []

    ahead: set[int] = set()  # parked or re-queued: tried ahead of the rotation, full or not

    def try_start(s: Slot) -> Hashable | None:
        if held[s.user] >= cap:
            if s.index not in ahead:
                full_asks[s.user] += 1
                assert full_asks[s.user] == 1, f"{s.user} asked again while full"
            return USER_FULL
        if rng.random() < 0.05:
            parked.append("conn")
            ahead.add(s.index)
            return ("connector", "conn")
        held[s.user] += 1
        return None

    n = 0
    for _ in range(3000):
        op = rng.random()
        if op < 0.45 and n < 1500:
            sched.add(slot(n, f"u{min(int(rng.paretovariate(1.2)), 12)}"))
            n += 1
        elif op < 0.8 and len(running) < 6:
            got = sched.pick(try_start)
            if got is not None:
                running.append(got)
                picked.append(got)
        elif running:
            done = running.pop(rng.randrange(len(running)))
            held[done.user] -= 1
            full_asks[done.user] = 0
            sched.unblock_user(done.user)
            if parked and rng.random() < 0.5:
                sched.unpark(("connector", parked.pop()))
        if rng.random() < 0.01 and running:
            back = running.pop()  # a 429: back ahead of the rotation
            held[back.user] -= 1
            full_asks[back.user] = 0
            sched.unblock_user(back.user)
            picked.remove(back)
            ahead.add(back.index)
            sched.requeue(back)
    while True:  # drain: release everything, unpark everything
        for done in running:
            held[done.user] -= 1
            full_asks[done.user] = 0
            sched.unblock_user(done.user)
        running.clear()
        sched.retry_all()
        got = sched.pick(try_start)
        if got is None and not sched.parked:
            break
        if got is not None:
            running.append(got)
            picked.append(got)
    assert sorted(s.index for s in picked) == list(range(n))
    for user in {s.user for s in picked}:  # its own order, but for the jobs that went ahead
        mine = [s.index for s in picked if s.user == user and s.index not in ahead]
        assert mine == sorted(mine), user


# -- through the engine, judged by FakeAlloy's record -------------------------------------------


async def _skewed_run(
    schedule: Schedule | None, *, per_user: int | None = 2, concurrency: int = 20
) -> dict[str, Any]:
    """1,200 jobs, one user with 20 %: per_user=2 and 0.1 s calls make it cap-bound (240 jobs
    at 20/s: 12 s) against 6 s for the whole at rate=200 (``concurrency=20`` is what the rate
    needs: ``rate x latency``)."""
    fake = FakeAlloy(latency=0.1, record=False)
    users = [fake.add_user(f"user{i}@example.com") for i in range(21)]
    creds = {u: fake.add_credential(u, "slack") for u in users}
    owners = [users[0]] * 240 + [users[1 + i % 20] for i in range(960)]
    random.Random(3).shuffle(owners)
    jobs = [
        ExecuteJob("slack", "chat_postMessage", creds[u], u, {"channel": "C", "text": str(i)})
        for i, u in enumerate(owners)
    ]
    options: dict[str, Any] = {} if schedule is None else {"schedule": schedule}
    loop = asyncio.get_running_loop()
    async with fake.client() as alloy:
        t0 = loop.time()
        run = alloy.actions.execute_many(
            jobs,
            concurrency=concurrency,
            per_user=per_user,
            rate=200,
            adaptive=False,
            **options,
        )
        async with run:
            outcomes = [o async for o in run]
    assert len(outcomes) == 1200 and all(o.ok for o in outcomes)
    assert len(fake.executions) == 1200
    last: dict[str, float] = {}
    for execution in fake.executions:
        last[execution.user_id] = execution.at - t0
    return {
        "wall": max(last.values()),
        "lights": max(at for user, at in last.items() if user != users[0]),
        "peak": fake.stats()["peak_in_flight_per_user"],
        "order": [e.user_id for e in fake.executions],
    }


@pytest.mark.virtual_time
async def test_a_skewed_run_ends_near_the_ideal_by_the_servers_record() -> None:
    """Catches: today's round-robin as the default (this run took 1.22x its ideal: the heavy
    user's cap-bound tail came last); a schedule that gets there by delaying the light users
    more than 1.25x, or by going over the per-user cap at the server."""
    ideal = max(1200 / 200, 240 / (2 / 0.1))
    new = await _skewed_run(None)  # the default
    old = await _skewed_run("round_robin")
    assert new["wall"] <= 1.05 * ideal, new["wall"]
    assert old["wall"] > 1.15 * ideal, old["wall"]  # the bug: what round-robin gives
    assert new["lights"] <= 1.25 * old["lights"], (new["lights"], old["lights"])
    assert new["peak"] == old["peak"] == 2  # FakeAlloy's own peak per user: the cap


@pytest.mark.virtual_time
@pytest.mark.parametrize("concurrency", [40, 80])
async def test_more_workers_than_the_rate_needs_still_keep_a_capped_user_at_its_cap(
    concurrency: int,
) -> None:
    """Catches: picking a job before its rate permit. With 2x and 4x the workers the rate
    needs, ~20-60 picked jobs then queued for permits holding their users' slots, and the
    capped user ran at about half its cap: 1.10x-1.23x the ideal (issue 26's last case)."""
    ideal = max(1200 / 200, 240 / (2 / 0.1))
    new = await _skewed_run(None, concurrency=concurrency)
    assert new["wall"] <= 1.05 * ideal, new["wall"]
    assert new["peak"] == 2  # FakeAlloy's own peak per user: the cap


@pytest.mark.virtual_time
async def test_without_per_user_makespan_is_the_rotation() -> None:
    """Catches: ranking users that no cap bounds (the heaviest would take every other pick,
    delaying the rest for no shorter run): without ``per_user`` the server sees the same
    order under both schedules."""
    new = await _skewed_run("makespan", per_user=None)
    old = await _skewed_run("round_robin", per_user=None)
    assert new["order"] == old["order"]
    assert new["wall"] == pytest.approx(old["wall"], abs=1e-9)


@pytest.mark.parametrize("schedule", ["fastest", "", None, 1])
def test_an_unknown_schedule_is_refused_naming_it(schedule: Any) -> None:
    """Catches: a typo (``"round-robin"``) silently running the default schedule."""

    async def execute(job: ExecuteJob, stats: object) -> None:
        return None

    with pytest.raises(InvalidRequestError) as info:
        execute_many(execute, [], schedule=schedule)
    assert info.value.field == "schedule"
    fake = FakeAlloy()
    with pytest.raises(InvalidRequestError) as info:
        fake.client().actions.execute_many([], schedule=schedule)
    assert info.value.field == "schedule" and "round_robin" in str(info.value)


class _SlotsThatBreak(ConcurrencyLimiter):
    """A user's own slots with a bug: the 30th start raises."""

    def __init__(self) -> None:
        super().__init__(64)
        self.starts = 0

    def try_acquire(self, keys: Any) -> Any:
        self.starts += 1
        if self.starts == 30:
            raise ZeroDivisionError("a bug in the user's slots")
        return super().try_acquire(keys)


@pytest.mark.virtual_time
async def test_a_pick_that_raises_in_the_permit_line_ends_the_run_instead_of_hanging() -> None:
    """Catches: a worker whose pick raised keeping its place in the permit line. The other 63
    workers then waited to enter it forever and the run never ended; it must stop and raise
    the bug, with no task left behind."""
    fake = FakeAlloy(latency=0.1, record=False)
    user = fake.add_user("user@example.com")
    cred = fake.add_credential(user, "slack")
    jobs = [
        ExecuteJob("slack", "chat_postMessage", cred, user, {"text": str(i)}) for i in range(500)
    ]
    coordinator = InProcessCoordinator(slots=_SlotsThatBreak(), rate=RateLimiter(100))
    before = asyncio.all_tasks()
    async with fake.client() as alloy:
        run = alloy.actions.execute_many(jobs, concurrency=64, coordinator=coordinator)

        async def drain() -> None:
            async with run:
                async for _ in run:
                    pass

        with pytest.raises(ZeroDivisionError):  # a hang fails at 3,600 virtual seconds
            await asyncio.wait_for(drain(), 3600)
    assert run.report.stopped_early
    assert asyncio.all_tasks() == before
