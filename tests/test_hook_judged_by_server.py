"""A hook's exception is never read as the server's answer (issue 22, item 2).

A ``response`` hook that raises ``RateLimitError``, ``APIConnectionError`` or ``ServerError(503)``
after the server answered 200 (a hook that itself calls Alloy, say): ``execute_many`` re-queued
the job and executed it twice in the same run, or journaled it as "not acted on" so that a rerun
executed it again. The engine judges the job by what the server did: it answered 200, so the
job is never sent again. Judged by the sandbox's own record over real HTTP.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from alloy_async import AlloyClient
from alloy_async.errors import (
    APIConnectionError,
    AuthenticationError,
    RateLimitError,
    ResponseTooLargeError,
    ServerError,
)
from alloy_async.journal import read_journal
from alloy_async.models import ExecuteJob, JobOutcome
from alloy_async.sandbox import SandboxServer
from alloy_async.testing import FakeAlloy

RAISES: dict[str, Callable[[], Exception]] = {
    "429": lambda: RateLimitError("from a hook", status=429, retry_after=0.01),
    "connection": lambda: APIConnectionError("from a hook", method="POST", path="/x"),
    "503": lambda: ServerError("from a hook", status=503),
    # as the third party's refusal of the credential: it would quarantine the credential,
    # hold the other jobs back and journal this one as never acted on
    "401": lambda: AuthenticationError("from a hook", status=401, source="THIRD_PARTY"),
}


def _jobs(fake: FakeAlloy, n: int) -> list[ExecuteJob]:
    user = fake.add_user("a@example.com")
    cred = fake.add_credential(user, "slack")
    return [
        ExecuteJob(
            "slack", "chat_postMessage", cred, user, {"channel": "C", "text": f"k{i}"}, key=f"k{i}"
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("raised", sorted(RAISES))
async def test_a_response_hook_raising_after_a_200_never_sends_the_job_again(
    raised: str, tmp_path: Path
) -> None:
    """Catches: the engine reading a hook's RateLimitError as a 429 (re-queued: executed twice
    in one run), a hook's connection error / 503 as "not acted on" (journaled as never sent:
    the rerun executes it again), or a hook's 401 as the third party refusing the credential
    (quarantined and journaled as never acted on: the rerun executes it again)."""
    fake = FakeAlloy(latency=0.005)
    jobs = _jobs(fake, 12)
    checkpoint = tmp_path / "wal.db"

    def hook(event: Any) -> None:
        if event.status == 200 and event.request.path.endswith("/execute"):
            raise RAISES[raised]()

    async with SandboxServer(fake) as server, aiohttp.ClientSession() as http:
        outcomes: list[JobOutcome] = []
        for hooks in ({"response": [hook]}, {}):  # the run, then a rerun without the hook
            async with AlloyClient(
                fake.api_key, base_url=server.url, event_hooks=hooks, telemetry=False
            ) as alloy:
                run = alloy.actions.execute_many(
                    jobs, concurrency=4, checkpoint=checkpoint, rate=1000
                )
                async with run:
                    outcomes += [o async for o in run]
        async with http.get(f"{server.url}/_sandbox/executions") as resp:
            executions = await resp.json()
    ran = Counter(e["request_body"]["text"] for e in executions)
    assert ran == Counter({j.key: 1 for j in jobs}), ran  # each once, in the run and after
    assert len(outcomes) == len(jobs)  # the rerun had nothing left to do
    for outcome in outcomes:
        assert not outcome.ok and type(outcome.error) is type(RAISES[raised]())
        assert "answered 200" in " ".join(getattr(outcome.error, "__notes__", []))


class _ActsThenFails:
    """A transport over the fake: the server acts on an execute, then the transport raises
    an error of its own (the answer was too large to read), as AiohttpTransport does."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def send(self, request: Any) -> Any:
        response = await self.inner.send(request)
        if request.path.endswith("/execute") and response.status == 200:
            raise ResponseTooLargeError("the answer is over max_response_bytes")
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.parametrize("first", [503, 429])
async def test_an_error_after_a_retry_is_judged_by_that_attempt_not_the_one_before(
    first: int, tmp_path: Path
) -> None:
    """Attempt 1 answers 503 (or 429); attempt 2 acts, then the transport fails reading the
    answer. With hooks on, the job was judged by attempt 1's "did not act" and the rerun sent
    it again. Catches: an answer's status kept past the attempt it belongs to."""
    fake = FakeAlloy()
    jobs = _jobs(fake, 1)
    fake.fail("execute", first, retry_after="0")
    checkpoint = tmp_path / "wal.db"
    hooks = {"response": [lambda event: None]}  # the observed path, where hooks run
    for transport in (_ActsThenFails(fake.transport()), fake.transport()):
        async with fake.client(transport=transport, event_hooks=hooks, telemetry=False) as alloy:
            run = alloy.actions.execute_many(jobs, checkpoint=checkpoint)
            async with run:
                _ = [o async for o in run]
    assert len(fake.executions) == 1  # the server's record: never twice


@pytest.mark.parametrize("status", [521, 522, 523])
async def test_a_hook_raising_after_a_cdn_5xx_leaves_the_post_unsent_again(
    status: int, tmp_path: Path
) -> None:
    """A response hook raising on any non-2xx (raise-for-status) after a CDN 52x: a POST may
    have acted, so the job is journaled as failed, not "not acted on". Catches: two rules for
    "did not act" (the hook's judgement forgetting the intent where the engine keeps it)."""
    fake = FakeAlloy()
    jobs = _jobs(fake, 1)
    checkpoint = tmp_path / "wal.db"

    def raise_for_status(event: Any) -> None:
        if event.status >= 400:
            raise RuntimeError(f"HTTP {event.status}")

    fake.fail("execute", status)
    async with fake.client(event_hooks={"response": [raise_for_status]}, telemetry=False) as a:
        run = a.actions.execute_many(jobs, checkpoint=checkpoint)
        async with run:
            _ = [o async for o in run]
    assert dict(read_journal(checkpoint)) == {"k0": "failed"}
