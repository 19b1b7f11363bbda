"""The ``alloy-async`` command: a sandbox demo, bulk runs from JSON Lines, one-off calls.

Needs the ``cli`` extra (click, rich): ``pip install 'alloy-async[cli]'``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

try:
    import click
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise SystemExit(
        "the alloy-async command needs the cli extra: pip install 'alloy-async[cli]'"
    ) from exc

import attrs
import orjson

from . import __version__
from ._cli_bulk import BulkOptions, run_bulk
from .client import AlloyClient
from .errors import AlloyError, ConfigurationError
from .models import ExecuteJob, JobOutcome
from .sandbox import SandboxServer, fault_plan, parse_duration
from .testing.fake import FakeAlloy

__all__ = ["main"]

T = TypeVar("T")
err_console = Console(stderr=True)


def _run(coro: Awaitable[T]) -> T:
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except AlloyError as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from None


# -- common options ------------------------------------------------------------------------


def common(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--api-key``, ``--base-url``, ``--sandbox`` and ``--json`` on every command."""

    @click.option("--api-key", envvar="ALLOY_API_KEY", help="API key (or ALLOY_API_KEY).")
    @click.option("--base-url", envvar="ALLOY_BASE_URL", help="API base URL (or ALLOY_BASE_URL).")
    @click.option("--sandbox", is_flag=True, help="Run against an in-process sandbox (no key).")
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
    @functools.wraps(fn)
    def wrapper(**kwargs: Any) -> Any:
        return fn(**kwargs)

    return wrapper


@contextlib.asynccontextmanager
async def _client(
    api_key: str | None, base_url: str | None, sandbox: bool, **kwargs: Any
) -> AsyncIterator[AlloyClient]:
    if not sandbox:
        async with AlloyClient(api_key, base_url=base_url, **kwargs) as alloy:
            yield alloy
        return
    fake = FakeAlloy(seed=0)
    _seed_demo(fake, users=1)
    async with (
        SandboxServer(fake) as server,
        AlloyClient(fake.api_key, base_url=server.url, **kwargs) as alloy,
    ):
        yield alloy


def _seed_demo(fake: FakeAlloy, users: int) -> list[tuple[str, str]]:
    """Users named demo, demo-1, ... each with a SendGrid and a HubSpot credential."""
    out = []
    for i in range(users):
        uid = fake.add_user("demo" if i == 0 else f"demo-{i}", f"Demo User {i}")
        out.append((uid, fake.add_credential(uid, "sendgrid")))
        fake.add_credential(uid, "hubspot")
    return out


def _to_plain(value: Any) -> Any:
    if attrs.has(type(value)):
        from ._convert import unstructure

        return unstructure(value)
    if isinstance(value, list):
        return [_to_plain(v) for v in value]
    return value


def _emit(value: Any, as_json: bool, columns: list[str] | None = None) -> None:
    plain = _to_plain(value)
    if as_json or not sys.stdout.isatty() or columns is None:
        try:
            click.echo(orjson.dumps(plain, option=orjson.OPT_INDENT_2, default=str).decode())
        except TypeError:  # an integer past 64 bits (answers keep them exact)
            click.echo(json.dumps(plain, indent=2, default=str, ensure_ascii=False))
        return
    rows = plain if isinstance(plain, list) else [plain]
    table = Table(*columns)
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    Console().print(table)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)


def _json_arg(name: str, text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint=name) from None


# -- the group -----------------------------------------------------------------------------


@click.group()
@click.version_option(__version__, prog_name="alloy-async")
def main() -> None:
    """alloy-async: the async SDK for the Alloy Connectivity API, from the shell."""


# -- demo ----------------------------------------------------------------------------------


