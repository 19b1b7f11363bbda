"""The network settings of the default transport: proxies and TLS, checked once, no I/O.

``proxy``, ``trust_env``, ``verify`` and ``cert`` become a :class:`ProxyTable` (which proxy, if
any, each request goes through) and an :class:`ssl.SSLContext`. Every bad value raises
:class:`~alloy_async.errors.ConfigurationError` naming the option, and never quoting a proxy
URL (it may hold credentials).
"""

from __future__ import annotations

import base64
import functools
import http
import ipaddress
import os
import ssl
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

import attrs

from .._http import Request, Secret
from ..errors import APIConnectionError, ConfigurationError, ProxyError, TLSError

__all__ = [
    "CertTypes",
    "ProxyRoute",
    "ProxyTable",
    "VerifyTypes",
    "proxied_headers",
    "proxy_refusal",
    "proxy_table",
    "ssl_context",
    "tls_error",
    "tunnel_headers",
]

StrPath = str | os.PathLike[str]
#: ``verify=``: True (the system store), False (no verification), a CA bundle file or
#: directory, or a ready :class:`ssl.SSLContext`.
VerifyTypes = bool | StrPath | ssl.SSLContext
#: ``cert=``: a PEM file holding the certificate and its key, or ``(certificate, key)``.
CertTypes = StrPath | tuple[StrPath, StrPath]

_PROXY_FORM = "an http:// or https:// URL of a host and port (http://user:pass@host:port)"


@attrs.frozen(slots=True)
class ProxyRoute:
    """One proxy: its URL without credentials, and the ``Proxy-Authorization`` value."""

    #: ``scheme://host:port``: safe to show (the credentials are in ``auth`` only).
    url: str
    auth: Secret | None = attrs.field(default=None, repr=False)

    @property
    def shown(self) -> str:
        """The URL for messages and reprs: credentials masked, never absent without a hint."""
        if self.auth is None:
            return self.url
        scheme, _, rest = self.url.partition("://")
        return f"{scheme}://***@{rest}"


def parse_proxy(url: object, what: str) -> ProxyRoute:
    """``url`` as a :class:`ProxyRoute`; ``what`` names the option in the error."""
    if not isinstance(url, str):
        raise ConfigurationError(f"{what} must be a string ({_PROXY_FORM})")
    text = url.strip()
    if "://" not in text:
        text = "http://" + text  # HTTPS_PROXY=proxy:3128 means http, as curl and httpx read it
    try:
        parts = urlsplit(text)
        host, port = parts.hostname, parts.port
    except ValueError:
        raise ConfigurationError(f"{what} is not a valid URL; use {_PROXY_FORM}") from None
    if parts.scheme not in ("http", "https") or not host:
        scheme = f" (scheme {parts.scheme!r})" if parts.scheme else ""
        raise ConfigurationError(f"{what} must be {_PROXY_FORM}{scheme}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigurationError(f"{what} may not hold a path, query or fragment")
    netloc = f"[{host}]" if ":" in host else host
    port = port or (443 if parts.scheme == "https" else 80)
    auth = None
    if parts.username is not None or parts.password is not None:
        pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
        auth = Secret("Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii"))
    return ProxyRoute(f"{parts.scheme}://{netloc}:{port}", auth)


def _env(names: tuple[str, ...], environ: Mapping[str, str]) -> tuple[str, str] | None:
    """The first of ``names`` set to a non-empty value, with the value."""
    for name in names:
        value = environ.get(name, "").strip()
        if value:
            return name, value
    return None


