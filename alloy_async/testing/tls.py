"""Throwaway TLS material for testing a TLS setup against the sandbox.

A recipe: a private CA, a server certificate for loopback signed by it, and a client
certificate for mutual TLS, made with the ``openssl`` command line (no Python dependency)::

    from alloy_async import AlloyClient
    from alloy_async.sandbox import SandboxServer
    from alloy_async.testing.tls import make_test_certificates

    certs = make_test_certificates(tmp_path)
    async with SandboxServer(ssl=certs.server_context(require_client_cert=True)) as server:
        async with AlloyClient(
            server.fake.api_key,
            base_url=server.url,  # https://127.0.0.1:<port>
            verify=str(certs.ca_cert),
            cert=(str(certs.client_cert), str(certs.client_key)),
        ) as alloy:
            await alloy.connectors.list()

Never use this material outside tests: the keys are unencrypted and the CA is trusted by
whoever holds ``ca.pem``.
"""

from __future__ import annotations

import ipaddress
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import attrs

__all__ = ["TestCertificates", "make_test_certificates"]

#: What the server certificate covers by default: every name a sandbox URL may use.
DEFAULT_HOSTS = ("127.0.0.1", "localhost", "::1")
_DAYS = "2"  # long enough for a test run, short enough to be useless when leaked


@attrs.frozen
class TestCertificates:
    """PEM files in ``directory``: a CA, a server certificate signed by it, a client one.

    Attributes:
        directory: where the files are.
        ca_cert: the CA's certificate: give it to the client as ``verify=``.
        server_cert, server_key: the server's certificate (for ``hosts``) and key.
        client_cert, client_key: a client certificate signed by the same CA, for mutual TLS
            (``cert=(client_cert, client_key)``).
    """

    __test__ = False  # not a pytest test class despite its name

    directory: Path
    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def server_context(self, *, require_client_cert: bool = False) -> ssl.SSLContext:
        """A server-side context for ``SandboxServer(ssl=...)``; with ``require_client_cert``
        the handshake refuses clients without a certificate signed by this CA."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.server_cert, self.server_key)
        if require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cafile=self.ca_cert)
        return context


def make_test_certificates(
    directory: str | Path | None = None, *, hosts: Sequence[str] = DEFAULT_HOSTS
) -> TestCertificates:
    """Make a throwaway CA, a server certificate for ``hosts`` and a client certificate.

    Args:
        directory: where to write the PEM files (pytest's ``tmp_path``); a new temporary
            directory when None (deleting it is then yours).
        hosts: the names and IP addresses the server certificate is valid for. Pass other
            names (``("other.example",)``) to test a hostname mismatch.

    Raises:
        RuntimeError: the ``openssl`` command line is not installed, or failed.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("make_test_certificates needs the openssl command line on PATH")
    root = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="alloy-tls-"))
    root.mkdir(parents=True, exist_ok=True)
    certs = TestCertificates(
        directory=root,
        ca_cert=root / "ca.pem",
        server_cert=root / "server.pem",
        server_key=root / "server.key",
        client_cert=root / "client.pem",
        client_key=root / "client.key",
    )
    ca_key = root / "ca.key"
    ca_args = "-subj /CN=alloy-async-test-CA -addext basicConstraints=critical,CA:TRUE"
    ca_args += " -addext keyUsage=critical,keyCertSign,cRLSign -days " + _DAYS
    _run(openssl, "req", "-x509", *_new_key(ca_key), "-out", certs.ca_cert, *ca_args.split())
    sans = ",".join(_san(h) for h in hosts)
    _issue(openssl, certs, ca_key, "server", f"subjectAltName={sans}\nextendedKeyUsage=serverAuth")
    _issue(openssl, certs, ca_key, "client", "extendedKeyUsage=clientAuth")
    return certs


def _new_key(path: Path) -> list[str | Path]:
    return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", path]


def _san(host: str) -> str:
    try:
        return f"IP:{ipaddress.ip_address(host.strip('[]'))}"
    except ValueError:
        return f"DNS:{host}"


def _issue(openssl: str, certs: TestCertificates, ca_key: Path, name: str, ext: str) -> None:
    """A key and a certificate ``<name>.pem`` signed by the CA, with extensions ``ext``."""
    root = certs.directory
    csr, extfile = root / f"{name}.csr", root / f"{name}.ext"
    extfile.write_text(
        f"{ext}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n",
        encoding="utf-8",
    )
    key, pem = root / f"{name}.key", root / f"{name}.pem"
    _run(openssl, "req", "-new", *_new_key(key), "-out", csr, "-subj", f"/CN=alloy-async-{name}")
    sign: list[str | Path] = [
        "-CA",
        certs.ca_cert,
        "-CAkey",
        ca_key,
        "-CAcreateserial",
        "-days",
        _DAYS,
    ]
    _run(openssl, "x509", "-req", "-in", csr, *sign, "-extfile", extfile, "-out", pem)


def _run(*args: str | Path) -> None:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"openssl failed ({done.returncode}): {done.stderr.strip()[-500:]}")