@main.command()
@common
@click.option("--users", "n_users", default=200, show_default=True, help="End users to create.")
@click.option("--jobs", "n_jobs", default=5000, show_default=True, help="Jobs to execute.")
@click.option("--concurrency", default=64, show_default=True)
@click.option("--per-user", default=2, show_default=True, help="Concurrent jobs per user.")
@click.option(
    "--heavy-share",
    default=0.5,
    show_default=True,
    help="Share of jobs belonging to one heavy user (shows fairness).",
)
@click.option(
    "--faults",
    default="429=0.005,503=0.002,reset=0.002,reset_after=0.001",
    show_default=True,
    help="Fault rates injected on execute.",
)
@click.option("--latency", default="2ms", show_default=True, help="Server latency per request.")
@click.option("--seed", default=0, show_default=True)
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
        from urllib.parse import urlsplit

        from ._http import is_loopback

        if not is_loopback(urlsplit(base_url).hostname or ""):
            raise click.BadParameter(
                "the demo creates users and sends messages: it only runs against a sandbox "
                "on a loopback address",
                param_hint="--base-url",
            )
    else:
        base_url = None
    summary = _run(_demo(settings, base_url, api_key, as_json))
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
    n_users, n_jobs = settings.n_users, settings.n_jobs
    async with _demo_server(settings, base_url, api_key) as (url, key):
        say(f"[bold]sandbox[/] on {url}")
        async with AlloyClient(key, base_url=url, max_connections=settings.concurrency) as alloy:
            t0 = time.perf_counter()
            sem = asyncio.Semaphore(32)
            tag = f"{os.getpid()}-{int(time.time())}"  # unique usernames on a reused sandbox

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

            users = await asyncio.gather(*(onboard(i) for i in range(n_users)))
            say(f"created {n_users} users with credentials in {time.perf_counter() - t0:.2f} s")
            heavy = int(n_jobs * settings.heavy_share) if n_users > 1 else 0

            def jobs() -> Iterator[ExecuteJob]:
                for n in range(n_jobs):
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

            run = alloy.actions.execute_many(
                jobs(), concurrency=settings.concurrency, per_user=settings.per_user
            )
            outcomes = await _drain(run, n_jobs, show=not as_json)
            report = run.report
            stats = await alloy.request("GET", "/_sandbox/stats")
            executed = await alloy.request("GET", "/_sandbox/executions")
    mine = [
        e["request_body"]["subject"]
        for e in executed
        if str(e["request_body"].get("subject", "")).startswith(f"{tag}/")
    ]
    elapsed = report.wall_time or 1e-9
    heavy_user = users[0][0]
    light_done = max(
        (i + 1 for i, o in enumerate(outcomes) if o.job.user_id != heavy_user), default=0
    )
    summary = {
        "jobs": n_jobs,
        "users": n_users,
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
        "executed_on_server": len(mine),
        "executed_twice": len(mine) - len(set(mine)),
        "outcomes": len(outcomes),
        # Fairness made visible: the other users' jobs are all done long before the heavy
        # user's (capped at --per-user) even though the heavy user's jobs came first.
        "light_users_done_after_outcomes": light_done,
    }
    if not as_json:
        table = Table("metric", "value", title="execute_many against the sandbox")
        for k, v in summary.items():
            shown = _cell([f"{a}={b}" for a, b in v.items()]) if isinstance(v, dict) else _cell(v)
            table.add_row(k, shown)
        Console(stderr=True).print(table)
        say(report.summary())
    return summary


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


# -- bulk ----------------------------------------------------------------------------------


@main.command()
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

    \b
    Exit codes:
      0    every job succeeded
      1    a bad line, a duplicate, a failed or outcome-unknown job, or an error
      2    bad options or files, or the --checkpoint is in use by another run
      130  stopped by SIGINT (128 + 2)
      143  stopped by SIGTERM (128 + 15)
    """
    settings = BulkOptions(**opts)

    def client(**kwargs: Any) -> contextlib.AbstractAsyncContextManager[AlloyClient]:
        return _client(api_key, base_url, sandbox, **kwargs)

    code = run_bulk(settings, client)
    if code:
        sys.exit(code)


# -- sandbox -------------------------------------------------------------------------------


@main.command("sandbox")
@click.option("--host", default="127.0.0.1", show_default=True, help="A loopback address.")
@click.option("--port", default=0, show_default=True, help="0 picks a free port.")
@click.option("--faults", default="", help="e.g. 429=0.05,503=0.02,reset=0.01")
@click.option("--latency", default="0ms", show_default=True)
@click.option("--rate-limit", type=float, default=None, help="Requests/s before answering 429.")
@click.option("--burst", type=int, default=None)
@click.option("--users", "n_users", default=1, show_default=True, help="Demo users to seed.")
@click.option("--seed", default=0, show_default=True)
def sandbox_cmd(
    host: str,
    port: int,
    faults: str,
    latency: str,
    rate_limit: float | None,
    burst: int | None,
    n_users: int,
    seed: int,
) -> None:
    """Serve the simulator over HTTP until interrupted."""
    try:
        plan = fault_plan(faults, seed=seed)
        delay = parse_duration(latency)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    fake = FakeAlloy(seed=seed, faults=plan, latency=delay, record=False)
    seeded = _seed_demo(fake, users=n_users)

    async def serve() -> None:
        async with SandboxServer(
            fake, host=host, port=port, rate_limit=rate_limit, burst=burst
        ) as server:
            click.echo(f"sandbox listening on {server.url}")
            click.echo(f"ALLOY_BASE_URL={server.url} ALLOY_API_KEY={fake.api_key}")
            click.echo(f"demo user {seeded[0][0]} has sendgrid credential {seeded[0][1]}")
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError):
                    loop.add_signal_handler(sig, stop.set)
            await stop.wait()

    try:
        asyncio.run(serve())
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None


# -- one-off calls -------------------------------------------------------------------------


def _call(
    kwargs: dict[str, Any],
    fn: Callable[[AlloyClient], Awaitable[Any]],
    columns: list[str] | None = None,
) -> None:
    as_json = kwargs.pop("as_json")

    async def go() -> Any:
        async with _client(
            kwargs.pop("api_key"), kwargs.pop("base_url"), kwargs.pop("sandbox")
        ) as a:
            return await fn(a)

    _emit(_run(go()), as_json, columns)


@main.group()
def users() -> None:
    """Create, list, read and delete users."""


@users.command("list")
@common
def users_list(**kw: Any) -> None:
    """Every user."""
    _call(kw, lambda a: a.users.list().to_list(), ["userId", "username", "fullName"])


@users.command("create")
@common
@click.argument("username")
@click.option("--full-name")
def users_create(username: str, full_name: str | None, **kw: Any) -> None:
    """Create a user."""
    _call(
        kw,
        lambda a: a.users.create(username, full_name=full_name),
        ["userId", "username", "fullName"],
    )


@users.command("get")
@common
@click.argument("user_id")
def users_get(user_id: str, **kw: Any) -> None:
    """One user, by id or username."""
    _call(kw, lambda a: a.users.get(user_id), ["userId", "username", "fullName"])


@users.command("delete")
@common
@click.argument("user_id")
def users_delete(user_id: str, **kw: Any) -> None:
    """Delete a user."""
    _call(kw, lambda a: a.users.delete(user_id))


@main.group()
def connectors() -> None:
    """The connector catalog."""


@connectors.command("list")
@common
@click.option("--category")
def connectors_list(category: str | None, **kw: Any) -> None:
    """Every connector (optionally of one category)."""
    _call(
        kw, lambda a: a.connectors.list(category=category).to_list(), ["id", "name", "categories"]
    )


@connectors.command("resources")
@common
@click.argument("connector_id")
def connectors_resources(connector_id: str, **kw: Any) -> None:
    """A connector's resources and their actions."""

    async def go(a: AlloyClient) -> Any:
        return [
            {"resource": r.name, "action": x.id, "name": x.name}
            for r in await a.connectors.resources(connector_id)
            for x in r.actions
        ]

    _call(kw, go, ["resource", "action", "name"])


