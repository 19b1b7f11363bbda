"""Issue 23 item "one of each": one signal helper for every command, one job field table.

The commands' own behaviour under SIGINT / SIGTERM (messages, exit codes, what a second signal
does) is checked on real processes in ``test_cli_signals.py``, ``test_cli_bulk.py`` and
``test_distributed_cli.py``; these check the pieces they now share.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable

import attrs

from alloy_async.cli._bulk_redis import _job_mapping
from alloy_async.cli._signals import Signals, wait_for_stop
from alloy_async.models import ExecuteJob
from alloy_async.models._fields import BODY_PARTS, CAMEL, OPTIONAL, SNAKE

# -- signals ---------------------------------------------------------------------------------


async def _deliver(sig: signal.Signals, seen: asyncio.Event) -> None:
    """Send ``sig`` to this process and wait (bounded) until a handler noted it."""
    seen.clear()
    os.kill(os.getpid(), sig)
    await asyncio.wait_for(seen.wait(), timeout=10)


async def test_first_signal_stops_the_next_gives_up_and_the_first_sets_the_exit_code() -> None:
    """SIGTERM then SIGINT: the first calls on_stop, the second on_give_up, and the exit code
    is the first's (143). Catches: a second signal taken for a first (stop asked twice, never
    a give-up), the exit code of the last signal instead of the first, handlers left
    installed after the command (Ctrl-C would then do nothing)."""
    calls: list[tuple[str, signal.Signals]] = []
    seen = asyncio.Event()

    def note(what: str) -> Callable[[signal.Signals], None]:
        def handler(sig: signal.Signals) -> None:
            calls.append((what, sig))
            seen.set()

        return handler

    with Signals(note("stop"), note("give up")) as signals:
        assert signals.received is None and signals.exit_code == 0
        await _deliver(signal.SIGTERM, seen)
        await _deliver(signal.SIGINT, seen)
        await _deliver(signal.SIGINT, seen)
    assert calls == [
        ("stop", signal.SIGTERM),
        ("give up", signal.SIGINT),
        ("give up", signal.SIGINT),
    ]
    assert signals.received is signal.SIGTERM and signals.exit_code == 143
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_after_ignore_a_signal_does_nothing() -> None:
    """``bulk`` ignores signals once its run is over. Catches: a signal after the end still
    counted (a finished run reported as stopped, exit 143 instead of 0)."""
    calls: list[signal.Signals] = []
    signals = Signals(calls.append, calls.append)
    signals.ignore()
    signals._on_signal(signal.SIGTERM)  # what the loop calls on a signal
    assert calls == [] and signals.received is None and signals.exit_code == 0


async def test_wait_for_stop_returns_on_sigint() -> None:
    """Catches: a server command (``sandbox``) that does not stop on Ctrl-C."""
    before = signal.getsignal(signal.SIGINT)
    waiting = asyncio.create_task(wait_for_stop())
    await asyncio.sleep(0)  # one loop turn: the task runs up to its wait, handlers installed
    assert signal.getsignal(signal.SIGINT) is not before
    os.kill(os.getpid(), signal.SIGINT)
    await asyncio.wait_for(waiting, timeout=10)


# -- the job field table ---------------------------------------------------------------------


def test_the_field_table_is_execute_jobs_fields() -> None:
    """Catches: a field added to ExecuteJob but not to the table (its camelCase spelling then
    refused in a bulk input line, and dropped from the jobs ``bulk --redis`` sends)."""
    assert tuple(CAMEL) == tuple(attrs.fields_dict(ExecuteJob))
    assert {SNAKE[camel] for camel in CAMEL.values()} == set(CAMEL)
    optional = {a.name for a in attrs.fields(ExecuteJob) if a.default is None} - {"key"}
    assert set(OPTIONAL) == optional
    assert BODY_PARTS == ("requestBody", "queryParameters", "pathParams", "additionalHeaders")


def test_a_job_sent_to_the_workers_is_the_job_read() -> None:
    """The mapping ``bulk --redis`` puts in a chunk (camelCase, key made explicit) reads back
    as the same job, every field kept. Catches: an optional field missing from what the
    driver sends (a worker would run the job without its path params, say)."""
    job = ExecuteJob(
        "slack",
        "chat_postMessage",
        "cred",
        "user",
        {"text": "hi"},
        query_parameters={"q": 1},
        path_params={"id": "7"},
        additional_headers={"X-Trace": "t"},
    )
    sent = _job_mapping(job, 12)
    assert sent.pop("_line") == 12
    assert ExecuteJob.from_mapping(sent) == attrs.evolve(job, key=job.effective_key)
    bare = ExecuteJob("slack", "chat_postMessage", "cred", key="k")
    sent = _job_mapping(bare, 1)
    del sent["_line"]
    assert sent == {
        "connectorId": "slack",
        "actionId": "chat_postMessage",
        "credentialId": "cred",
        "key": "k",
    }
