"""The API key and credentials never appear in logs, reprs, exception texts or tracebacks."""

from __future__ import annotations

import logging
import traceback

import pytest

from alloy_async import AlloyClient, AlloyError
from alloy_async._core import configure_logging_from_env, logger
from alloy_async.testing import FakeAlloy, Fault

SECRET = "sk_live_THIS_MUST_NEVER_LEAK_93f1c0"

pytestmark = pytest.mark.virtual_time


async def test_key_never_in_logs_reprs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    """Drive successes, retries and every failure kind at DEBUG; scan everything produced."""
    fake = FakeAlloy(api_key=SECRET)
    user = fake.add_user("u@example.com")
    cred = fake.add_credential(user, "slack")
    fake.fail("connectors.list", 503, retry_after="1")
    fake.script("execute", Fault(reset="after"))
    texts: list[str] = []
    caplog.set_level(logging.DEBUG, logger="alloy_async")
    async with fake.client() as alloy:
        texts += [repr(alloy), repr(alloy._requester), repr(alloy.for_user(user))]
        await alloy.request("GET", "/connectors")
        calls = [
            alloy.request("GET", "/connectors/{c}", path_params={"c": "missing"}),
            alloy.request(
                "POST",
                "/connectors/{c}/actions/{a}/execute",
                path_params={"c": "slack", "a": "chat_postMessage"},
                json={"credentialId": cred, "requestBody": {"channel": "C", "text": "t"}},
                user_id=user,
            ),
            AlloyClient("sk_wrong_key", transport=fake.transport()).request("GET", "/users"),
        ]
        for call in calls:
            try:
                await call
            except AlloyError as exc:
                texts += [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
                texts += [repr(getattr(exc, "body", None))]
        texts += [repr(r) for r in fake.transport().requests]
        texts += [repr(r) for r in fake.requests]
    texts += [r.getMessage() for r in caplog.records]
    assert any("GET /connectors" in t for t in texts)  # logging really happened
    assert len(caplog.records) >= 4
    for text in texts:
        assert SECRET not in text
        assert SECRET[8:20] not in text


def test_env_switch_turns_logging_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """ALLOY_LOG=debug attaches one handler at DEBUG, once."""
    monkeypatch.setenv("ALLOY_LOG", "debug")
    before = list(logger.handlers)
    try:
        configure_logging_from_env()
        configure_logging_from_env()
        added = [h for h in logger.handlers if h not in before]
        assert len(added) == 1
        assert logger.level == logging.DEBUG
    finally:
        for h in logger.handlers[:]:
            if h not in before:
                logger.removeHandler(h)
        logger.setLevel(logging.NOTSET)
