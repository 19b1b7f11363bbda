"""Shared test setup.

* asyncio debug mode is on for every loop (``asyncio_debug = true`` in pyproject.toml) and every
  warning is an error, so a leaked session, task or socket fails the test.
* ``@pytest.mark.virtual_time`` runs a test on :class:`VirtualTimeLoop`: sleeps, backoff and
  timeouts finish at once, and ``loop.time()`` tells how much virtual time passed.
* The machine's proxy and CA settings are dropped (``AlloyClient`` honours them by default,
  ``trust_env=True``): the suite talks to 127.0.0.1 only, never through a proxy it did not
  start; the tests of those settings set them themselves.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping

import pytest

from alloy_async.testing.clock import VirtualTimeLoop

_MACHINE_NETWORK = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
)


def pytest_configure(config: pytest.Config) -> None:
    for name in _MACHINE_NETWORK:  # subprocesses of the suite inherit the cleared environment
        os.environ.pop(name, None)
        os.environ.pop(name.lower(), None)
    config.addinivalue_line("markers", "virtual_time: run this test on the virtual-time event loop")


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    if item.get_closest_marker("virtual_time") is not None:
        return {"virtual": VirtualTimeLoop}
    return {"real": asyncio.new_event_loop}
