"""Credential quarantine (issue 15): one revoked credential does not burn all of its jobs.

A job failing 401/403 with ``source`` THIRD_PARTY quarantines its credential for the rest of
the run: its jobs already in flight finish, queued ones end ``CredentialQuarantinedError``
unsent; ``on_credential_error`` is called once per credential. A 401 from the Connectivity API
itself (a bad API key) stops the run unless ``stop_when`` is given.

What was sent is judged by the server's own record (``fake.requests``, route ``execute``;
``fake.executions``; ``/_sandbox/executions`` and ``/_sandbox/stats`` over HTTP), never by the
client's report. "In flight when the first refusal came back" is counted at the transport,
because the fake records a request only after its latency has passed.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from alloy_async import AlloyClient
from alloy_async._http import Request, Response
from alloy_async.errors import (
    AuthenticationError,
    BadRequestError,
    CredentialQuarantinedError,
    NotFoundError,
    PermissionDeniedError,
)
from alloy_async.models import BulkReport, ExecuteJob, JobOutcome
from alloy_async.sandbox import SandboxServer
from alloy_async.testing import FakeAlloy
from alloy_async.testing.faults import error_response
from alloy_async.transports.fake import FakeTransport

CONCURRENCY = 4

# -- helpers --------------------------------------------------------------------------------


def _setup(fake: FakeAlloy, users: int = 4) -> list[tuple[str, str]]:
    """``users`` users with one Slack credential each; the first user gets a second one."""
    pairs = []
    for i in range(users):
        user = fake.add_user(f"u{i}@example.com")
        pairs.append((user, fake.add_credential(user, "slack")))
    first = pairs[0][0]
    pairs.append((first, fake.add_credential(first, "slack")))
    return pairs


def _jobs(pairs: list[tuple[str, str]], n: int) -> list[ExecuteJob]:
    """``n`` jobs, credentials interleaved round-robin; key == the body's text."""
    out = []
    for i in range(n):
        user, cred = pairs[i % len(pairs)]
        out.append(
            ExecuteJob(
                "slack",
                "chat_postMessage",
                cred,
                user,
                {"channel": "C", "text": f"j{i}"},
                key=f"j{i}",
            )
        )
    return out


def _execute_requests(fake: FakeAlloy, cred: str | None = None) -> list[str]:
    """Keys of the execute requests the server received (for ``cred`` only, if given)."""
    return [
        str(r.json["requestBody"]["text"])
        for r in fake.requests
        if r.route == "execute" and (cred is None or r.json["credentialId"] == cred)
    ]


def _executed(fake: FakeAlloy) -> Counter[str]:
    return Counter(str(e.request_body["text"]) for e in fake.executions)


class Watch:
    """Transport handler in front of the fake: counts execute sends per credential and, for
    each credential, how many of its requests had been sent when its first 401/403 came back."""

    def __init__(self, fake: FakeAlloy) -> None:
        self.fake = fake
        self.sends: Counter[str] = Counter()
        self.at_first_refusal: dict[str, int] = {}

    async def __call__(self, request: Request) -> Response:
        cred = orjson.loads(request.body)["credentialId"] if request.body else None
        if cred is not None:
            self.sends[cred] += 1
        response = await self.fake.handle(request)
        if cred is not None and response.status in (401, 403):
            self.at_first_refusal.setdefault(cred, self.sends[cred])
        return response


async def _collect(run: Any) -> list[JobOutcome]:
    async with run:
        return [o async for o in run]


Calls = list[tuple[str | None, str, BaseException]]


def _callback(kind: str, calls: Calls) -> Callable[..., Any]:
    if kind == "sync":

        def sync(user: str | None, cred: str, error: BaseException) -> None:
            calls.append((user, cred, error))

        return sync

    async def later(user: str | None, cred: str, error: BaseException) -> None:
        await asyncio.sleep(0.01)  # really awaited: the call is recorded after a suspension
        calls.append((user, cred, error))

    return later


