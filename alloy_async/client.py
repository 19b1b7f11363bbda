"""AlloyClient: configuration, lifecycle, and the services as attributes."""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from ._core import Requester, _Shared, configure_logging_from_env
from ._http import (
    Timeout,
    bearer,
    check_header,
    check_timeout,
    header_value_ok,
    normalize_base_url,
)
from .errors import ConfigurationError, InvalidRequestError
from .observability import EventHooks, HookObserver, Observer, chain, telemetry_observer
from .observability.raw import CaptureObserver, RawServices
from .retry import RetryPolicy
from .transports._network import CertTypes, VerifyTypes
from .transports.base import Transport

__all__ = ["DEFAULT_BASE_URL", "AlloyClient"]

DEFAULT_BASE_URL = "https://production.runalloy.com"
DEFAULT_API_VERSION = "2025-09"
_UNSET: Any = object()


def _transport(
    transport: Transport | None, max_connections: int, network: dict[str, Any]
) -> Transport:
    """The transport to use: the one given (no transport option may come with it, none is
    dropped silently), or a new AiohttpTransport with the options."""
    if transport is None:
        from .transports.aiohttp import AiohttpTransport

        return AiohttpTransport(max_connections=max_connections, **network)
    defaults = {"proxy": None, "trust_env": True, "verify": True, "cert": None}
    given = [name for name, value in network.items() if value is not defaults[name]]
    if max_connections != 100:
        given.insert(0, "max_connections")
    if given:
        raise ConfigurationError(
            f"{', '.join(given)} cannot be combined with transport=: they configure the default "
            "transport; pass them to your transport (AiohttpTransport(...)) instead"
        )
    return transport


def _hooks(event_hooks: EventHooks | None) -> HookObserver | None:
    """The hooks' observer, or None when no hook is registered (the fast path stays)."""
    if event_hooks is None:
        return None
    observer = HookObserver(event_hooks)  # checks them, even when empty
    return observer if observer.active else None


