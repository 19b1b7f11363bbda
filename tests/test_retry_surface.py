"""Issue 10, items 8 and 11: what is retried, and how bad settings are refused.

* Reads retry on every transient 5xx, the 520-524 a CDN (Cloudflare) answers included, with
  the CDN's HTML body; a POST is not re-sent on them (only on 429/503 and "never sent").
  Judged by the number of requests the server saw.
* A bad argument to ``RetryPolicy`` or a limiter raises an ``AlloyError`` (an
  ``InvalidRequestError``, still a ``ValueError``) whose ``field`` names it, so
  ``except AlloyError`` catches every error the SDK raises on purpose.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from alloy_async import (
    AdaptiveLimiter,
    AlloyClient,
    AlloyError,
    ConcurrencyLimiter,
    FakeTransport,
    InvalidRequestError,
    RateLimiter,
    Request,
    Response,
    RetryPolicy,
    ServerError,
)

KEY = "sk_test_retry_surface_0123456789"

CDN_STATUSES = [520, 521, 522, 523, 524]


class Server:
    """Answers each request with the next scripted status, then 200; counts what it saw."""

    def __init__(self, *statuses: int) -> None:
        self.script = list(statuses)
        self.seen: list[Request] = []

    async def __call__(self, request: Request) -> Response:
        self.seen.append(request)
        if self.script:
            status = self.script.pop(0)
            # What Cloudflare sends for its 52x: an HTML page, not the API's JSON.
            body = f"<html><title>{status}: origin error | example.com | Cloudflare</title>"
            return Response(status, {"content-type": "text/html", "cf-ray": "8f1c"}, body.encode())
        payload = {"connectors": []} if request.method == "GET" else {"success": True, "data": 1}
        return Response(200, {"content-type": "application/json"}, orjson.dumps(payload))


def client(server: Server) -> AlloyClient:
    policy = RetryPolicy(max_retries=3, backoff_base=0.01)
    return AlloyClient(KEY, transport=FakeTransport(server), retry=policy)


@pytest.mark.virtual_time
@pytest.mark.parametrize("status", [*CDN_STATUSES, 500, 502, 503, 504])
async def test_reads_retry_on_every_transient_5xx_cdn_ones_included(status: int) -> None:
    """GET answered 52x twice (HTML from the CDN), then 200: three requests, and a result."""
    server = Server(status, status)
    async with client(server) as alloy:
        body = await alloy.request("GET", "/connectors")
    assert body == {"connectors": []}
    assert [r.method for r in server.seen] == ["GET"] * 3


@pytest.mark.virtual_time
@pytest.mark.parametrize("status", [501, 505])
async def test_reads_do_not_retry_a_5xx_that_is_not_transient(status: int) -> None:
    """501 Not Implemented, 505 HTTP Version Not Supported: the same request gets the same
    answer, so it is raised after one request."""
    server = Server(status)
    async with client(server) as alloy:
        with pytest.raises(ServerError) as info:
            await alloy.request("GET", "/connectors")
    assert info.value.status == status
    assert len(server.seen) == 1


@pytest.mark.virtual_time
@pytest.mark.parametrize("status", CDN_STATUSES)
async def test_execute_is_never_resent_on_a_cdn_5xx(status: int) -> None:
    """A 52x may come after the origin acted: an execute is raised at once, sent once."""
    server = Server(status)
    async with client(server) as alloy:
        with pytest.raises(ServerError) as info:
            await alloy.actions.execute(
                "slack", "chat_postMessage", credential_id="cred_1", user_id="user_1",
                request_body={"channel": "C1", "text": "hi"},
            )  # fmt: skip
    assert info.value.status == status
    assert [r.method for r in server.seen] == ["POST"]


@pytest.mark.virtual_time
async def test_execute_is_still_retried_on_503() -> None:
    """The POST rule is unchanged: 503 means "not handled", so it is sent again."""
    server = Server(503)
    async with client(server) as alloy:
        result = await alloy.actions.execute(
            "slack", "chat_postMessage", credential_id="cred_1", user_id="user_1"
        )
    assert result.success
    assert [r.method for r in server.seen] == ["POST", "POST"]


# -- bad settings are AlloyErrors naming the field ----------------------------------------------

NAN = math.nan
INF = math.inf

BAD_SETTINGS: list[tuple[str, Callable[[], Any], str]] = [
    ("max_retries=-1", lambda: RetryPolicy(max_retries=-1), "max_retries"),
    ("max_retries=1.5", lambda: RetryPolicy(max_retries=1.5), "max_retries"),
    ("backoff_base=-0.1", lambda: RetryPolicy(backoff_base=-0.1), "backoff_base"),
    ("backoff_base=nan", lambda: RetryPolicy(backoff_base=NAN), "backoff_base"),
    ("backoff_max=-1", lambda: RetryPolicy(backoff_max=-1), "backoff_max"),
    ("max_retry_after=nan", lambda: RetryPolicy(max_retry_after=NAN), "max_retry_after"),
    ("deadline=0", lambda: RetryPolicy(deadline=0), "deadline"),
    ("deadline=nan", lambda: RetryPolicy(deadline=NAN), "deadline"),
    ("retry_statuses=200", lambda: RetryPolicy(retry_statuses=frozenset({200})), "retry_statuses"),
    ("retry_statuses='503'", lambda: RetryPolicy(retry_statuses="503"), "retry_statuses"),
    (
        "unsafe_retry_statuses=None",
        lambda: RetryPolicy(unsafe_retry_statuses=None),
        "unsafe_retry_statuses",
    ),
    ("retry_unsafe='no'", lambda: RetryPolicy(retry_unsafe="no"), "retry_unsafe"),
    ("backoff_wait(0)", lambda: RetryPolicy().backoff_wait(0), "retry_number"),
    ("client max_retries=-1", lambda: AlloyClient(KEY, max_retries=-1), "max_retries"),
    ("with_options deadline=-5", lambda: _view(deadline=-5), "deadline"),
    ("ConcurrencyLimiter(0)", lambda: ConcurrencyLimiter(0), "total"),
    ("ConcurrencyLimiter(2.5)", lambda: ConcurrencyLimiter(2.5), "total"),
    ("per_key user=0", lambda: ConcurrencyLimiter(4, per_key={"user": 0}), "per_key"),
    ("RateLimiter(0)", lambda: RateLimiter(0), "rate"),
    ("RateLimiter(nan)", lambda: RateLimiter(NAN), "rate"),
    ("RateLimiter(inf)", lambda: RateLimiter(INF), "rate"),
    ("RateLimiter('5')", lambda: RateLimiter("5"), "rate"),
    ("RateLimiter burst=0", lambda: RateLimiter(5, burst=0), "burst"),
    ("RateLimiter burst=True", lambda: RateLimiter(5, burst=True), "burst"),
    ("RateLimiter clock=3", lambda: RateLimiter(5, clock=3), "clock"),
    ("AdaptiveLimiter(0)", lambda: AdaptiveLimiter(0), "max_limit"),
    ("min_limit>max_limit", lambda: AdaptiveLimiter(4, min_limit=5), "min_limit"),
    ("decrease=1", lambda: AdaptiveLimiter(decrease=1), "decrease"),
    ("decrease=nan", lambda: AdaptiveLimiter(decrease=NAN), "decrease"),
    ("increase=0", lambda: AdaptiveLimiter(increase=0), "increase"),
    ("increase=nan", lambda: AdaptiveLimiter(increase=NAN), "increase"),
    ("default_cooldown=-1", lambda: AdaptiveLimiter(default_cooldown=-1), "default_cooldown"),
    ("default_cooldown=nan", lambda: AdaptiveLimiter(default_cooldown=NAN), "default_cooldown"),
    ("max_cooldown=-1", lambda: AdaptiveLimiter(max_cooldown=-1), "max_cooldown"),
]


def _view(**options: Any) -> Any:
    return AlloyClient(KEY, transport=FakeTransport(Server())).with_options(**options)


@pytest.mark.parametrize(
    ("make", "field"), [(m, f) for _, m, f in BAD_SETTINGS], ids=[i for i, _, _ in BAD_SETTINGS]
)
def test_a_bad_setting_is_an_alloy_error_naming_the_field(
    make: Callable[[], Any], field: str
) -> None:
    with pytest.raises(AlloyError) as info:
        make()
    err = info.value
    assert isinstance(err, InvalidRequestError)
    assert isinstance(err, ValueError)  # code that caught ValueError still does
    assert err.field == field
    assert field in str(err)


def test_good_settings_are_kept() -> None:
    """The checks refuse nonsense only: the defaults, ints for floats, infinite waits, a list
    of statuses and an injected clock are accepted as before."""
    policy = RetryPolicy(backoff_base=0, backoff_max=INF, max_retry_after=INF, deadline=1)
    assert policy.max_retries == 3
    assert RetryPolicy(retry_statuses=[429, 503]).retry_statuses == frozenset({429, 503})
    assert 522 in RetryPolicy().retry_statuses
    assert RetryPolicy().unsafe_retry_statuses == frozenset({429, 503})
    assert RateLimiter(7, burst=2, clock=lambda: 0.0).rate == 7.0
    assert AdaptiveLimiter(4, min_limit=4, max_cooldown=INF, default_cooldown=0).max_limit == 4
    assert ConcurrencyLimiter(None, per_key={"user": 1}).statistics().total is None