def _check_quarantined(
    outcomes: list[JobOutcome],
    report: BulkReport,
    fake: FakeAlloy,
    watch: Watch,
    revoked: dict[str, str],
    jobs: list[ExecuteJob],
    calls: Calls,
) -> None:
    """The common verdict on a run where the credentials of ``revoked`` (cred -> user) were
    refused by the third party with 401 (FakeAlloy.revoke_credential)."""
    assert len(outcomes) == len(jobs)
    healthy = [j for j in jobs if j.credential_id not in revoked]
    # every healthy job ran exactly once, by the server's record; nothing of a revoked one ran
    assert _executed(fake) == Counter({j.key: 1 for j in healthy})
    by_key = {o.job.key: o for o in outcomes}
    assert all(by_key[j.key].ok for j in healthy)
    # the callback: once per revoked credential, with its user and the 401 that refused it
    assert sorted(c[1] for c in calls) == sorted(revoked)
    for user, cred, error in calls:
        assert user == revoked[cred]
        assert isinstance(error, AuthenticationError) and error.status == 401
        assert error.source == "THIRD_PARTY" and error.code == "CREDENTIAL_REVOKED"
    first_error = {cred: error for _, cred, error in calls}
    quarantined = 0
    for cred, user in revoked.items():
        sent = _execute_requests(fake, cred)
        # only the requests already in flight when the first refusal came back were sent
        assert 1 <= len(sent) <= CONCURRENCY
        assert watch.sends[cred] == len(sent) == watch.at_first_refusal[cred]
        mine = [o for o in outcomes if o.job.credential_id == cred]
        refused = [o for o in mine if o.job.key in sent]
        held = [o for o in mine if o.job.key not in sent]
        assert len(refused) == len(sent) and held, "the test needs queued jobs of it"
        for o in refused:
            assert not o.ok and isinstance(o.error, AuthenticationError)
            assert o.error.status == 401
        for o in held:
            assert not o.ok and o.attempts == 0
            assert isinstance(o.error, CredentialQuarantinedError)
            assert o.error.credential_id == cred and o.error.user_id == user
            assert isinstance(o.error.error, AuthenticationError)
            assert o.error.error is first_error[cred]
            assert cred in str(o.error)
        quarantined += len(held)
    assert report.quarantined == quarantined
    assert sorted(report.quarantined_credentials) == sorted(revoked)
    assert report.quarantined_credentials == tuple(c[1] for c in calls)  # in quarantine order
    assert report.failed == sum(1 for j in jobs if j.credential_id in revoked)
    assert report.succeeded == len(healthy)
    assert report.by_error["CredentialQuarantinedError"] == quarantined
    assert not report.stopped_early
    summary = report.summary()
    assert "quarantined credentials" in summary
    for cred in revoked:
        assert cred in summary
    assert f"({quarantined} jobs not sent" in summary


# -- 1. a revoked credential among healthy ones ---------------------------------------------


async def _run_and_check(
    fake: FakeAlloy, kind: str, jobs: list[ExecuteJob], revoked: dict[str, str]
) -> list[JobOutcome]:
    """Run ``jobs`` with a callback of ``kind``; check the quarantine of ``revoked``."""
    watch = Watch(fake)
    calls: Calls = []
    async with fake.client(transport=FakeTransport(watch)) as alloy:
        run = alloy.actions.execute_many(
            jobs, concurrency=CONCURRENCY, on_credential_error=_callback(kind, calls)
        )
        outcomes = await _collect(run)
    assert len(calls) == len(revoked)  # once per credential
    _check_quarantined(outcomes, run.report, fake, watch, revoked, jobs, calls)
    return outcomes


@pytest.mark.virtual_time
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_revoked_credential_is_quarantined_and_the_others_all_run(kind: str) -> None:
    fake = FakeAlloy(latency=0.05)
    pairs = _setup(fake)
    user, bad = pairs[1]
    fake.revoke_credential(bad)
    await _run_and_check(fake, kind, _jobs(pairs, 65), {bad: user})


@pytest.mark.virtual_time
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_two_revoked_credentials_call_back_once_each(kind: str) -> None:
    fake = FakeAlloy(latency=0.05)
    pairs = _setup(fake, users=5)
    revoked = {pairs[1][1]: pairs[1][0], pairs[5][1]: pairs[5][0]}  # pairs[5]: user 0's 2nd
    for cred in revoked:
        fake.revoke_credential(cred)
    outcomes = await _run_and_check(fake, kind, _jobs(pairs, 72), revoked)
    # the other credential of user 0 (pairs[0]) was not touched by its sibling's quarantine
    assert all(o.ok for o in outcomes if o.job.credential_id == pairs[0][1])


