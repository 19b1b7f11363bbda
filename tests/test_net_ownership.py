"""Who closes a transport: the client owns the one it is given (httpx's rule); a caller's own
aiohttp session stays the caller's; transport options never silently dropped."""

from __future__ import annotations

import gc

import aiohttp
import pytest
from net_helpers import every_text

from alloy_async import AlloyClient, ConfigurationError
from alloy_async.sandbox import SandboxServer
from alloy_async.transports import AiohttpTransport


async def test_a_given_transport_is_closed_by_the_client() -> None:
    """``AlloyClient(transport=AiohttpTransport(...))`` used then closed: its session and
    connector are closed, nothing warns when collected (warnings are errors here), and closing
    the transport again is harmless.

    Catches: a given transport left open ("Unclosed client session" and "Unclosed connector"
    warnings, the issue's report)."""
    async with SandboxServer() as server:
        transport = AiohttpTransport(max_connections=4)
        async with AlloyClient(server.fake.api_key, base_url=server.url, transport=transport) as a:
            await a.connectors.list()
            session = transport._session
        assert session is not None and session.closed
        assert session.connector is None or session.connector.closed
        await transport.aclose()
        del session, transport
        gc.collect()


async def test_a_callers_own_session_stays_open() -> None:
    """``AiohttpTransport(session=own)``: closing the client closes the transport (it refuses
    work) but not the caller's session. Catches: the client closing what the caller owns."""
    async with SandboxServer() as server, aiohttp.ClientSession() as own:
        transport = AiohttpTransport(session=own)
        async with AlloyClient(server.fake.api_key, base_url=server.url, transport=transport) as a:
            await a.connectors.list()
        assert not own.closed
        async with own.get(f"{server.url}/_sandbox/stats") as resp:
            assert resp.status == 200
        with pytest.raises(ConfigurationError, match="closed"):
            await a.connectors.list()


@pytest.mark.parametrize(
    "option",
    [
        {"max_connections": 10},
        {"proxy": "http://svc:Secr3tPw@127.0.0.1:3128"},
        {"trust_env": False},
        {"verify": False},
        {"cert": "client.pem"},
    ],
)
async def test_transport_options_with_transport_are_refused(option: dict[str, object]) -> None:
    """A transport-level option given with ``transport=`` is a ConfigurationError naming it
    (without the proxy's credentials). Catches: max_connections silently dropped (the issue)."""
    transport = AiohttpTransport()
    with pytest.raises(ConfigurationError) as info:
        AlloyClient("k", transport=transport, **option)  # type: ignore[arg-type]
    (name,) = option
    assert str(info.value).startswith(name) and "transport=" in str(info.value)
    assert "Secr3tPw" not in every_text(info.value)
    await transport.aclose()


async def test_connector_options_with_a_callers_session_are_refused() -> None:
    """``AiohttpTransport(session=own, max_connections=...)`` (or proxy, verify...) is refused:
    the caller's session brings its own connector. Catches: the option silently dropped."""
    async with aiohttp.ClientSession() as own:
        for option in ({"max_connections": 5}, {"verify": False}, {"proxy": "http://h:1"}):
            with pytest.raises(ConfigurationError, match=f"^{next(iter(option))}"):
                AiohttpTransport(session=own, **option)  # type: ignore[arg-type]
