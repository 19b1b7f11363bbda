"""pytest plugin (auto-loaded): a ``fake_alloy`` fixture for testing code that uses alloy-async.

``fake_alloy`` is a fresh :class:`~alloy_async.testing.FakeAlloy`; ``fake_alloy.client()`` gives
an :class:`~alloy_async.AlloyClient` wired to it, with no network and no API key needed.
"""

from __future__ import annotations

import pytest

from .fake import FakeAlloy


@pytest.fixture
def fake_alloy() -> FakeAlloy:
    """A fresh in-memory Alloy API (seed 0)."""
    return FakeAlloy(seed=0)