@pytest.mark.virtual_time
async def test_without_a_callback_the_credential_is_still_quarantined() -> None:
    fake = FakeAlloy(latency=0.05)
    pairs = _setup(fake)
    bad = pairs[2][1]
    fake.revoke_credential(bad)
    jobs = _jobs(pairs, 60)
    async with fake.client() as alloy:
        run = alloy.actions.execute_many(jobs, concurrency=CONCURRENCY)
        outcomes = await _collect(run)
    sent = _execute_requests(fake, bad)
    assert 1 <= len(sent) <= CONCURRENCY
    held = [o for o in outcomes if isinstance(o.error, CredentialQuarantinedError)]
    assert len(held) == 12 - len(sent) == run.report.quarantined
    assert run.report.quarantined_credentials == (bad,)


@pytest.mark.virtual_time
async def test_a_job_waiting_for_a_rate_permit_is_not_sent_after_the_quarantine() -> None:
    fake = FakeAlloy(latency=0.05)
    bad_user = fake.add_user("bad@example.com")
    bad = fake.add_credential(bad_user, "slack")
    good_user = fake.add_user("good@example.com")
    good = fake.add_credential(good_user, "slack")
    fake.revoke_credential(bad)
    jobs = _jobs([(bad_user, bad), (good_user, good)], 40)
    watch = Watch(fake)
    async with fake.client(transport=FakeTransport(watch)) as alloy:
        # rate 1/s: the 4 workers pick bad, good, bad, good at t=0 and wait for permits at
        # t=0, 1, 2, 3; the first bad job is refused at t=0.05, long before t=2.
        run = alloy.actions.execute_many(jobs, concurrency=CONCURRENCY, rate=1.0)
        outcomes = await _collect(run)
    assert watch.at_first_refusal[bad] == 1
    assert _execute_requests(fake, bad) == ["j0"]  # fails: ["j0", "j2"], j2 sent at t=2
    assert run.report.quarantined == 19
    assert len(outcomes) == 40


# -- 2. which refusals quarantine -----------------------------------------------------------


def _refuse(cred: str, status: int, source: str) -> Callable[[Request], Response | None]:
    """An ``execute`` route hook answering ``status`` with ``source`` for ``cred`` only."""

    def hook(request: Request) -> Response | None:
        if orjson.loads(request.body or b"{}").get("credentialId") != cred:
            return None
        return error_response(status, "REFUSED", "refused by the test", source=source)

    return hook


@pytest.mark.virtual_time
@pytest.mark.parametrize("source", ["THIRD_PARTY", "third_party"])
async def test_a_403_from_the_third_party_quarantines_too(source: str) -> None:
    fake = FakeAlloy(latency=0.05)
    pairs = _setup(fake)
    user, bad = pairs[3]
    fake.route_hooks["execute"] = _refuse(bad, 403, source)
    jobs = _jobs(pairs, 60)
    watch = Watch(fake)
    calls: Calls = []
    async with fake.client(transport=FakeTransport(watch)) as alloy:
        run = alloy.actions.execute_many(
            jobs, concurrency=CONCURRENCY, on_credential_error=_callback("sync", calls)
        )
        outcomes = await _collect(run)
    sent = _execute_requests(fake, bad)
    assert 1 <= len(sent) <= CONCURRENCY and len(sent) == watch.at_first_refusal[bad]
    assert [(u, c) for u, c, _ in calls] == [(user, bad)]
    assert isinstance(calls[0][2], PermissionDeniedError) and calls[0][2].status == 403
    held = [o for o in outcomes if isinstance(o.error, CredentialQuarantinedError)]
    assert len(held) == 12 - len(sent) == run.report.quarantined
    for o in held:
        assert o.job.credential_id == bad and o.error.error is calls[0][2]  # type: ignore[union-attr]
    healthy = [j for j in jobs if j.credential_id != bad]
    assert _executed(fake) == Counter({j.key: 1 for j in healthy})
    assert run.report.quarantined_credentials == (bad,)


@pytest.mark.virtual_time
@pytest.mark.parametrize(
    ("status", "source", "error_type"),
    [
        (403, "CONNECTIVITY_API", PermissionDeniedError),
        (400, "THIRD_PARTY", BadRequestError),
        (404, "THIRD_PARTY", NotFoundError),
    ],
)
async def test_other_refusals_are_ordinary_failures(
    status: int, source: str, error_type: type[Exception]
) -> None:
    fake = FakeAlloy(latency=0.05)
    pairs = _setup(fake)
    bad = pairs[3][1]
    fake.route_hooks["execute"] = _refuse(bad, status, source)
    jobs = _jobs(pairs, 60)
    calls: Calls = []
    async with fake.client() as alloy:
        run = alloy.actions.execute_many(
            jobs, concurrency=CONCURRENCY, on_credential_error=_callback("sync", calls)
        )
        outcomes = await _collect(run)
    mine = [str(j.key) for j in jobs if j.credential_id == bad]
    assert sorted(_execute_requests(fake, bad)) == sorted(mine)  # every one of them was sent
    assert calls == []
    for o in outcomes:
        if o.job.credential_id == bad:
            assert type(o.error) is error_type
    assert run.report.quarantined == 0 and run.report.quarantined_credentials == ()
    assert not run.report.stopped_early
    assert run.report.failed == len(mine) and run.report.succeeded == 60 - len(mine)
    assert "quarantined" not in run.report.summary()


