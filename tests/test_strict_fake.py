"""FakeAlloy's strict mode validates execute calls against the schemas its catalog serves."""

from __future__ import annotations

import pytest

from alloy_async import BadRequestError
from alloy_async.testing import FakeAlloy


async def test_strict_fake_refuses_what_the_actions_schema_refuses() -> None:
    fake = FakeAlloy(strict=True)
    user = fake.add_user("a@example.com")
    cred = fake.add_credential(user, "slack")
    async with fake.client() as alloy:
        with pytest.raises(BadRequestError) as caught:
            await alloy.actions.execute(
                "slack", "chat_postMessage", credential_id=cred, user_id=user,
                request_body={"channel": "C1", "text": 42},
            )  # fmt: skip
        assert caught.value.source == "THIRD_PARTY"
        assert "/request_body/text" in str(caught.value)
        assert fake.executions == []
        # What the schema accepts still runs, once.
        await alloy.actions.execute(
            "slack", "chat_postMessage", credential_id=cred, user_id=user,
            request_body={"channel": "C1", "text": "hi"},
        )  # fmt: skip
    assert len(fake.executions) == 1


async def test_a_lenient_fake_executes_a_body_of_the_wrong_type() -> None:
    fake = FakeAlloy()  # the control: without strict mode only required fields are checked
    user = fake.add_user("a@example.com")
    cred = fake.add_credential(user, "slack")
    async with fake.client() as alloy:
        await alloy.actions.execute(
            "slack", "chat_postMessage", credential_id=cred, user_id=user,
            request_body={"channel": "C1", "text": 42},
        )  # fmt: skip
    assert len(fake.executions) == 1