class ProxyTable:
    """Which proxy each request goes through: ``proxy=`` for all, else the environment's
    ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` for the URL's scheme unless ``NO_PROXY``
    matches its host (lower-case names win, as in curl, urllib and httpx)."""

    def __init__(self, explicit: ProxyRoute | None, environ: Mapping[str, str]) -> None:
        self.explicit = explicit
        self._by_scheme: dict[str, ProxyRoute] = {}
        self._no_proxy: tuple[str, ...] = ()
        self._cache: dict[tuple[str, str], ProxyRoute | None] = {}
        if explicit is not None:
            return
        for scheme in ("http", "https"):
            names: tuple[str, ...] = (f"{scheme}_proxy", f"{scheme.upper()}_PROXY")
            names += ("all_proxy", "ALL_PROXY")
            if scheme == "http" and "REQUEST_METHOD" in environ:
                # In a CGI script HTTP_PROXY comes from the client's "Proxy:" header (httpoxy).
                names = ("http_proxy", "all_proxy", "ALL_PROXY")
            found = _env(names, environ)
            if found is None:
                continue
            name, value = found
            scheme_given = value.partition("://")[0].lower() if "://" in value else "http"
            if name.lower() == "all_proxy" and scheme_given not in ("http", "https"):
                continue  # ALL_PROXY=socks5://... is often set for other tools: not ours
            what = f"{name} (from the environment; trust_env=False ignores it)"
            self._by_scheme[scheme] = parse_proxy(value, what)
        no_proxy = _env(("no_proxy", "NO_PROXY"), environ)
        if no_proxy is not None:
            self._no_proxy = tuple(
                e.strip().lower().lstrip(".") for e in no_proxy[1].split(",") if e.strip()
            )

    def __bool__(self) -> bool:
        return self.explicit is not None or bool(self._by_scheme)

    def route(self, url: str) -> ProxyRoute | None:
        """The proxy for ``url``, or None to connect directly."""
        if self.explicit is not None:
            return self.explicit
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        try:
            return self._cache[key]
        except KeyError:
            pass
        route = self._by_scheme.get(parts.scheme)
        if route is not None and self._bypassed(parts.hostname or "", parts.port):
            route = None
        if len(self._cache) < 64:  # one entry per API host: a handful at most
            self._cache[key] = route
        return route

    def _bypassed(self, host: str, port: int | None) -> bool:
        """Whether ``NO_PROXY`` names ``host``: exactly or as a parent domain, optionally with
        the port, as an IP network (``10.0.0.0/8``), or ``*`` for every host."""
        host = host.lower().strip("[]")
        for entry in self._no_proxy:
            if entry == "*":
                return True
            if "/" in entry:
                if _in_network(host, entry):
                    return True
                continue
            name, entry_port = _split_port(entry)
            if entry_port and entry_port != str(port):
                continue
            if host == name or host.endswith("." + name):
                return True
        return False


def _split_port(entry: str) -> tuple[str, str]:
    """``host:port``, ``[v6]:port``, ``v6`` or ``host`` as (host, port or "")."""
    if entry.startswith("["):
        name, _, rest = entry[1:].partition("]")
        return name, rest.lstrip(":")
    if entry.count(":") == 1:
        name, _, port = entry.partition(":")
        return name, port
    return entry, ""


def _in_network(host: str, network: str) -> bool:
    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network(network, strict=False)
    except ValueError:
        return False


def proxy_table(proxy: str | None, trust_env: bool) -> ProxyTable | None:
    """The proxies to use, or None when every request connects directly."""
    if not isinstance(trust_env, bool):
        raise ConfigurationError("trust_env must be True or False")
    explicit = parse_proxy(proxy, "proxy") if proxy is not None else None
    table = ProxyTable(explicit, os.environ if trust_env else {})
    return table if table else None


def ssl_context(verify: object, cert: object, trust_env: bool) -> ssl.SSLContext | None:
    """The client-side TLS context for ``verify`` and ``cert``, or None for aiohttp's default
    (the system store). Built contexts are shared between clients with the same settings."""
    if isinstance(verify, ssl.SSLContext):
        if cert is not None:
            raise ConfigurationError(
                "cert cannot be combined with an ssl.SSLContext as verify: load the client "
                "certificate into that context (context.load_cert_chain(...))"
            )
        return verify
    if not isinstance(verify, (bool, str, os.PathLike)):
        raise ConfigurationError(
            "verify must be True, False, a CA bundle path or an ssl.SSLContext, "
            f"not {type(verify).__name__}"
        )
    trusted = _trusted(verify, trust_env)
    chain = _cert_files(cert)
    if verify is True and trusted is None and chain is None:
        return None
    paths = [p for p in (*(trusted or (None, None, ""))[:2], *(chain or ())) if p is not None]
    # Part of the cache key: a CA bundle or certificate replaced on disk is read again.
    stamps = tuple(_stamp(p) for p in paths)
    return _build(verify is False, trusted, chain, stamps)


