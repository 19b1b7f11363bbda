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
    ServerError,
)
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
