"""Proxies over real loopback servers: a forward proxy of our own (tests/forward_proxy.py) that
counts what it relays, reached through the environment and through ``proxy=``."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator

import pytest
from forward_proxy import ForwardProxy
from net_helpers import certificates, clear_proxy_env, every_text

from alloy_async import AlloyClient, APIConnectionError, ConfigurationError, ProxyError
from alloy_async.sandbox import SandboxServer
from alloy_async.testing.tls import TestCertificates


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_proxy_env(monkeypatch)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TestCertificates:
    return certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(params=["http", "https"])
async def sandbox(
    request: pytest.FixtureRequest, certs: TestCertificates
) -> AsyncIterator[SandboxServer]:
    """The sandbox over plain http (proxied as is) or https (tunnelled with CONNECT)."""
    context = certs.server_context() if request.param == "https" else None
    async with SandboxServer(ssl=context) as server:
        yield server


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _through(proxy: ForwardProxy, server: SandboxServer) -> list[str]:
    """What the proxy carried to ``server``: CONNECT targets or plain-http URLs."""
    origin = server.url.split("://", 1)[1]
    return [t for t in proxy.tunnels if t == origin] + [
        u for u in proxy.relayed if u.startswith(server.url)
    ]


async def test_proxy_from_the_environment_carries_every_call(
    sandbox: SandboxServer, certs: TestCertificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``https_proxy``/``HTTP_PROXY`` (either case) route the calls through the proxy: a
    CONNECT for https, the request itself for http.

    Catches: the environment ignored (the issue: 0 CONNECTs at the proxy, every call failing
    to connect in a network without direct egress)."""
    async with ForwardProxy() as proxy:
        monkeypatch.setenv("https_proxy", proxy.url)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        key = sandbox.fake.api_key
        async with AlloyClient(key, base_url=sandbox.url, verify=str(certs.ca_cert)) as alloy:
            await alloy.connectors.list()
            await alloy.users.list().to_list()
        assert len(_through(proxy, sandbox)) >= 1
        assert sandbox.fake.stats()["requests"] == 2


