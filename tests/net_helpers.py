"""Shared pieces of the network tests: a clean proxy environment, throwaway certificates,
reading the sandbox's own record of executions, and a loopback aiohttp server for one handler."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from alloy_async.sandbox import SandboxServer
from alloy_async.testing.tls import TestCertificates, make_test_certificates

PROXY_VARIABLES = [
    f"{name}{suffix}" for name in ("http", "https", "all", "no") for suffix in ("_proxy", "_PROXY")
]


def clear_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxy variable from the machine running the tests."""
    for name in [*PROXY_VARIABLES, *(n.upper() for n in PROXY_VARIABLES), "REQUEST_METHOD"]:
        monkeypatch.delenv(name, raising=False)


def certificates(directory: Path, **kwargs: Any) -> TestCertificates:
    """Throwaway certificates (the documented recipe)."""
    return make_test_certificates(directory, **kwargs)


async def executions(
    server: SandboxServer, certs: TestCertificates | None = None
) -> list[dict[str, Any]]:
    """The sandbox's own record of what it executed (``GET /_sandbox/executions``), over TLS
    with ``certs`` (the client certificate too) when given."""
    context = None
    if certs is not None:
        context = ssl.create_default_context(cafile=str(certs.ca_cert))
        context.load_cert_chain(certs.client_cert, certs.client_key)
    connector = aiohttp.TCPConnector(ssl=context) if context is not None else None
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(f"{server.url}/_sandbox/executions") as resp,
    ):
        rows: list[dict[str, Any]] = await resp.json()
        return rows


def every_text(exc: BaseException) -> str:
    """str, repr and the formatted traceback of ``exc`` and its whole chain."""
    return "\n".join([str(exc), repr(exc), "".join(traceback.format_exception(exc))])


@contextlib.asynccontextmanager
async def serve(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]], release: asyncio.Event
) -> AsyncIterator[str]:
    """A server on 127.0.0.1 answering every method and path with ``handler``; yields its base
    URL. ``release`` is set before it closes, so handlers still waiting on it end at once."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    test_server = TestServer(app, host="127.0.0.1")
    await test_server.start_server()
    try:
        yield str(test_server.make_url("")).rstrip("/")
    finally:
        release.set()
        await test_server.close()