class AlloyClient:
    """The async client for the Alloy Connectivity API.

    Args:
        api_key: the API key; falls back to the ``ALLOY_API_KEY`` environment variable.
        base_url: falls back to ``ALLOY_BASE_URL``, then ``https://production.runalloy.com``.
            Plain ``http://`` is refused unless the host is loopback.
        api_version: the ``x-api-version`` header.
        user_id: the default ``x-alloy-userid`` (the end user calls run for).
        timeout: seconds for one attempt (pool wait, connect, send and read), an
            :class:`~alloy_async.Timeout` bounding ``total``, ``connect``, ``pool`` and
            ``read`` apart, or None (no limit). Each service call's ``timeout=`` replaces it
            for that call.
        max_retries: retries after the first attempt; see :class:`RetryPolicy`.
        retry: a full :class:`RetryPolicy` (its ``max_retries`` wins over ``max_retries``).
        transport: a :class:`~alloy_async.transports.Transport`; by default an
            :class:`~alloy_async.transports.AiohttpTransport`. The client owns the transport,
            given or not: :meth:`aclose` closes it (httpx's rule). To keep connections beyond
            the client, give ``AiohttpTransport(session=...)`` a session of your own: that
            session stays yours (not closed).
        max_connections: the pool size of the default transport.
        proxy: ``"http://user:pass@host:port"``: every request goes through this proxy,
            whatever the environment says; its credentials are masked like the API key.
        trust_env: honour ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` and
            ``SSL_CERT_FILE``/``SSL_CERT_DIR`` as httpx does; False ignores them.
        verify: True (the system store), a CA bundle path, an :class:`ssl.SSLContext`, or
            False (no certificate check: unsafe, for a test server only).
        cert: a client certificate for mutual TLS: a PEM path (certificate and key) or a
            ``(certificate, key)`` tuple of paths.
        default_headers: headers added to every request.
        event_hooks: ``{"request": [...], "response": [...], "retry": [...]}``, sync or async
            callables called with a :class:`~alloy_async.observability.RequestEvent`,
            :class:`~alloy_async.observability.ResponseEvent` or
            :class:`~alloy_async.observability.RetryEvent` (credentials redacted). What a hook
            raises reaches the caller (a ``request`` hook that raises: nothing is sent).
        telemetry: OpenTelemetry spans and metrics (extra ``otel``). None: on when
            ``opentelemetry-api`` is installed and a tracer or meter provider is set when the
            client is made; False: off; True: on (raises when not installed), or an
            :class:`~alloy_async.observability.Observer` of your own.

    Use it as ``async with AlloyClient() as alloy:``, or keep one for the life of an app and
    ``await alloy.aclose()`` at shutdown. Connections open lazily in the running loop; the
    client is bound to the first loop that uses it.

    ``max_connections``, ``proxy``, ``trust_env``, ``verify`` and ``cert`` configure the
    default transport: with ``transport=`` they are refused (configure that transport).

    Attributes:
        users (alloy_async.services.Users): create, list, get, update and delete users, and
            user tokens.
        connectors (alloy_async.services.Connectors): the catalog, one connector, its
            resources.
        actions (alloy_async.services.Actions): details, execute, paginate, execute_many,
            the catalog.
        credentials (alloy_async.services.Credentials): metadata, create (OAuth or API key),
            list, delete.
        files (alloy_async.services.Files): presigned uploads, list, delete.

    Raises:
        ConfigurationError: no API key, a bad base URL, a bad network option (named, without
            its credentials), or a transport option given with ``transport=``.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        api_version: str = DEFAULT_API_VERSION,
        user_id: str | None = None,
        timeout: float | Timeout | None = 30.0,
        max_retries: int = 3,
        retry: RetryPolicy | None = None,
        transport: Transport | None = None,
        max_connections: int = 100,
        default_headers: Mapping[str, str] | None = None,
        event_hooks: EventHooks | None = None,
        telemetry: bool | Observer | None = None,
        proxy: str | None = None,
        trust_env: bool = True,
        verify: VerifyTypes = True,
        cert: CertTypes | None = None,
    ) -> None:
        configure_logging_from_env()
        key = api_key if api_key is not None else os.environ.get("ALLOY_API_KEY")
        if key is not None and not isinstance(key, str):  # its value is never shown
            raise ConfigurationError(f"api_key must be a string, got {type(key).__name__}")
        if not key or not key.strip():
            raise ConfigurationError(
                "no API key: pass api_key=... or set the ALLOY_API_KEY environment variable"
            )
        if not header_value_ok(key):
            raise ConfigurationError("the API key may not contain CR, LF or NUL")
        url = normalize_base_url(base_url or os.environ.get("ALLOY_BASE_URL") or DEFAULT_BASE_URL)
        if not isinstance(api_version, str) or not api_version.strip():
            raise ConfigurationError("api_version must be a non-empty string")
        _check_view_settings(user_id, default_headers, retry)
        check_header("x-api-version", api_version)
        timeout = check_timeout(timeout, ConfigurationError)
        policy = retry if retry is not None else RetryPolicy(max_retries=max_retries)
        own_observer = telemetry if isinstance(telemetry, Observer) else None
        # Telemetry first: its spans then record every attempt, whatever a hook raises.
        observer = chain([own_observer or telemetry_observer(telemetry), _hooks(event_hooks)])
        network = {"proxy": proxy, "trust_env": trust_env, "verify": verify, "cert": cert}
        transport = _transport(transport, max_connections, network)
        try:
            requester = Requester(
                _Shared(transport=transport, owns_transport=True),
                base_url=url,
                auth=bearer(key.strip()),
                api_version=api_version,
                user_id=user_id,
                timeout=timeout,
                retry=policy,
                default_headers=dict(default_headers or {}),
                observer=observer,
            )
        except InvalidRequestError as exc:
            raise ConfigurationError(f"bad default_headers: {exc}") from None
        self._init(requester, is_view=False)

    def _init(self, requester: Requester, *, is_view: bool) -> None:
        self._requester = requester
        self._is_view = is_view
        self._attach_services()

    def _attach_services(self) -> None:
        """Create the service attributes; they hold this client's requester."""
        from .services import Actions, Connectors, Credentials, Files, Users

        r = self._requester
        self.users = Users(r)
        self.connectors = Connectors(r)
        self.actions = Actions(r)
        self.credentials = Credentials(r)
        self.files = Files(r)

    @property
    def with_raw_response(self) -> RawServices:
        """The services, each call returning a :class:`~alloy_async.observability.RawResponse`
        (status, headers, request id, elapsed; ``.parse()`` for the typed result):
        ``await alloy.with_raw_response.actions.execute(...)``."""
        r = self._requester
        view = self._view(r.evolve(observer=chain([r.observer, CaptureObserver()])))
        return RawServices(
            {
                name: getattr(view, name)
                for name in ("users", "connectors", "actions", "credentials", "files")
            }
        )

    @classmethod
    def _view(cls, requester: Requester) -> AlloyClient:
        view = cls.__new__(cls)
        view._init(requester, is_view=True)
        return view

    # -- views ---------------------------------------------------------------------------

    def for_user(self, user_id: str) -> AlloyClient:
        """A view of this client that sends ``x-alloy-userid: user_id`` (same connections)."""
        if not isinstance(user_id, str) or not user_id.strip():
            raise InvalidRequestError("user_id must be a non-empty string", field="user_id")
        check_header("x-alloy-userid", user_id)
        return self._view(self._requester.evolve(user_id=user_id))

    def with_options(
        self,
        *,
        timeout: float | Timeout | None = _UNSET,
        max_retries: int | None = None,
        retry: RetryPolicy | None = None,
        deadline: float | None = _UNSET,
        user_id: str | None = _UNSET,
        default_headers: Mapping[str, str] | None = None,
    ) -> AlloyClient:
        """A view of this client with other settings (same connections).

        Args:
            timeout: seconds per attempt, or a :class:`~alloy_async.Timeout`.
            max_retries: retries after the first attempt.
            retry: a whole new :class:`RetryPolicy`.
            deadline: seconds for a whole call, attempts and waits together.
            user_id: the default ``x-alloy-userid`` (None removes it).
            default_headers: headers merged over the current defaults.
        """
        _check_view_settings(None if user_id is _UNSET else user_id, default_headers, retry)
        r = self._requester
        policy = retry if retry is not None else r.retry
        changes: dict[str, Any] = {}
        if max_retries is not None:
            changes["max_retries"] = max_retries
        if deadline is not _UNSET:
            changes["deadline"] = deadline
        if changes:
            import attrs

            policy = attrs.evolve(policy, **changes)
        updates: dict[str, Any] = {"retry": policy}
        if timeout is not _UNSET:
            updates["timeout"] = check_timeout(timeout, ConfigurationError)
        if user_id is not _UNSET:
            if user_id is not None:
                check_header("x-alloy-userid", user_id)
            updates["user_id"] = user_id
        if default_headers:
            updates["default_headers"] = {**r.default_headers, **default_headers}
        return self._view(r.evolve(**updates))

    # -- low level -----------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        path_params: Mapping[str, str] | None = None,
        query: Mapping[str, Any] | None = None,
        json: Any = None,
        user_id: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> Any:
        """Call any endpoint and return its decoded JSON: the escape hatch.

        ``path`` is a template such as ``/users/{userId}``; its parameters come from
        ``path_params`` and are percent-encoded. Retries, errors and headers work as for the
        typed services.
        """
        return await self._requester.request_json(
            method.upper(),
            path,
            path_params=path_params,
            query=query,
            json=json,
            user_id=user_id,
            extra_headers=extra_headers,
            idempotent=idempotent,
            operation="alloy.request",
        )

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The API's base URL."""
        return self._requester.base_url

    @property
    def user_id(self) -> str | None:
        """The default ``x-alloy-userid`` of this client or view."""
        return self._requester.user_id

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy of this client or view."""
        return self._requester.retry

    @property
    def timeout(self) -> float | Timeout | None:
        """Seconds per attempt, or the :class:`~alloy_async.Timeout` given."""
        return self._requester.timeout

    @property
    def transport(self) -> Transport:
        """The transport this client (and all its views) sends through."""
        return self._requester.transport

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` has been called (on the client that owns the connections)."""
        return self._requester.closed

    async def aclose(self) -> None:
        """Close the connections. Idempotent. On a view (``for_user``/``with_options``) this
        does nothing: the client that made the view owns the connections."""
        if not self._is_view:
            await self._requester.aclose()

    async def __aenter__(self) -> AlloyClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        r = self._requester
        kind = "view " if self._is_view else ""
        state = "closed" if r.closed else "open"
        user = f" user_id={r.user_id!r}" if r.user_id else ""
        return f"<AlloyClient {kind}{state} base_url={r.base_url!r} api_key=***{user}>"


def _check_view_settings(user_id: object, default_headers: object, retry: object) -> None:
    """Refuse a ``user_id``, ``default_headers`` or ``retry`` of the wrong kind (the client's
    and a view's), naming it: never an AttributeError or TypeError from inside."""
    if user_id is not None and (not isinstance(user_id, str) or not user_id.strip()):
        raise ConfigurationError("user_id must be a non-empty string or None")
    if default_headers is not None and not isinstance(default_headers, Mapping):
        raise ConfigurationError(
            "default_headers must be a mapping of header names to values, got "
            f"{type(default_headers).__name__}"
        )
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise ConfigurationError(f"retry must be a RetryPolicy, got {type(retry).__name__}")
