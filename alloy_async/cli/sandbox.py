"""``alloy-async sandbox``: the simulator over HTTP on a loopback address."""

from __future__ import annotations

import asyncio
import time

import click

from ..errors import ConfigurationError
from ..sandbox import SandboxServer, fault_plan, parse_duration
from ..testing.fake import FakeAlloy
from ..testing.seed import seed_demo
from ._signals import wait_for_stop

__all__ = ["sandbox_cmd"]


@click.command("sandbox")
@click.option("--host", default="127.0.0.1", show_default=True, help="A loopback address.")
@click.option("--port", default=0, show_default=True, help="0 picks a free port.")
@click.option(
    "--faults",
    default="",
    help="Fault rates by kind, each 0..1, at most 1 in all: an HTTP status (429 and 503 may carry "
    "Retry-After), reset or reset_before (the connection drops before the server acts), "
    "reset_after (it drops after the action ran), slow (a latency spike). "
    "E.g. 429=0.05,503=0.02,reset=0.01",
)
@click.option("--latency", default="0ms", show_default=True, help="Latency per request (5ms, 1s).")
@click.option("--rate-limit", type=float, default=None, help="Requests/s before answering 429.")
@click.option(
    "--burst", type=int, default=None, help="Requests accepted at once under --rate-limit."
)
@click.option("--users", "n_users", default=1, show_default=True, help="Demo users to seed.")
@click.option(
    "--seed",
    type=int,
    default=None,
    help="Seed of the ids, data and faults (default: from the clock, so a restarted sandbox "
    "never hands out the previous one's ids; it is printed on stderr).",
)
def sandbox_cmd(
    host: str,
    port: int,
    faults: str,
    latency: str,
    rate_limit: float | None,
    burst: int | None,
    n_users: int,
    seed: int | None,
) -> None:
    """Serve the simulator over HTTP until interrupted."""
    if seed is None:
        seed = time.time_ns() % 2**31
    click.echo(f"sandbox seed {seed} (--seed {seed} gives the same ids again)", err=True)
    try:
        plan = fault_plan(faults, seed=seed)
        delay = parse_duration(latency)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    fake = FakeAlloy(seed=seed, faults=plan, latency=delay, record=False)
    seeded = seed_demo(fake, users=n_users)

    async def serve() -> None:
        async with SandboxServer(
            fake, host=host, port=port, rate_limit=rate_limit, burst=burst
        ) as server:
            click.echo(f"sandbox listening on {server.url}")
            click.echo(f"ALLOY_BASE_URL={server.url} ALLOY_API_KEY={fake.api_key}")
            click.echo(f"demo user {seeded[0][0]} has sendgrid credential {seeded[0][1]}")
            await wait_for_stop()

    try:
        asyncio.run(serve())
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None
