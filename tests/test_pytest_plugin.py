"""The pytest plugin installed with the package gives users a ``fake_alloy`` fixture."""

from __future__ import annotations

from alloy_async.testing import FakeAlloy


async def test_fake_alloy_fixture_is_provided(fake_alloy: FakeAlloy) -> None:
    """The entry-point plugin provides a fresh FakeAlloy wired to a working client."""
    assert isinstance(fake_alloy, FakeAlloy)
    async with fake_alloy.client() as alloy:
        user = await alloy.users.create("plugin@example.com")
    assert fake_alloy.users[user.user_id]["username"] == "plugin@example.com"
