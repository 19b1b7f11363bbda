"""``alloy-async demo``: users, credentials, then ``execute_many`` against a sandbox."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import attrs
import click
import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .._http import is_loopback
from ..client import AlloyClient
from ..models import BulkReport, ExecuteJob, JobOutcome
from ..sandbox import SandboxServer, fault_plan, parse_duration
from ..testing.fake import FakeAlloy
from ._common import cell, common, err_console, run_async

__all__ = ["DemoSettings", "demo"]


@click.command("demo")
@common
@click.option("--users", "n_users", default=200, show_default=True, help="End users to create.")
@click.option("--jobs", "n_jobs", default=5000, show_default=True, help="Jobs to execute.")
@click.option("--concurrency", default=64, show_default=True, help="Jobs in flight.")
@click.option("--per-user", default=2, show_default=True, help="Concurrent jobs per user.")
@click.option(
    "--heavy-share",
    default=0.5,
    show_default=True,
    help="Share of jobs belonging to one heavy user (shows fairness).",
)
@click.option(
    "--faults",
    default="429=0.0005,503=0.0005,reset=0.002,reset_after=0.001",
    show_default=True,
    help="Fault rates injected on execute (each 429 or 503 cools the connector for 0.2 s: "
    "rare enough that the heavy user stays bound by --per-user, not by the cool-downs).",
)
@click.option("--latency", default="2ms", show_default=True, help="Server latency per request.")
@click.option(
    "--seed", default=0, show_default=True, help="Seed of the sandbox's ids, data and faults."
)
def demo(
    api_key: str | None, base_url: str | None, sandbox: bool, as_json: bool, **opts: Any
) -> None:
    """Bulk fan-out against the built-in sandbox: users, credentials, then execute_many.

    With --base-url (a loopback sandbox started by `alloy-async sandbox`) the demo runs against
    that server instead, so the client's CPU is measured on its own.
    """
    settings = DemoSettings(**opts)
    if settings.n_users < 1 or settings.n_jobs < 0:
        raise click.BadParameter("--users must be >= 1 and --jobs >= 0")
    if base_url and not sandbox:
        if not is_loopback(urlsplit(base_url).hostname or ""):
            raise click.BadParameter(
                "the demo creates users and sends messages: it only runs against a sandbox "
                "on a loopback address",
                param_hint="--base-url",
            )
    else:
        base_url = None
    summary = run_async(_demo(settings, base_url, api_key, as_json))
    if as_json:
        click.echo(orjson.dumps(summary).decode())


@attrs.frozen
class DemoSettings:
    """The demo's knobs, as the command line gives them."""

    n_users: int
    n_jobs: int
    concurrency: int
    per_user: int
    heavy_share: float
    faults: str
    latency: str
    seed: int


@contextlib.asynccontextmanager
async def _demo_server(
    settings: DemoSettings, base_url: str | None, api_key: str | None
) -> AsyncIterator[tuple[str, str]]:
    if base_url is not None:
        yield base_url, api_key or "sk_test_fake_alloy_key"
        return
    # A sub-second Retry-After keeps the demo short while still exercising the cool-down.
    plan = fault_plan(settings.faults, seed=settings.seed, retry_after="0.2")
    if plan is not None:
        plan.routes = frozenset({"execute"})  # setup calls stay clean; the fan-out gets faults
    fake = FakeAlloy(
        seed=settings.seed, latency=parse_duration(settings.latency), faults=plan, record=False
    )
    async with SandboxServer(fake) as server:
        yield server.url, fake.api_key


async def _demo(
    settings: DemoSettings, base_url: str | None, api_key: str | None, as_json: bool
) -> dict[str, Any]:
    say = err_console.print if not as_json else (lambda *a, **k: None)
    tag = f"{os.getpid()}-{int(time.time())}"  # unique usernames on a reused sandbox
    async with _demo_server(settings, base_url, api_key) as (url, key):
        say(f"[bold]sandbox[/] on {url}")
        async with AlloyClient(key, base_url=url, max_connections=settings.concurrency) as alloy:
            t0 = time.perf_counter()
            users = await _onboard(alloy, settings.n_users, tag)
            say(f"created {len(users)} users with credentials in {time.perf_counter() - t0:.2f} s")
            run = alloy.actions.execute_many(
                _jobs(settings, users, tag),
                concurrency=settings.concurrency,
                per_user=settings.per_user,
            )
            outcomes = await _drain(run, settings.n_jobs, show=not as_json)
            stats = await alloy.request("GET", "/_sandbox/stats")
            executed = await alloy.request("GET", "/_sandbox/executions")
    # Only this demo's executions: the sandbox may be one that other runs used.
    mine = [
        e["request_body"]["subject"]
        for e in executed
        if str(e["request_body"].get("subject", "")).startswith(f"{tag}/")
    ]
    report = run.report
    summary = _summary(settings, report, stats, mine, len(outcomes))
    summary.update(_fairness(outcomes, users[0][0]))
    if not as_json:
        table = Table("metric", "value", "what it shows", title="execute_many against the sandbox")
        for k, v in summary.items():
            shown = cell([f"{a}={b}" for a, b in v.items()]) if isinstance(v, dict) else cell(v)
            table.add_row(k, shown, _EXPLAINED.get(k, ""))
        Console(stderr=True).print(table)
        say(report.summary())
    return summary