def _trusted(verify: bool | StrPath, trust_env: bool) -> tuple[str | None, str | None, str] | None:
    """``(cafile, capath, the option or variable they come from)`` to trust, or None for the
    system store as OpenSSL finds it. Without trust_env, SSL_CERT_FILE/SSL_CERT_DIR are
    ignored: OpenSSL would read them for its default store, so the compiled-in locations are
    named instead (both None then: trust nothing)."""
    if not isinstance(verify, bool):
        path = os.fspath(verify)
        if os.path.isdir(path):
            return None, path, "verify"
        if not os.path.isfile(path):
            raise ConfigurationError(f"verify: no CA bundle file or directory at {path!r}")
        return path, None, "verify"
    env_file = os.environ.get("SSL_CERT_FILE") or None
    env_dir = os.environ.get("SSL_CERT_DIR") or None
    if verify is False or not (env_file or env_dir):
        return None
    if trust_env:
        if env_file is not None and not os.path.isfile(env_file):
            raise ConfigurationError(
                f"SSL_CERT_FILE (from the environment; trust_env=False ignores it): "
                f"no file at {env_file!r}"
            )
        return env_file, env_dir, "SSL_CERT_FILE/SSL_CERT_DIR"
    paths = ssl.get_default_verify_paths()
    cafile = paths.openssl_cafile if os.path.isfile(paths.openssl_cafile) else None
    capath = paths.openssl_capath if os.path.isdir(paths.openssl_capath) else None
    return cafile, capath, "the system store"


def _cert_files(cert: object) -> tuple[str, str | None] | None:
    if cert is None:
        return None
    if isinstance(cert, (str, os.PathLike)):
        files: tuple[object, object] = (cert, None)
    elif isinstance(cert, tuple) and len(cert) == 2:
        files = (cert[0], cert[1])
    else:
        raise ConfigurationError(
            "cert must be a PEM file path (certificate and key) or a (certificate, key) tuple"
        )
    paths = [os.fspath(f) if isinstance(f, (str, os.PathLike)) else f for f in files]
    for path in paths:
        if path is not None and not (isinstance(path, str) and os.path.isfile(path)):
            raise ConfigurationError(f"cert: no file at {path!r}")
    return str(paths[0]), None if paths[1] is None else str(paths[1])