# -- 3. a rerun after the user reconnected ---------------------------------------------------


@pytest.mark.virtual_time
async def test_a_rerun_after_reconnecting_sends_exactly_the_quarantined_jobs(
    tmp_path: Path,
) -> None:
    fake = FakeAlloy(latency=0.05)
    pairs = _setup(fake)
    bad = pairs[2][1]
    fake.revoke_credential(bad)
    journal = tmp_path / "j.db"
    async with fake.client() as alloy:
        first = await _collect(
            alloy.actions.execute_many(
                _jobs(pairs, 60), concurrency=CONCURRENCY, checkpoint=journal
            )
        )
        refused = {o.job.key for o in first if isinstance(o.error, AuthenticationError)}
        held = {str(o.job.key) for o in first if isinstance(o.error, CredentialQuarantinedError)}
        assert refused and held and refused == set(_execute_requests(fake, bad))
        before = len(fake.requests)
        executed_before = _executed(fake)

        fake.revoked.discard(bad)  # the user reconnected
        skips: list[tuple[str | None, str]] = []
        run = alloy.actions.execute_many(
            _jobs(pairs, 60),
            concurrency=CONCURRENCY,
            checkpoint=journal,
            on_skip=lambda job, why: skips.append((job.key, why)),
        )
        second = await _collect(run)
    # exactly the quarantined jobs and the ones the third party refused (nothing ran for
    # them) are sent, once each; nothing else reaches the server
    again = held | {str(k) for k in refused}
    resent = [str(r.json["requestBody"]["text"]) for r in fake.requests[before:]]
    assert sorted(resent) == sorted(again)
    assert _executed(fake) - executed_before == Counter(dict.fromkeys(again, 1))
    assert {o.job.key for o in second} == again and all(o.ok for o in second)
    assert {k for k, _ in skips} == {f"j{i}" for i in range(60)} - again
    assert run.report.skipped == 60 - len(again) and run.report.quarantined == 0


# -- 4. a bad API key ------------------------------------------------------------------------


@pytest.mark.virtual_time
async def test_a_bad_api_key_stops_the_run_at_once() -> None:
    fake = FakeAlloy(latency=0.05)
    pairs = _setup(fake)
    calls: Calls = []
    async with fake.client(api_key="wrong") as alloy:
        run = alloy.actions.execute_many(
            _jobs(pairs, 60), concurrency=CONCURRENCY, on_credential_error=_callback("sync", calls)
        )
        outcomes = await _collect(run)
    sent = _execute_requests(fake)
    assert 1 <= len(sent) <= CONCURRENCY
    assert fake.executions == []
    assert len(outcomes) == len(sent)
    assert all(isinstance(o.error, AuthenticationError) for o in outcomes)
    report = run.report
    assert report.stopped_early and report.stop_reason is not None
    assert "API key" in report.stop_reason
    assert report.not_dispatched > 0 and report.finished + report.not_dispatched == 60
    assert report.quarantined == 0 and report.quarantined_credentials == () and calls == []
    assert "API key" in report.summary()


@pytest.mark.virtual_time
async def test_a_bad_api_key_with_stop_when_is_the_callers_to_decide() -> None:
    fake = FakeAlloy(latency=0.05)
    pairs = _setup(fake)
    async with fake.client(api_key="wrong") as alloy:
        run = alloy.actions.execute_many(
            _jobs(pairs, 60), concurrency=CONCURRENCY, stop_when=lambda r: False
        )
        outcomes = await _collect(run)
    assert sorted(_execute_requests(fake)) == sorted(f"j{i}" for i in range(60))
    assert fake.executions == []
    assert len(outcomes) == 60
    assert all(isinstance(o.error, AuthenticationError) for o in outcomes)
    assert not run.report.stopped_early and run.report.not_dispatched == 0
    assert run.report.failed == 60 and run.report.quarantined == 0


