"""Shared test setup.

* asyncio debug mode is on for every loop (``asyncio_debug = true`` in pyproject.toml) and every
  warning is an error, so a leaked session, task or socket fails the test.
* ``@pytest.mark.virtual_time`` runs a test on :class:`VirtualTimeLoop`: sleeps, backoff and
  timeouts finish at once, and ``loop.time()`` tells how much virtual time passed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest

from alloy_async.testing.clock import VirtualTimeLoop


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "virtual_time: run this test on the virtual-time event loop")


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    if item.get_closest_marker("virtual_time") is not None:
        return {"virtual": VirtualTimeLoop}
    return {"real": asyncio.new_event_loop}
