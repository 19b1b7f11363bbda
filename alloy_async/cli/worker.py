"""``alloy-async worker``: a process that runs the chunks ``alloy-async bulk --redis`` sends.

Needs the ``taskiq`` extra; :mod:`alloy_async.distributed.taskiq` (imported when the command
runs, so that ``alloy-async --help`` works without it) has the broker, the task and the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import sys
from contextlib import AbstractAsyncContextManager
from typing import Any

import click

from ..client import AlloyClient
from ._bulk_options import DEFAULT_QUEUE, BulkUsageError, check_redis_reachable, check_redis_url
from ._common import common, open_client, run_async, say
from ._signals import Signals

__all__ = ["worker"]

#: Seconds between progress lines on stderr (only when something changed).
PROGRESS_EVERY = 10.0


@click.command("worker")
@common
@click.option("--redis", "redis_url", required=True, metavar="URL", help="The shared Redis.")
@click.option(
    "--concurrency", default=32, show_default=True, help="Calls in flight in this worker."
)
@click.option(
    "--queue", default=DEFAULT_QUEUE, show_default=True, help="The queue to take chunks from."
)
@click.option(
    "--idle-timeout",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds before the chunks of a worker that stopped answering go to another one.",
)
@click.option(
    "--grace",
    type=float,
    default=20.0,
    show_default=True,
    help="Seconds the chunks running get to finish after SIGTERM or SIGINT.",
)
def worker(
    api_key: str | None,
    base_url: str | None,
    sandbox: bool,
    as_json: bool,
    redis_url: str,
    concurrency: int,
    queue: str,
    idle_timeout: float,
    grace: float,
) -> None:
    """Run the chunks of jobs that `alloy-async bulk --redis` sends, until stopped.

    Start as many as you like, on any machine that reaches the Redis: they share the
    namespace's rate budget, per-user and per-connector caps and journal, so no job is ever
    sent twice. Prints "worker ready" on stdout once it listens, then progress on stderr.

    SIGTERM or SIGINT: no new chunk is taken; the chunks running get --grace seconds to
    finish; a second signal gives up on them at once. A chunk given up on (or held by a
    worker that was killed) goes to another worker after --idle-timeout seconds; its jobs
    that were in flight are reported outcome-unknown, never sent again.

    \b
    Exit codes:
      0    stopped by a signal after every chunk it started finished
      1    an error (Redis lost for longer than the outage limit)
      2    bad options, or a --redis that cannot be used at start (down, wrong password)
      130  SIGINT, 143 SIGTERM: chunks were given up on (128 + the signal)
    """
    if concurrency < 1:
        raise BulkUsageError(f"--concurrency must be at least 1, got {concurrency}")
    if not (math.isfinite(idle_timeout) and idle_timeout >= 1):
        raise BulkUsageError(f"--idle-timeout must be 1 second or more, got {idle_timeout:g}")
    if not (math.isfinite(grace) and grace >= 0):
        raise BulkUsageError(f"--grace must be a number of seconds, 0 or more, got {grace:g}")
    check_redis_url(redis_url)
    try:
        from ..distributed import taskiq as _distributed  # noqa: F401
    except ImportError as exc:
        raise BulkUsageError(
            f"the worker needs the taskiq extra: pip install 'alloy-async[taskiq]' ({exc})"
        ) from None

    def client() -> AbstractAsyncContextManager[AlloyClient]:
        return open_client(api_key, base_url, sandbox, max_connections=concurrency)

    _quiet_logs()
    code = run_async(_work(client, redis_url, concurrency, queue, idle_timeout, grace))
    if code:
        sys.exit(code)


class _Brief(logging.Formatter):
    """One line per record: no traceback (a chunk's failure is reported in one line)."""

    def formatException(self, ei: Any) -> str:
        return ""


def _quiet_logs() -> None:
    # taskiq's own warnings may quote a message (the jobs: bodies, headers), so only its
    # errors are shown; ours never hold a job or a secret.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Brief("%(name)s: %(message)s"))
    for name, level in (("taskiq", logging.ERROR), ("alloy_async.distributed", logging.INFO)):
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.addHandler(handler)
        logger.propagate = False


async def _work(
    client: Any, url: str, concurrency: int, queue: str, idle_timeout: float, grace: float
) -> int:
    from ..distributed.taskiq import ChunkRunner, make_broker, serve

    stop, abort = asyncio.Event(), asyncio.Event()

    def on_stop(sig: signal.Signals) -> None:
        say(
            f"{sig.name} received: taking no new chunk; the chunks running get {grace:g} s "
            f"to finish (send {sig.name} again to give up on them now)",
            "yellow",
        )
        stop.set()

    def on_give_up(sig: signal.Signals) -> None:
        say(f"{sig.name} received again: giving up on the chunks running", "yellow")
        abort.set()

    await check_redis_reachable(url)
    signals = Signals(on_stop, on_give_up)
    runner = ChunkRunner(url, client, concurrency=concurrency)
    broker = make_broker(url, queue=queue, idle_timeout=idle_timeout, runner=runner)

    def ready() -> None:
        click.echo("worker ready")
        sys.stdout.flush()

    ticker = asyncio.create_task(_progress(runner))
    try:
        with signals:
            finished = await serve(broker, runner, stop=stop, abort=abort, grace=grace, ready=ready)
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
    say(_line(runner) + ("" if finished else "; chunks given up on go to another worker"))
    return 0 if finished else signals.exit_code


def _line(runner: Any) -> str:
    return (
        f"worker: {runner.chunks} chunk(s), {runner.jobs} job(s): {runner.ok} ok, "
        f"{runner.failed} failed; {runner.errors} chunk(s) failed"
    )


async def _progress(runner: Any) -> None:
    shown = ""
    while True:
        await asyncio.sleep(PROGRESS_EVERY)
        line = _line(runner)
        if line != shown:
            say(line)
            shown = line
