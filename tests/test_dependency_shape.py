"""What the SDK takes from its dependencies' internals is checked, naming the release.

``distributed/taskiq.py`` subclasses taskiq-redis's ``RedisStreamBroker`` and reads its settings
back as attributes; a release that renames one must fail here (and in ``make_broker``), naming
the dependency and its version, rather than deep in a worker, mid-run.
"""

from __future__ import annotations

import importlib.metadata
from typing import Any

import pytest
from taskiq.receiver import Receiver

from alloy_async.distributed.taskiq import DEFAULT_MAXLEN, check_dependency_shape, make_broker
from alloy_async.errors import ConfigurationError

URL = "redis://127.0.0.1:1/0"  # never connected: building a broker opens nothing


def test_the_installed_taskiq_redis_has_what_the_broker_reads() -> None:
    """Catches: a taskiq-redis release that renames or stops storing a setting the broker
    reads back (``consumer_name``, ``count``, ``idle_timeout``...)."""
    broker = make_broker(URL, queue="q1", idle_timeout=2.5)
    version = importlib.metadata.version("taskiq-redis")
    why = f"taskiq-redis {version} stores the broker's settings elsewhere"
    assert (broker.queue_name, broker.consumer_group_name) == ("q1", "q1"), why
    assert broker.idle_timeout == 2500, why
    assert broker.count == 1, why
    assert broker.maxlen == DEFAULT_MAXLEN, why
    assert isinstance(broker.consumer_name, str), why
    assert broker.is_worker_process is False, why


def test_a_missing_attribute_is_named_with_the_installed_versions() -> None:
    """Catches: a shape check that lets a renamed attribute through, or whose error does not
    say which release is installed."""
    broker = make_broker(URL, idle_timeout=1.0)
    del broker.consumer_name
    with pytest.raises(ConfigurationError) as caught:
        check_dependency_shape(broker, idle_timeout_ms=1000)
    message = str(caught.value)
    assert "RedisStreamBroker.consumer_name" in message
    assert f"taskiq-redis {importlib.metadata.version('taskiq-redis')}" in message
    assert f"taskiq {importlib.metadata.version('taskiq')}" in message


def test_a_changed_unit_or_keyword_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """Catches: a release that reads ``idle_timeout`` in seconds, or a ``Receiver`` that
    dropped a keyword ``serve()`` passes."""
    broker = make_broker(URL, idle_timeout=1.0)
    with pytest.raises(ConfigurationError, match=r"idle_timeout \(in milliseconds\)"):
        check_dependency_shape(broker, idle_timeout_ms=7)

    original = Receiver.__init__

    def without_prefetch(self: Any, broker: Any, *, run_startup: bool = True) -> None:
        raise AssertionError("never called")

    monkeypatch.setattr(Receiver, "__init__", without_prefetch)
    with pytest.raises(ConfigurationError, match=r"Receiver\(max_async_tasks=\)"):
        check_dependency_shape(broker, idle_timeout_ms=1000)
    monkeypatch.setattr(Receiver, "__init__", original)
    check_dependency_shape(broker, idle_timeout_ms=1000)