# -- 5. a callback that raises ---------------------------------------------------------------


class CallbackFailed(Exception):
    pass


@pytest.mark.virtual_time
@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_a_callback_that_raises_stops_the_run_and_is_raised_after_the_outcomes(
    kind: str,
) -> None:
    fake = FakeAlloy(latency=0.05)
    pairs = _setup(fake)
    user, bad = pairs[1]
    fake.revoke_credential(bad)
    raised: list[CallbackFailed] = []
    sent_at_callback: list[int] = []
    watch = Watch(fake)

    def fail(u: str | None, cred: str, error: BaseException) -> None:
        sent_at_callback.append(sum(watch.sends.values()))
        exc = CallbackFailed(f"{u} {cred} {type(error).__name__}")
        raised.append(exc)
        raise exc

    async def fail_later(u: str | None, cred: str, error: BaseException) -> None:
        await asyncio.sleep(0.01)
        fail(u, cred, error)

    tasks_before = asyncio.all_tasks()
    outcomes: list[JobOutcome] = []
    async with fake.client(transport=FakeTransport(watch)) as alloy:
        run = alloy.actions.execute_many(
            _jobs(pairs, 65),
            concurrency=CONCURRENCY,
            on_credential_error=fail if kind == "sync" else fail_later,
        )

        async def consume() -> None:
            async for outcome in run:
                outcomes.append(outcome)

        with pytest.raises(CallbackFailed) as caught:
            await consume()
        # nothing of the run outlives the iteration
        assert asyncio.all_tasks() == tasks_before
    assert len(raised) == 1 and caught.value is raised[0]
    assert str(caught.value) == f"{user} {bad} AuthenticationError"
    # the outcome of the job whose refusal triggered the callback was delivered first
    trigger = [o for o in outcomes if o.job.credential_id == bad]
    assert trigger and isinstance(trigger[0].error, AuthenticationError)
    # the run stopped: nothing was sent after the callback raised, every sent job has its
    # outcome, and the rest was not dispatched
    sent = _execute_requests(fake)  # the server's record (each recorded after its latency)
    assert len(sent) == sum(watch.sends.values()) == sent_at_callback[0] < 65
    assert set(sent) <= {o.job.key for o in outcomes}
    report = run.report
    assert report.stopped_early and "CallbackFailed" in (report.stop_reason or "")
    assert report.finished == len(outcomes)
    assert report.finished + report.not_dispatched == 65
    assert report.quarantined_credentials == (bad,)


# -- 6. over real HTTP -----------------------------------------------------------------------


async def test_quarantine_over_http_against_the_sandbox() -> None:
    fake = FakeAlloy(latency=0.01)
    pairs = _setup(fake)
    user, bad = pairs[1]
    jobs = _jobs(pairs, 60)
    calls: Calls = []
    async with SandboxServer(fake) as server, aiohttp.ClientSession() as http:
        fake.revoke_credential(bad)

        async def sandbox(what: str) -> Any:
            async with http.get(f"{server.url}/_sandbox/{what}") as resp:
                assert resp.status == 200
                return await resp.json()

        async with AlloyClient(fake.api_key, base_url=server.url) as alloy:
            run = alloy.actions.execute_many(
                jobs, concurrency=CONCURRENCY, on_credential_error=_callback("sync", calls)
            )
            outcomes = await _collect(run)
        executions = await sandbox("executions")
        stats = await sandbox("stats")
    healthy = [j for j in jobs if j.credential_id != bad]
    ran = Counter(str(e["request_body"]["text"]) for e in executions)
    assert ran == Counter({j.key: 1 for j in healthy})
    assert all(e["credential_id"] != bad for e in executions)
    # every request that reached the server is a healthy execution or a refused bad one
    bad_sent = stats["requests"] - stats["executions"]
    assert stats["executions"] == len(healthy)
    assert 1 <= bad_sent <= CONCURRENCY
    assert stats["peak_in_flight"] <= CONCURRENCY
    held = [o for o in outcomes if isinstance(o.error, CredentialQuarantinedError)]
    refused = [o for o in outcomes if isinstance(o.error, AuthenticationError)]
    assert len(refused) == bad_sent and len(held) == 12 - bad_sent
    assert all(o.error.credential_id == bad for o in held)  # type: ignore[union-attr]
    assert [(u, c) for u, c, _ in calls] == [(user, bad)]
    assert run.report.quarantined == len(held)
    assert run.report.quarantined_credentials == (bad,)
