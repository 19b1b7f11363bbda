"""``alloy-async bulk``: execute every job of a JSON Lines file, one outcome line per job.

The command checks its options and files (:mod:`._bulk_options`), reads the jobs in a thread
(:mod:`._bulk_input`), runs them with ``execute_many`` under SIGTERM / SIGINT handlers, and
writes the outcomes (:mod:`._bulk_output`). Everything runs in the command's own process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, TextIO

import click
from click.core import ParameterSource

from ..client import AlloyClient
from ..engine import BulkRun
from ..models import BulkReport, ExecuteJob
from ._bulk_dry import dry_run
from ._bulk_input import BadLine, JobReader
from ._bulk_options import (
    DEFAULT_QUEUE,
    BulkOptions,
    BulkUsageError,
    RedisOptions,
    check_checkpoint,
    check_numbers,
    run_on_files,
)
from ._bulk_output import Tally, say_quarantined, write_outcomes
from ._common import common, open_client, say
from ._signals import Signals

__all__ = ["ClientFactory", "bulk", "run_bulk"]

ClientFactory = Callable[..., AbstractAsyncContextManager[AlloyClient]]


@click.command("bulk")
@common
@click.argument("jobs_file", type=click.Path(allow_dash=True))
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(allow_dash=True),
    help="Where one JSON outcome per line goes (appended to; - for stdout).",
)
@click.option("--concurrency", default=32, show_default=True, help="Jobs in flight (>= 1).")
@click.option("--per-user", type=int, default=None, help="Jobs in flight per user (>= 1).")
@click.option(
    "--per-connector", type=int, default=None, help="Jobs in flight per connector (>= 1)."
)
@click.option("--rate", type=float, default=None, help="Requests per second (> 0).")
@click.option(
    "--burst",
    type=int,
    default=None,
    help="With --rate: at most this many requests in any burst/rate seconds (>= 1; default a "
    "tenth of a second's worth).",
)
@click.option(
    "--checkpoint",
    type=click.Path(),
    default=None,
    help="Journal of finished jobs: a rerun skips them (one run at a time per journal).",
)
@click.option(
    "--grace",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds jobs in flight get to finish after SIGTERM or SIGINT.",
)
@click.option("--ordered", is_flag=True, help="Write outcomes in input order.")
@click.option(
    "--validate",
    is_flag=True,
    help="Check each job against its action's JSON Schema first; invalid jobs are not sent.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Only check every job against its action's schema: send nothing, write an outcome "
    "line for each invalid job.",
)
@click.option(
    "--redis",
    "redis_url",
    default=None,
    metavar="URL",
    help="Run on the workers (alloy-async worker) that share this Redis; needs --namespace.",
)
@click.option(
    "--namespace",
    default=None,
    help="With --redis: the run's name; a rerun with the same name resumes it.",
)
@click.option(
    "--queue",
    default=None,
    help=f"With --redis: the workers' queue (default {DEFAULT_QUEUE}).",
)
def bulk(
    api_key: str | None, base_url: str | None, sandbox: bool, as_json: bool, **opts: Any
) -> None:
    """Execute every job of a JSON Lines file (- for stdin); write one outcome per line.

    Each input line is an object with connectorId, actionId, credentialId and optionally
    userId, requestBody, queryParameters, pathParams, additionalHeaders, key (snake_case works
    too). Bad lines (not UTF-8, not JSON, not a job) and, with --checkpoint, repeated keys are
    reported on stderr with their line number and skipped. Jobs are read as they arrive: with
    -, a job written to stdin runs while stdin stays open.

    SIGTERM or SIGINT stops dispatch and gives jobs in flight --grace seconds to finish; a
    second signal gives up on them at once (their outcome is unknown). Every job that was
    dispatched gets its outcome line; jobs never dispatched get none, and a rerun with the
    same --checkpoint runs them (and never re-sends a finished or outcome-unknown job).

    With --redis URL --namespace NAME the jobs run on worker processes (alloy-async worker,
    on any machine that reaches the Redis), sent in chunks as they are read; --rate,
    --per-user and --per-connector hold across all the workers; --concurrency, if given,
    caps this run's calls in flight in each worker. The namespace's journal on Redis replaces
    --checkpoint: a rerun with the same namespace skips the keys --out already has, writes
    the stored outcome of every other finished job, and never sends a job twice. A signal
    stops the sending; the chunks outstanding get --grace seconds to finish.

    \b
    Exit codes:
      0    every job succeeded
      1    a bad line, a duplicate, a failed or outcome-unknown job, or an error
      2    bad options or files, the --checkpoint in use by another run, or a --redis
           that cannot be used at start
      130  stopped by SIGINT (128 + 2)
      143  stopped by SIGTERM (128 + 15)
    """
    redis_url, namespace, queue = opts.pop("redis_url"), opts.pop("namespace"), opts.pop("queue")
    settings = BulkOptions(**opts)
    if settings.validate and settings.dry_run:
        raise BulkUsageError("--validate and --dry-run: choose one (--dry-run sends nothing)")
    if (settings.validate or settings.dry_run) and redis_url is not None:
        raise BulkUsageError("--validate and --dry-run are not available with --redis yet")
    if redis_url is not None or namespace is not None or queue is not None:
        if redis_url is None or namespace is None:
            raise BulkUsageError("--redis and --namespace go together")
        if sandbox:
            raise BulkUsageError("--sandbox cannot be used with --redis: the workers call the API")
        from ._bulk_redis import run_redis_bulk

        # --concurrency caps this run's calls per worker only when given (else the workers').
        given = click.get_current_context().get_parameter_source("concurrency")
        per_worker = settings.concurrency if given is not ParameterSource.DEFAULT else None
        where = RedisOptions(redis_url, namespace, queue or DEFAULT_QUEUE, per_worker)
        code = run_redis_bulk(settings, where)
        if code:
            sys.exit(code)
        return

    def client(**kwargs: Any) -> AbstractAsyncContextManager[AlloyClient]:
        return open_client(api_key, base_url, sandbox, **kwargs)

    code = run_bulk(settings, client)
    if code:
        sys.exit(code)


# -- signals -------------------------------------------------------------------------------


class _Stopper:
    """What a signal does to the run (handled by :class:`._signals.Signals`).

    First signal: ``run.stop(grace=...)``: nothing new is dispatched, calls in flight get
    ``grace`` seconds. Second signal: ``grace=0``: they are given up now (OutcomeUnknownError).
    """

    def __init__(self, grace: float) -> None:
        self._grace = grace
        self.run: BulkRun | None = None
        self.signals = Signals(self._stop, self._give_up)

    def _stop(self, sig: signal.Signals) -> None:
        name = sig.name
        if self.run is None:
            say(f"{name} received before the run started: nothing was executed", "yellow")
            return
        if self._grace > 0:
            say(
                f"{name} received: dispatch stopped; jobs in flight get {self._grace:g} s "
                f"to finish (send {name} again to give up on them now)",
                "yellow",
            )
        else:
            say(f"{name} received: dispatch stopped; giving up on jobs in flight", "yellow")
        self.run.stop(f"{name} received", grace=self._grace)

    def _give_up(self, sig: signal.Signals) -> None:
        if self.run is None:
            return
        say(
            f"{sig.name} received again: giving up on jobs in flight now "
            "(each is reported as OutcomeUnknownError and never re-sent)",
            "yellow",
        )
        self.run.stop(f"{sig.name} received", grace=0)


# -- the run -------------------------------------------------------------------------------


def run_bulk(opts: BulkOptions, client: ClientFactory) -> int:
    """Check everything, run, return the exit code (raises :class:`BulkUsageError`)."""
    check_numbers(opts)

    def check() -> None:
        if opts.checkpoint is not None:
            check_checkpoint(opts.checkpoint, opts)

    return run_on_files(
        opts, lambda fd, close, out: _bulk(opts, fd, close, out, client), check=check
    )


async def _bulk(
    opts: BulkOptions, fd: int, close_fd: bool, out: TextIO, client: ClientFactory
) -> int:
    stopper = _Stopper(opts.grace)
    with stopper.signals:
        try:
            reader = JobReader(fd, asyncio.get_running_loop(), close_fd=close_fd)
        except BaseException:
            if close_fd:
                os.close(fd)
            raise
        try:
            if opts.dry_run:
                async with client(max_connections=opts.concurrency) as alloy:
                    return await dry_run(opts, reader, out, alloy)
            return await _execute(opts, reader, out, client, stopper)
        finally:
            reader.close()


async def _execute(
    opts: BulkOptions, reader: JobReader, out: TextIO, client: ClientFactory, stopper: _Stopper
) -> int:
    tally = Tally()
    # id(job) -> (line number, job): the job is held so its id cannot be reused while listed;
    # an entry leaves when the job's outcome or skip arrives, so the map stays small.
    lines_of: dict[int, tuple[int, ExecuteJob]] = {}

    async def jobs() -> AsyncIterator[ExecuteJob]:
        async for item in reader.items():
            if isinstance(item, BadLine):
                tally.bad_line(item)
                continue
            number, job = item
            lines_of[id(job)] = (number, job)
            yield job

    def on_skip(job: ExecuteJob, reason: str) -> None:
        entry = lines_of.pop(id(job), None)
        if reason == "duplicate":
            where = f"line {entry[0]}" if entry is not None else "a line"
            tally.duplicate(where, job.effective_key)

    async with client(max_connections=opts.concurrency) as alloy:
        signals = stopper.signals
        if signals.exit_code:  # stopped while connecting: nothing was sent
            return signals.exit_code
        run = alloy.actions.execute_many(
            jobs(),
            concurrency=opts.concurrency,
            per_user=opts.per_user,
            per_connector=opts.per_connector,
            rate=opts.rate,
            burst=opts.burst,
            ordered=opts.ordered,
            checkpoint=opts.checkpoint,
            on_skip=on_skip,
            validate=opts.validate,
        )
        stopper.run = run
        try:
            await write_outcomes(run, out, lines_of, opts)
        finally:
            signals.ignore()  # the run is over; we are about to exit anyway
        report = run.report
    return _verdict(opts, report, tally, signals)


def _verdict(opts: BulkOptions, report: BulkReport, tally: Tally, signals: Signals) -> int:
    """Say how the run ended, and the exit code: 0, 1 (a job failed, was unknown, bad or a
    duplicate), or the stopping signal's."""
    say(report.summary())
    if report.quarantined:
        again = " with the same --checkpoint" if opts.checkpoint else ""
        say_quarantined(report.quarantined, report.quarantined_credentials, again)
    if tally.bad:
        say(f"{tally.bad} bad line(s) skipped")
    if signals.received is not None:
        name = signals.received.name
        if opts.checkpoint is not None:
            say(
                f"stopped by {name}: rerun with the same --checkpoint to run the jobs not "
                "dispatched (finished and outcome-unknown jobs are not sent again)"
            )
        else:
            say(f"stopped by {name}; without --checkpoint a rerun executes every job again")
        return signals.exit_code
    if tally.bad or tally.duplicates or report.failed or report.outcome_unknown:
        return 1
    return 0