def _stamp(path: str) -> tuple[str, int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return path, 0, 0
    return path, st.st_mtime_ns, st.st_size


class _EncryptedKey(Exception):
    """Raised instead of OpenSSL's interactive password prompt."""


def _no_password() -> str:
    raise _EncryptedKey


@functools.lru_cache(maxsize=16)
def _build(
    insecure: bool,
    trusted: tuple[str | None, str | None, str] | None,
    chain: tuple[str, str | None] | None,
    stamps: tuple[tuple[str, int, int], ...],
) -> ssl.SSLContext:
    """One context per distinct setting (loading a CA bundle takes ~0.1 s)."""
    cafile, capath, what = trusted or (None, None, "verify")
    try:
        if insecure:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif trusted is None:
            context = ssl.create_default_context()  # the system store
        elif cafile is None and capath is None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies; trusts nothing
        else:
            context = ssl.create_default_context(cafile=cafile, capath=capath)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigurationError(f"{what}: no usable CA certificate ({_why(exc)})") from None
    if chain is not None:
        _load_chain(context, chain)
    return context


def _load_chain(context: ssl.SSLContext, chain: tuple[str, str | None]) -> None:
    try:
        context.load_cert_chain(chain[0], chain[1], password=_no_password)
    except _EncryptedKey:
        raise ConfigurationError(
            "cert: the private key is encrypted; decrypt it, or pass an ssl.SSLContext as "
            "verify with the chain loaded"
        ) from None
    except (ssl.SSLError, OSError) as exc:
        raise ConfigurationError(
            f"cert: cannot load the client certificate and key ({_why(exc)})"
        ) from None


def _why(exc: BaseException) -> str:
    return getattr(exc, "reason", None) or getattr(exc, "strerror", None) or type(exc).__name__


# -- failures: what a TLS or proxy refusal is called ------------------------------------

#: TLS alerts a server sends when it refuses the client's certificate (mutual TLS). The
#: server's TLS layer checks the certificate before its HTTP layer reads a byte, so even when
#: the alert comes after the request was written (TLS 1.3), nothing was processed.
_CERT_ALERTS = frozenset(
    {
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_REVOKED",
        "SSLV3_ALERT_CERTIFICATE_EXPIRED",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "TLSV1_ALERT_UNKNOWN_CA",
        "TLSV1_ALERT_ACCESS_DENIED",
    }
)
#: Handshake failures of configuration, the same on every attempt: no shared version or
#: cipher, or TLS spoken to a port that does not speak it (WRONG_VERSION_NUMBER).
_HANDSHAKE_FATAL = frozenset(
    {
        "WRONG_VERSION_NUMBER",
        "UNSUPPORTED_PROTOCOL",
        "NO_PROTOCOLS_AVAILABLE",
        "NO_SHARED_CIPHER",
        "SSLV3_ALERT_HANDSHAKE_FAILURE",
        "TLSV1_ALERT_PROTOCOL_VERSION",
        "TLSV1_ALERT_INSUFFICIENT_SECURITY",
    }
)
#: OpenSSL's verify codes for a certificate not valid for the host (name, IP, e-mail).
_MISMATCH_CODES = frozenset({62, 63, 64})


def ssl_error(exc: BaseException) -> ssl.SSLError | None:
    """The OpenSSL error behind ``exc`` (its cause or context), not aiohttp's wrapper."""
    current: BaseException | None = exc
    for _ in range(6):
        if current is None:
            return None
        # OpenSSL's own errors carry .reason; aiohttp's wrappers subclass SSLError without it.
        if isinstance(current, ssl.SSLError) and getattr(current, "reason", None):
            return current
        current = current.__cause__ or current.__context__
    return None


def tls_error(exc: BaseException, connecting: bool, m: str, p: str) -> TLSError | None:
    """A :class:`TLSError` when ``exc`` is a TLS refusal no retry can fix, else None
    (an EOF or reset during a handshake stays a connection error, retried)."""
    err = ssl_error(exc)
    if err is None:
        return None
    code = str(getattr(err, "reason", "") or "")
    if isinstance(err, ssl.SSLCertVerificationError) and connecting:
        detail = str(err.verify_message or "certificate verify failed")
        if err.verify_code in _MISMATCH_CODES:
            detail = detail.partition(", ")[2].rstrip(".") or detail
            return TLSError(
                f"hostname mismatch: {detail}", reason="hostname_mismatch", method=m, path=p
            )
        return TLSError(
            f"certificate verify failed: {detail} (the server's certificate is not signed by a "
            "CA that verify= trusts)",
            reason="certificate_verify_failed",
            method=m,
            path=p,
        )
    alert = code.lower().replace("_", " ")
    if code in _CERT_ALERTS:
        required = code == "TLSV13_ALERT_CERTIFICATE_REQUIRED"
        return TLSError(
            f"the server refused the connection at TLS ({alert}): "
            + ("it requires a client certificate (cert=)" if required else "it refused cert=")
            + "; the request was not processed",
            reason="certificate_required" if required else "certificate_rejected",
            method=m,
            path=p,
        )
    if connecting and code in _HANDSHAKE_FATAL:
        return TLSError(
            f"TLS handshake failed: {alert}", reason="handshake_failed", method=m, path=p
        )
    return None


def proxy_refusal(status: int, route: ProxyRoute | None, m: str, p: str) -> APIConnectionError:
    """The proxy's own non-2xx answer (to CONNECT, or to a plain-http request). Built from the
    status alone: nothing the proxy sent, and never the credentials, is quoted."""
    shown = route.shown if route is not None else "the proxy"
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = "error"
    if status == 407:
        given = route is not None and route.auth is not None
        return ProxyError(
            f"proxy authentication required (407) by {shown}: "
            + ("it refused the proxy credentials" if given else "no proxy credentials were given"),
            status=status,
            method=m,
            path=p,
        )
    if 400 <= status < 500:
        return ProxyError(
            f"the proxy {shown} refused the request: {status} {phrase}",
            status=status,
            method=m,
            path=p,
        )
    return APIConnectionError(
        f"the proxy {shown} could not reach the API: {status} {phrase}", method=m, path=p
    )


def proxied_headers(request: Request, route: ProxyRoute) -> dict[str, str]:
    """The headers of a plain-http request through ``route``: aiohttp adds proxy headers to a
    CONNECT only, so the credentials for a plain-http proxy go with the request itself."""
    headers = request._plain_headers()
    if route.auth is not None and not request.url.startswith("https:"):
        headers["proxy-authorization"] = route.auth.reveal()
    return headers


def tunnel_headers(route: ProxyRoute) -> dict[str, str] | None:
    """The headers of the CONNECT that opens a tunnel through ``route`` (https URLs)."""
    return None if route.auth is None else {"Proxy-Authorization": route.auth.reveal()}