async def _onboard(alloy: AlloyClient, n_users: int, tag: str) -> list[tuple[str, str]]:
    """``n_users`` merchants, each with a SendGrid credential: ``(user id, credential id)``."""
    sem = asyncio.Semaphore(32)

    async def onboard(i: int) -> tuple[str, str]:
        async with sem:
            user = await alloy.users.create(
                f"merchant_{i}-{tag}@example.com", full_name=f"Merchant {i}"
            )
            cred = await alloy.credentials.create(
                "sendgrid",
                user_id=user.user_id,
                authentication_type="apiKey",
                data={"apiKey": f"SG.demo-{i}"},
            )
            assert cred.credential_id is not None
            return user.user_id, cred.credential_id

    return list(await asyncio.gather(*(onboard(i) for i in range(n_users))))


def _jobs(settings: DemoSettings, users: list[tuple[str, str]], tag: str) -> Iterator[ExecuteJob]:
    """The demo's jobs, read lazily: the heavy user's share first, then the others in turn."""
    n_users = len(users)
    heavy = int(settings.n_jobs * settings.heavy_share) if n_users > 1 else 0
    for n in range(settings.n_jobs):
        if n < heavy or n_users == 1:
            uid, cred = users[0]
        else:
            uid, cred = users[1 + n % (n_users - 1)]
        yield ExecuteJob(
            connector_id="sendgrid",
            action_id="sendEmail",
            credential_id=cred,
            user_id=uid,
            key=f"job-{tag}-{n}",
            request_body={"to": f"customer{n}@example.com", "subject": f"{tag}/{n}"},
        )


def _summary(
    settings: DemoSettings,
    report: BulkReport,
    stats: dict[str, Any],
    executed: list[str],
    outcomes: int,
) -> dict[str, Any]:
    """The run's figures: the client's report beside the server's own record (``stats``,
    and the subjects of this demo's ``executed`` calls: a repeat is a job sent twice)."""
    elapsed = report.wall_time or 1e-9
    return {
        "jobs": settings.n_jobs,
        "users": settings.n_users,
        "throughput_per_s": round(report.finished / elapsed, 1),
        "succeeded": report.succeeded,
        "failed": report.failed,
        "outcome_unknown": report.outcome_unknown,
        "by_error": dict(report.by_error),
        "attempts": report.attempts,
        "retries": report.retries,
        "throttled_seconds": round(report.throttled_seconds, 2),
        "wall_time_s": round(report.wall_time, 2),
        "peak_in_flight": stats["peak_in_flight"],
        "peak_in_flight_per_user": stats["peak_in_flight_per_user"],
        "faults_injected": stats["faults"],
        "executed_on_server": len(executed),
        "executed_twice": len(executed) - len(set(executed)),
        "outcomes": outcomes,
    }


#: The table's third column: what the fairness figures mean.
_EXPLAINED = {
    "light_users_99pct_done_after_outcomes": "99 % of the other users' jobs were done after "
    "this many outcomes: the heavy user's jobs came first in the input, yet the round-robin "
    "ran the others' first (the heavy user is held at --per-user)",
    "heavy_user_jobs_left_then": "the heavy user's jobs still to run at that point",
    "light_users_done_after_outcomes": "the last of the other users' jobs: later when a fault "
    "sent one back to the queue (a 429 or 503 cools the connector)",
}


def _fairness(outcomes: list[JobOutcome], heavy_user: str) -> dict[str, int]:
    """When the light users' jobs were done, counted in outcomes (see ``_EXPLAINED``)."""
    light = [i + 1 for i, o in enumerate(outcomes) if o.job.user_id != heavy_user]
    heavy = len(outcomes) - len(light)
    if not light:
        return {
            "light_users_99pct_done_after_outcomes": 0,
            "heavy_user_jobs_left_then": heavy,
            "light_users_done_after_outcomes": 0,
        }
    k = max(0, -(-len(light) * 99 // 100) - 1)  # the 99th percentile of the light jobs
    at = light[k]  # its outcome's number: the k light ones before it, the rest heavy
    return {
        "light_users_99pct_done_after_outcomes": at,
        "heavy_user_jobs_left_then": heavy - (at - 1 - k),
        "light_users_done_after_outcomes": light[-1],
    }


async def _drain(run: Any, total: int | None, *, show: bool) -> list[JobOutcome]:
    out: list[JobOutcome] = []
    if not show or not sys.stderr.isatty():
        async with run:
            async for outcome in run:
                out.append(outcome)
        return out
    columns = (
        TextColumn("[bold]executing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err_console, transient=False) as progress:
        task = progress.add_task("jobs", total=total, status="")
        async with run:
            async for outcome in run:
                out.append(outcome)
                progress.advance(task)
                if len(out) % 50 == 0:
                    r = run.report
                    progress.update(
                        task,
                        status=f"ok {r.succeeded} failed {r.failed} unknown {r.outcome_unknown}",
                    )
    return out
