"""The deadline bounds the whole call, event hooks included (issue 22, item 7).

A 3 s hook made a call with ``RetryPolicy(deadline=1)`` take 3.0 s. On the virtual clock the
seconds are exact; what was sent is the server's record.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from alloy_async import RetryPolicy
from alloy_async.errors import APITimeoutError
from alloy_async.testing import FakeAlloy


def _fake() -> tuple[FakeAlloy, str, str]:
    fake = FakeAlloy(latency=0.1)
    user = fake.add_user("a@example.com")
    return fake, user, fake.add_credential(user, "slack")


async def _slow(event: Any) -> None:
    await asyncio.sleep(3.0)


@pytest.mark.virtual_time
@pytest.mark.parametrize("kind", ["request", "response"])
async def test_a_slow_hook_cannot_outlast_the_deadline(kind: str) -> None:
    """Catches: hooks awaited outside the deadline (the call took the hook's 3 s)."""
    fake, user, cred = _fake()
    loop = asyncio.get_running_loop()
    async with fake.client(
        event_hooks={kind: [_slow]}, retry=RetryPolicy(deadline=1.0), telemetry=False
    ) as alloy:
        started = loop.time()
        with pytest.raises(APITimeoutError) as caught:
            await alloy.actions.execute(
                "slack", "chat_postMessage", credential_id=cred, user_id=user,
                request_body={"channel": "C", "text": "hi"},
            )  # fmt: skip
        took = loop.time() - started
    assert took == pytest.approx(1.0, abs=0.01)  # virtual seconds: the deadline, not 3
    if kind == "request":  # nothing left before the hook ended: never sent
        assert caught.value.sent is False and fake.executions == []
    else:  # the server answered first: it ran, once, and the error says so
        assert caught.value.sent is True and len(fake.executions) == 1
        assert "after the server answered 200" in str(caught.value)


@pytest.mark.virtual_time
async def test_a_hook_within_the_deadline_changes_nothing() -> None:
    """Catches: a deadline applied to hooks that fit in it (a false timeout)."""
    fake, user, cred = _fake()

    async def quick(event: Any) -> None:
        await asyncio.sleep(0.2)

    async with fake.client(
        event_hooks={"request": [quick], "response": [quick]},
        retry=RetryPolicy(deadline=1.0),
        telemetry=False,
    ) as alloy:
        result = await alloy.actions.execute(
            "slack", "chat_postMessage", credential_id=cred, user_id=user,
            request_body={"channel": "C", "text": "hi"},
        )  # fmt: skip
    assert result is not None and len(fake.executions) == 1


@pytest.mark.virtual_time
async def test_a_hooks_own_timeout_error_is_its_own() -> None:
    """Catches: a hook's own TimeoutError taken for the deadline running out."""
    fake, user, cred = _fake()

    def own(event: Any) -> None:
        raise TimeoutError("the hook's own")

    async with fake.client(
        event_hooks={"response": [own]}, retry=RetryPolicy(deadline=1.0), telemetry=False
    ) as alloy:
        with pytest.raises(TimeoutError, match="the hook's own"):
            await alloy.actions.execute(
                "slack", "chat_postMessage", credential_id=cred, user_id=user,
                request_body={"channel": "C", "text": "hi"},
            )  # fmt: skip
