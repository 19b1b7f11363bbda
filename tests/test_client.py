"""AlloyClient configuration, views and lifecycle."""

from __future__ import annotations

import asyncio
import threading

import pytest

from alloy_async import AlloyClient, ConfigurationError, FakeTransport, RetryPolicy
from alloy_async.testing import FakeAlloy


def test_missing_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """No key anywhere: ConfigurationError mentions ALLOY_API_KEY."""
    monkeypatch.delenv("ALLOY_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="ALLOY_API_KEY"):
        AlloyClient()


def test_env_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    """api_key and base_url come from the environment when not given."""
    monkeypatch.setenv("ALLOY_API_KEY", "sk_from_env")
    monkeypatch.setenv("ALLOY_BASE_URL", "http://127.0.0.1:8080/")
    alloy = AlloyClient()
    assert alloy.base_url == "http://127.0.0.1:8080"
    assert alloy._requester.auth.reveal() == "Bearer sk_from_env"


def test_default_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ALLOY_BASE_URL the production URL is used."""
    monkeypatch.delenv("ALLOY_BASE_URL", raising=False)
    assert AlloyClient("k").base_url == "https://production.runalloy.com"


@pytest.mark.parametrize(
    "url", ["http://api.example.com", "ftp://x", "production.runalloy.com", "https://u:p@h.com"]
)
def test_bad_base_urls_are_refused(url: str) -> None:
    """Plain http to a non-loopback host, other schemes and embedded credentials are refused."""
    with pytest.raises(ConfigurationError):
        AlloyClient("k", base_url=url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:9", "http://localhost:1", "http://[::1]:2"])
def test_http_is_allowed_for_loopback(url: str) -> None:
    """The sandbox runs on loopback over plain http."""
    assert AlloyClient("k", base_url=url).base_url == url


def test_bad_settings_are_refused() -> None:
    """Nonsense numbers and headers fail at construction, naming the setting."""
    with pytest.raises(ConfigurationError, match="timeout"):
        AlloyClient("k", timeout=0)
    with pytest.raises(ConfigurationError, match="default_headers"):
        AlloyClient("k", default_headers={"x-a": "b\r\nc"})
    with pytest.raises(ConfigurationError, match="CR"):
        AlloyClient("k\r\nx")


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"api_key": 918273645}, "api_key"),
        ({"api_key": b"sk_bytes_918273645"}, "api_key"),
        ({"api_version": 2025}, "api_version"),
        ({"default_headers": 5}, "default_headers"),
        ({"default_headers": [("x-a", "b")]}, "default_headers"),
        ({"retry": 5}, "retry"),
        ({"user_id": 5}, "user_id"),
    ],
    ids=["key-int", "key-bytes", "version-int", "headers-int", "headers-list", "retry", "user"],
)
def test_settings_of_the_wrong_type_are_refused_naming_them(
    given: dict[str, object], named: str
) -> None:
    """A setting of the wrong type is a ConfigurationError naming it, never an AttributeError
    or TypeError from inside (``api_key=5`` failed on ``.strip()``, ``default_headers=5`` on
    ``dict()``); the key's value is not in the message."""
    kwargs = {"api_key": "k", **given}
    with pytest.raises(ConfigurationError) as info:
        AlloyClient(**kwargs)  # type: ignore[arg-type]
    assert named in str(info.value)
    assert "918273645" not in str(info.value)


def test_repr_never_shows_the_key() -> None:
    """repr(client) hides the key."""
    key = "sk_live_supersecret_value_123456"
    alloy = AlloyClient(key)
    assert key not in repr(alloy)
    assert key[-6:] not in repr(alloy)
    assert key not in repr(alloy._requester)


async def test_views_share_the_transport_and_close_nothing() -> None:
    """for_user / with_options reuse the connections; closing a view leaves the client open."""
    fake = FakeAlloy()
    alloy = fake.client()
    view = alloy.for_user("u1").with_options(timeout=5, max_retries=0)
    assert view.transport is alloy.transport
    assert (view.user_id, view.timeout, view.retry.max_retries) == ("u1", 5, 0)
    assert alloy.user_id is None and alloy.retry == RetryPolicy()
    await view.aclose()
    assert not alloy.closed
    await alloy.request("GET", "/connectors")
    await alloy.aclose()
    assert view.closed and alloy.closed


async def test_closed_client_refuses_work_clearly() -> None:
    """After aclose, calls raise ConfigurationError saying the client is closed."""
    fake = FakeAlloy()
    async with fake.client() as alloy:
        pass
    with pytest.raises(ConfigurationError, match="closed"):
        await alloy.request("GET", "/connectors")
    await alloy.aclose()  # idempotent
    assert fake.requests == []


async def test_a_given_transport_is_closed_by_the_client() -> None:
    """The client owns the transport it is given (httpx's rule): leaving it closes it, and
    closing it again is harmless. Catches: the former rule, under which a given transport
    stayed open (an aiohttp one then warned "Unclosed client session")."""
    fake = FakeAlloy()
    transport = fake.transport()
    async with AlloyClient("sk_test_fake_alloy_key", transport=transport):
        pass
    assert transport.closed
    await transport.aclose()


def test_use_from_a_second_event_loop_is_a_clear_error() -> None:
    """A client bound to one loop refuses another with a message, not 'Event loop is closed'."""
    fake = FakeAlloy()
    alloy = fake.client()
    asyncio.run(alloy.request("GET", "/connectors"))
    with pytest.raises(ConfigurationError, match="event loop"):
        asyncio.run(alloy.request("GET", "/connectors"))

    errors: list[BaseException] = []

    def other_thread() -> None:
        try:
            asyncio.run(alloy.request("GET", "/connectors"))
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=other_thread)
    t.start()
    t.join()
    assert isinstance(errors[0], ConfigurationError)


async def test_fake_transport_records_and_refuses_after_close() -> None:
    """FakeTransport keeps requests and raises once closed."""

    async def handler(request: object) -> object:
        raise AssertionError("not reached")

    transport = FakeTransport(handler)  # type: ignore[arg-type]
    await transport.aclose()
    alloy = AlloyClient("k", transport=transport)
    with pytest.raises(ConfigurationError):
        await alloy.request("GET", "/x")


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"user_id": 5}, "user_id"),
        ({"user_id": " "}, "user_id"),
        ({"default_headers": 5}, "default_headers"),
        ({"retry": 5}, "retry"),
    ],
    ids=["user-int", "user-blank", "headers-int", "retry-int"],
)
def test_a_views_settings_of_the_wrong_type_are_refused_naming_them(
    given: dict[str, object], named: str
) -> None:
    """``with_options`` refuses what the constructor refuses, naming it. Catches: ``user_id=5``
    accepted (every call of the view then sent a bad header), ``retry=5`` accepted (the first
    call failed inside the retry loop), ``default_headers=5`` as a TypeError."""
    alloy = AlloyClient("k")
    with pytest.raises(ConfigurationError) as info:
        alloy.with_options(**given)  # type: ignore[arg-type]
    assert named in str(info.value)