@main.group()
def actions() -> None:
    """Inspect and execute actions."""


@actions.command("get")
@common
@click.argument("connector_id")
@click.argument("action_id")
def actions_get(connector_id: str, action_id: str, **kw: Any) -> None:
    """An action's schema."""
    _call(kw, lambda a: a.actions.get(connector_id, action_id))


@actions.command("execute")
@common
@click.argument("connector_id")
@click.argument("action_id")
@click.option("--credential-id", required=True)
@click.option("--user-id")
@click.option("--body", help="requestBody as JSON.")
@click.option("--query", help="queryParameters as JSON.")
@click.option("--path-params", help="pathParams as JSON.")
def actions_execute(
    connector_id: str,
    action_id: str,
    credential_id: str,
    user_id: str | None,
    body: str | None,
    query: str | None,
    path_params: str | None,
    **kw: Any,
) -> None:
    """Execute an action once."""
    request_body = _json_arg("--body", body)
    query_parameters = _json_arg("--query", query)
    params = _json_arg("--path-params", path_params)

    async def go(a: AlloyClient) -> Any:
        result = await a.actions.execute(
            connector_id,
            action_id,
            credential_id=credential_id,
            user_id=user_id,
            request_body=request_body,
            query_parameters=query_parameters,
            path_params=params,
        )
        return {"success": result.success, "data": result.data, "requestId": result.request_id}

    _call(kw, go)


@main.group()
def credentials() -> None:
    """A user's credentials."""


@credentials.command("metadata")
@common
@click.argument("connector_id")
def credentials_metadata(connector_id: str, **kw: Any) -> None:
    """What a connector needs to create a credential."""
    _call(
        kw,
        lambda a: a.credentials.metadata(connector_id),
        ["authenticationType", "authConfigRequired", "requiredFields"],
    )


@credentials.command("list")
@common
@click.argument("connector_id")
@click.option("--user-id", required=True)
def credentials_list(connector_id: str, user_id: str, **kw: Any) -> None:
    """A user's credentials for a connector."""
    _call(
        kw,
        lambda a: a.credentials.list(connector_id, user_id=user_id).to_list(),
        ["credentialId", "name", "type", "createdAt"],
    )


@credentials.command("create")
@common
@click.argument("connector_id")
@click.option("--user-id", required=True)
@click.option("--type", "auth_type", required=True, help="oauth2, apiKey, ...")
@click.option("--redirect-uri")
@click.option("--data", help="Connector inputs as JSON.")
def credentials_create(
    connector_id: str,
    user_id: str,
    auth_type: str,
    redirect_uri: str | None,
    data: str | None,
    **kw: Any,
) -> None:
    """Create a credential (prints oauthUrl or credentialId)."""
    inputs = _json_arg("--data", data)
    _call(
        kw,
        lambda a: a.credentials.create(
            connector_id,
            user_id=user_id,
            authentication_type=auth_type,
            redirect_uri=redirect_uri,
            data=inputs,
        ),
    )


@credentials.command("delete")
@common
@click.argument("connector_id")
@click.argument("credential_id")
@click.option("--user-id", required=True)
def credentials_delete(connector_id: str, credential_id: str, user_id: str, **kw: Any) -> None:
    """Delete a credential."""
    _call(kw, lambda a: a.credentials.delete(connector_id, credential_id, user_id=user_id))


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