async def test_no_proxy_and_trust_env_false_bypass_the_environment_proxy(
    sandbox: SandboxServer, certs: TestCertificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``NO_PROXY`` naming the host (here among other entries) and ``trust_env=False`` both
    connect directly although ``HTTP(S)_PROXY`` points at the proxy.

    Catches: NO_PROXY ignored; trust_env=False still reading the environment."""
    async with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        key, ca = sandbox.fake.api_key, str(certs.ca_cert)
        monkeypatch.setenv("NO_PROXY", "example.com, .corp.internal,127.0.0.1")
        async with AlloyClient(key, base_url=sandbox.url, verify=ca) as alloy:
            await alloy.connectors.list()
        monkeypatch.delenv("NO_PROXY")
        async with AlloyClient(key, base_url=sandbox.url, verify=ca, trust_env=False) as alloy:
            await alloy.connectors.list()
        assert (proxy.tunnels, proxy.relayed) == ([], [])
        assert sandbox.fake.stats()["requests"] == 2


async def test_explicit_proxy_wins_and_its_credentials_reach_the_proxy(
    sandbox: SandboxServer, certs: TestCertificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``proxy="http://user:pass@host:port"`` is used although the environment names a dead
    proxy; the proxy receives the (percent-decoded) credentials; reprs mask them.

    Catches: the environment winning over proxy=; the credentials not sent (or sent still
    percent-encoded); the password in the transport's repr."""
    dead = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("HTTPS_PROXY", dead)
    monkeypatch.setenv("HTTP_PROXY", dead)
    async with ForwardProxy(credentials=("svc", "p@ss:w0rd")) as proxy:
        url = f"http://svc:p%40ss%3Aw0rd@127.0.0.1:{proxy.port}"
        key = sandbox.fake.api_key
        async with AlloyClient(
            key, base_url=sandbox.url, verify=str(certs.ca_cert), proxy=url
        ) as alloy:
            await alloy.connectors.list()
            shown = repr(alloy.transport) + repr(alloy)
        assert len(_through(proxy, sandbox)) == 1 and proxy.refused == 0
        assert "w0rd" not in shown and "p%40ss" not in shown and "***@127.0.0.1" in shown


async def test_proxy_407_is_a_proxy_error_sent_once_without_the_credentials(
    sandbox: SandboxServer, certs: TestCertificates
) -> None:
    """Wrong proxy credentials: ProxyError(407) "proxy authentication required", raised after
    one attempt (3 retries allowed), its text (chain included) free of the credentials and
    of the API key. Without credentials the message says none were given.

    Catches: a 407 retried, raised as a generic APIConnectionError or as APIStatusError(407)
    (plain http), or echoing the proxy URL with its password."""
    async with ForwardProxy(credentials=("svc", "right")) as proxy:
        key = sandbox.fake.api_key
        for given, says in (("svc:Wr0ngPass@", "refused the proxy"), ("", "no proxy credentials")):
            url = f"http://{given}127.0.0.1:{proxy.port}"
            before = proxy.refused
            async with AlloyClient(
                key, base_url=sandbox.url, verify=str(certs.ca_cert), proxy=url
            ) as alloy:
                with pytest.raises(ProxyError) as info:
                    await alloy.connectors.list()
            assert proxy.refused - before == 1
            error = info.value
            assert error.status == 407 and error.retryable is False
            assert "proxy authentication required (407)" in str(error) and says in str(error)
            text = every_text(error)
            assert "Wr0ngPass" not in text and key not in text
        assert sandbox.fake.stats()["requests"] == 0


async def test_a_proxy_that_cannot_be_reached_is_a_connection_error() -> None:
    """A refused connection to the proxy stays an APIConnectionError (transient: retried like
    any refused connection), naming the proxy without its credentials.

    Catches: a refused proxy raised as ProxyError (never retried) or echoing credentials."""
    url = f"http://svc:Secr3tPw@127.0.0.1:{_closed_port()}"
    async with AlloyClient("k", base_url="http://127.0.0.1:9", proxy=url, max_retries=0) as alloy:
        with pytest.raises(APIConnectionError) as info:
            await alloy.connectors.list()
    assert type(info.value) is APIConnectionError
    assert "could not connect to the proxy http://***@127.0.0.1" in str(info.value)
    assert "Secr3tPw" not in every_text(info.value)


_TRUST_ENV_FALSE = """
import asyncio, ssl, sys
from alloy_async import AlloyClient, TLSError
from alloy_async.sandbox import SandboxServer

async def main():
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[1] + "/server.pem", sys.argv[1] + "/server.key")
    async with SandboxServer(ssl=context) as server:
        async with AlloyClient("k", base_url=server.url, trust_env=False) as alloy:
            try:
                await alloy.connectors.list()
            except TLSError as exc:
                print(exc.reason)

asyncio.run(main())
"""


async def test_ssl_cert_file_is_honoured_unless_trust_env_is_false(
    certs: TestCertificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``SSL_CERT_FILE`` naming the test CA makes ``verify=True`` trust it (as httpx does);
    ``trust_env=False`` ignores it, even in a process started with it set (OpenSSL, hence
    aiohttp's default context made at import, reads it: checked in a subprocess).

    Catches: SSL_CERT_FILE ignored, or still honoured with trust_env=False."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca_cert))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    async with SandboxServer(ssl=certs.server_context()) as server:
        key = server.fake.api_key
        async with AlloyClient(key, base_url=server.url) as alloy:
            await alloy.connectors.list()
    # A fresh process, started with SSL_CERT_FILE naming the test CA.
    done = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _TRUST_ENV_FALSE, str(certs.directory), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(done.communicate(), 60)
    assert out.decode().strip() == "certificate_verify_failed"


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"proxy": "socks5://svc:Secr3tPw@127.0.0.1:1080"}, "proxy"),
        ({"proxy": "http://svc:Secr3tPw@127.0.0.1:99999"}, "proxy"),
        ({"proxy": "http://svc:Secr3tPw@127.0.0.1:3128/path"}, "proxy"),
        ({"proxy": "http://"}, "proxy"),
        ({"proxy": 3128}, "proxy"),
        ({"verify": "/no/such/ca.pem"}, "verify"),
        ({"verify": 3}, "verify"),
        ({"cert": "/no/such/client.pem"}, "cert"),
        ({"cert": ("only-one",)}, "cert"),
        ({"trust_env": "yes"}, "trust_env"),
    ],
)
def test_bad_network_options_are_configuration_errors_naming_them(
    kwargs: dict[str, object], names: str
) -> None:
    """Each bad value raises ConfigurationError naming the option, never the credentials.

    Catches: a bad value accepted until the first call (or silently), or a message quoting
    the proxy URL with its password."""
    with pytest.raises(ConfigurationError) as info:
        AlloyClient("k", **kwargs)  # type: ignore[arg-type]
    assert str(info.value).startswith(names) and "Secr3tPw" not in every_text(info.value)


def test_bad_environment_values_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy variable we cannot use and a missing SSL_CERT_FILE are named, and
    ``trust_env=False`` ignores them; ``ALL_PROXY=socks5://...`` (set for other tools) is
    skipped. Catches: an unusable HTTPS_PROXY silently ignored, or quoted with its password."""
    monkeypatch.setenv("ALL_PROXY", "socks5://127.0.0.1:1080")
    AlloyClient("k")  # no error: not an http proxy, not ours
    monkeypatch.setenv("HTTPS_PROXY", "socks5://svc:Secr3tPw@127.0.0.1:1080")
    with pytest.raises(ConfigurationError, match=r"^HTTPS_PROXY") as info:
        AlloyClient("k")
    assert "Secr3tPw" not in every_text(info.value)
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.setenv("SSL_CERT_FILE", "/no/such/bundle.pem")
    with pytest.raises(ConfigurationError, match=r"^SSL_CERT_FILE"):
        AlloyClient("k")
    monkeypatch.setenv("HTTPS_PROXY", "socks5://svc:Secr3tPw@127.0.0.1:1080")
    AlloyClient("k", trust_env=False)
