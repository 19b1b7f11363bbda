"""TLS against a real HTTPS sandbox on 127.0.0.1 with a throwaway CA (alloy_async.testing.tls):
``verify=``, ``cert=`` (mutual TLS), and the errors a retry cannot fix, raised at once."""

from __future__ import annotations

import ast
import re
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from net_helpers import certificates, clear_proxy_env, executions

from alloy_async import AlloyClient, OutcomeUnknownError, TLSError
from alloy_async.sandbox import SandboxServer
from alloy_async.testing.tls import TestCertificates


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_proxy_env(monkeypatch)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TestCertificates:
    return certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture
async def https(certs: TestCertificates) -> AsyncIterator[SandboxServer]:
    async with SandboxServer(ssl=certs.server_context()) as server:
        yield server


async def test_verify_with_your_ca_works_and_a_refused_certificate_is_not_retried(
    https: SandboxServer, certs: TestCertificates
) -> None:
    """``verify=`` a CA bundle path or an SSLContext reaches the server; ``verify=False``
    skips the check; ``verify=True`` (the system store, which does not hold the test CA) fails
    with TLSError naming the cause, after exactly one handshake with the default 3 retries.

    Catches: a certificate failure retried (4 handshakes, 1.7 s of backoff, as reported), or
    raised as a plain APIConnectionError; verify= ignored by the default transport."""
    key = https.fake.api_key
    context = ssl.create_default_context(cafile=str(certs.ca_cert))
    for verify in (str(certs.ca_cert), certs.ca_cert, context, False):
        async with AlloyClient(key, base_url=https.url, verify=verify) as alloy:
            assert (await alloy.connectors.list()) is not None
    before = https.handshakes
    async with AlloyClient(key, base_url=https.url, trust_env=False) as alloy:
        with pytest.raises(TLSError) as info:
            await alloy.connectors.list()
    assert https.handshakes - before == 1
    error = info.value
    assert error.reason == "certificate_verify_failed" and error.retryable is False
    assert "certificate verify failed: unable to get local issuer certificate" in str(error)


async def test_hostname_mismatch_is_named(tmp_path: Path) -> None:
    """A certificate signed by a trusted CA but for another host: TLSError("hostname
    mismatch"), one handshake. Catches: a mismatch reported as a generic connection error
    (and retried)."""
    other = certificates(tmp_path, hosts=("other.example",))
    async with SandboxServer(ssl=other.server_context()) as server:
        key = server.fake.api_key
        async with AlloyClient(key, base_url=server.url, verify=str(other.ca_cert)) as alloy:
            with pytest.raises(TLSError, match="hostname mismatch") as info:
                await alloy.users.list().to_list()
        assert server.handshakes == 1
    assert info.value.reason == "hostname_mismatch"


async def test_mutual_tls_with_and_without_a_client_certificate(
    certs: TestCertificates, tmp_path: Path
) -> None:
    """A server that requires a client certificate: ``cert=(cert, key)`` and ``cert=`` one
    PEM holding both work; without one, an execute (POST) fails with TLSError saying
    "certificate required", not OutcomeUnknownError: the server's alert proves nothing was
    processed, and the sandbox's own record shows no execution. One handshake, not retried.

    Catches: the mTLS rejection reported as "OutcomeUnknownError: server disconnected before
    answering" (the issue: such jobs counted as outcome-unknown in a bulk run)."""
    both = tmp_path / "client-with-key.pem"
    both.write_bytes(certs.client_cert.read_bytes() + certs.client_key.read_bytes())
    ca = str(certs.ca_cert)
    async with SandboxServer(ssl=certs.server_context(require_client_cert=True)) as server:
        fake = server.fake
        user = fake.add_user("jane@example.com")
        cred = fake.add_credential(user, "slack")
        body = {"channel": "C1", "text": "hi"}
        for cert in ((str(certs.client_cert), str(certs.client_key)), str(both)):
            async with AlloyClient(fake.api_key, base_url=server.url, verify=ca, cert=cert) as a:
                await a.actions.execute(
                    "slack", "chat_postMessage", credential_id=cred, user_id=user, request_body=body
                )
        assert len(await executions(server, certs)) == 2
        before = server.handshakes
        async with AlloyClient(fake.api_key, base_url=server.url, verify=ca) as alloy:
            with pytest.raises(TLSError) as info:
                await alloy.actions.execute(
                    "slack", "chat_postMessage", credential_id=cred, user_id=user, request_body=body
                )
        assert server.handshakes - before == 1
        error = info.value
        assert not isinstance(error, OutcomeUnknownError)
        assert error.reason == "certificate_required" and error.retryable is False
        assert "certificate required" in str(error)
        assert len(await executions(server, certs)) == 2


def _readme_recipe() -> str:
    page = Path(__file__).resolve().parent.parent / "docs" / "testing.md"
    section = page.read_text(encoding="utf-8").split("## Testing your TLS setup", 1)[1]
    section = section.split("\n## ", 1)[0]
    (snippet,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return str(snippet)


async def test_the_readme_recipe_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """docs/testing.md's "Testing your TLS setup" snippet runs as written (tmp_path given).
    Catches: the documented recipe drifting from the code."""
    code = compile(
        _readme_recipe(), "docs/testing.md", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    )
    namespace: dict[str, Any] = {"tmp_path": tmp_path}
    result = eval(code, namespace)
    if result is not None:
        await result
    assert capsys.readouterr().out == "certificate_required\n"
