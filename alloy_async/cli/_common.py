"""What every command shares: the common options, the client, running a coroutine, output."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import attrs
import click
import orjson
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .._convert import unstructure
from ..client import AlloyClient
from ..errors import AlloyError
from ..sandbox import SandboxServer
from ..testing.fake import FakeAlloy
from ..testing.seed import seed_demo

__all__ = [
    "cell",
    "common",
    "emit",
    "err_console",
    "json_arg",
    "open_client",
    "run_async",
    "say",
]

T = TypeVar("T")

#: Progress bars, tables and messages meant for a person go to stderr.
err_console = Console(stderr=True)


def say(text: str, style: str | None = None) -> None:
    """One line on stderr: never wrapped, never read as rich markup."""
    shown = escape(text) if style is None else f"[{style}]{escape(text)}[/]"
    err_console.print(shown, soft_wrap=True, highlight=False)


def run_async(coro: Awaitable[T]) -> T:
    """``asyncio.run`` with an SDK error turned into click's one-line error (exit code 1)."""
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except AlloyError as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from None


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
async def open_client(
    api_key: str | None, base_url: str | None, sandbox: bool, **kwargs: Any
) -> AsyncIterator[AlloyClient]:
    """The client the common options name; with ``--sandbox``, one on a fresh seeded sandbox."""
    if not sandbox:
        async with AlloyClient(api_key, base_url=base_url, **kwargs) as alloy:
            yield alloy
        return
    fake = FakeAlloy(seed=0)
    seed_demo(fake, users=1)
    async with (
        SandboxServer(fake) as server,
        AlloyClient(fake.api_key, base_url=server.url, **kwargs) as alloy,
    ):
        yield alloy


def _to_plain(value: Any) -> Any:
    if attrs.has(type(value)):
        return unstructure(value)
    if isinstance(value, list):
        return [_to_plain(v) for v in value]
    return value


def emit(value: Any, as_json: bool, columns: list[str] | None = None) -> None:
    """Print a result: indented JSON (``--json``, not a terminal, or no columns), else a table."""
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
        table.add_row(*(cell(row.get(c)) for c in columns))
    Console().print(table)


def cell(value: Any) -> str:
    """A value as a table cell: lists joined with commas, None empty."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)


def json_arg(name: str, text: str | None) -> Any:
    """An option's JSON text, parsed; click's bad-parameter error (exit code 2) if it is not."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint=name) from None
