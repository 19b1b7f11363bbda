"""Secrets: the API key, credential data, third-party auth headers and user tokens never leak.

A broad scenario (successes, retries, every failure kind, in-process and over real HTTP, one call
and ``execute_many``) runs with ``ALLOY_LOG=debug``; every log line (the env handler's stderr and
the captured records at DEBUG), every repr, every exception message and every traceback (plain
and with local variables, as error trackers capture them) is scanned for the secrets. Redirects
to another host are never followed (so Authorization cannot travel), and plain http to a
non-loopback host is refused, whatever the URL's tricks.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import traceback
import types
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import attrs
import pytest
import yarl
from aiohttp import web
from aiohttp.test_utils import RawTestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from alloy_async import AlloyClient, AlloyError, APIStatusError, ConfigurationError, RetryPolicy
from alloy_async._core import configure_logging_from_env, logger
from alloy_async._http import is_loopback
from alloy_async.models import ExecuteJob
from alloy_async.sandbox import SandboxServer
from alloy_async.testing import FakeAlloy, Fault

API_KEY = "sk_live_APIKEY_must_never_leak_7f3a9c"
CRED_DATA = "SG.CREDENTIAL_DATA_must_never_leak_51be"
THIRD_PARTY = "xoxb-THIRD_PARTY_TOKEN_must_never_leak_c0de"
PASSWORD = "hunter2-PASSWORD_must_never_leak_9911"


def _scan(texts: list[str], secrets: list[str]) -> None:
    assert texts
    for text in texts:
        for secret in secrets:
            assert secret not in text, f"secret leaked into: {text[:300]!r}"
            assert secret[8:24] not in text, f"part of a secret leaked into: {text[:300]!r}"


LOCALS: list[str] = []


def _error_texts(exc: BaseException) -> list[str]:
    texts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    texts.append(repr(getattr(exc, "body", None)))
    # Error trackers (Sentry, rich) capture the local variables of every frame. The caller's
    # arguments are the caller's business; what the SDK builds itself (the Authorization
    # header) must not sit in an SDK frame's locals in the clear.
    tb = traceback.TracebackException.from_exception(exc, capture_locals=True)
    for t in [tb, *_chain(tb)]:
        for frame in t.stack:
            if _sdk_side(frame.filename) and frame.locals:
                LOCALS.append(f"{frame.filename}:{frame.lineno} {frame.name} {frame.locals}")
    # ... and an error tracker serializing those locals walks into them: mappings item by
    # item, sequences, and (stricter than Sentry) the attributes of objects.
    seen: set[int] = set()
    for error in _exceptions(exc):
        frame_tb = error.__traceback__
        while frame_tb is not None:
            code = frame_tb.tb_frame.f_code
            if _sdk_side(code.co_filename):
                where = f"{code.co_filename.rsplit('/alloy_async/', 1)[-1]}:{code.co_name}"
                for name, value in frame_tb.tb_frame.f_locals.items():
                    REACHED.extend(_strings(value, f"{where} {name}", _DEPTH, seen))
            frame_tb = frame_tb.tb_next
    return texts


def _sdk_side(filename: str) -> bool:
    """An SDK frame on the client's side (the fake server and the sandbox are the API's)."""
    server_side = "/testing/" in filename or filename.endswith("sandbox.py")
    return "/alloy_async/" in filename and not server_side


def _exceptions(exc: BaseException) -> list[BaseException]:
    out, todo = [], [exc]
    while todo:
        error = todo.pop()
        if error is not None and all(error is not e for e in out):
            out.append(error)
            todo += [error.__cause__, error.__context__]  # type: ignore[list-item]
            todo += getattr(error, "exceptions", [])
    return out


REACHED: list[tuple[str, str]] = []  # (path, text) of every string reached from SDK locals
_DEPTH = 6  # Sentry serializes 5 levels deep; one more for the frame's own locals
_OPAQUE = (type, types.ModuleType, types.FunctionType, types.MethodType, types.BuiltinFunctionType)


def _strings(value: object, path: str, depth: int, seen: set[int]) -> Iterator[tuple[str, str]]:
    """Every str (and bytes) reachable from ``value`` within ``depth`` steps, with its path."""
    if isinstance(value, str):
        yield path, value
        return
    if isinstance(value, (bytes, bytearray)):
        yield path, bytes(value).decode("latin-1")
        return
    if depth == 0 or id(value) in seen or value is None or isinstance(value, (int, float)):
        return
    seen.add(id(value))
    if isinstance(value, _OPAQUE) or type(value).__module__.startswith("alloy_async.testing"):
        return  # code, and the fake server's own state (it knows the key: it is the API)
    if isinstance(value, Mapping):
        for k, v in list(value.items()):
            yield from _strings(k, f"{path}[{k!r}] (key)", depth - 1, seen)
            yield from _strings(v, f"{path}[{k!r}]", depth - 1, seen)
        return
    if isinstance(value, (list, tuple, set, frozenset, collections.deque)):
        for i, item in enumerate(list(value)):
            yield from _strings(item, f"{path}[{i}]", depth - 1, seen)
        return
    names: dict[str, None] = {}
    if attrs.has(type(value)):
        names.update((a.name, None) for a in attrs.fields(type(value)))
    for klass in type(value).__mro__:
        slots = klass.__dict__.get("__slots__", ())
        names.update((n, None) for n in ([slots] if isinstance(slots, str) else slots))
    with contextlib.suppress(TypeError):
        names.update((n, None) for n in vars(value))
    for name in names:
        if name in ("__dict__", "__weakref__"):
            continue
        try:
            attr = object.__getattribute__(value, name)
        except AttributeError:
            continue
        yield from _strings(attr, f"{path}.{name}", depth - 1, seen)


def _chain(tb: traceback.TracebackException) -> list[traceback.TracebackException]:
    out = []
    while tb.__cause__ is not None or tb.__context__ is not None:
        tb = tb.__cause__ or tb.__context__  # type: ignore[assignment]
        out.append(tb)
    return out


async def _scenario(alloy: AlloyClient, fake: FakeAlloy, texts: list[str]) -> list[str]:
    """Drive every kind of call and failure; return the user tokens seen."""
    user = (await alloy.users.create(username="s@example.com")).user_id
    texts += [repr(alloy), repr(alloy.for_user(user)), repr(alloy.users), repr(alloy.transport)]
    token = await alloy.users.token(user)
    slack = fake.add_credential(user, "slack")
    created = await alloy.credentials.create(
        "sendgrid",
        user_id=user,
        authentication_type="apiKey",
        data={"apiKey": CRED_DATA, "password": PASSWORD},
    )
    texts.append(repr(created))
    fake.fail("credentials.create", 400)
    fake.fail("credentials.create", 500)
    for _ in range(2):
        try:
            await alloy.credentials.create(
                "sendgrid", user_id=user, authentication_type="apiKey", data={"apiKey": CRED_DATA}
            )
        except AlloyError as exc:
            texts += _error_texts(exc)
    third = {"Authorization": f"Bearer {THIRD_PARTY}", "X-Api-Key": CRED_DATA}
    fake.fail("execute", 429, retry_after="0.01")
    fake.fail("execute", 503)
    result = await alloy.actions.execute(
        "slack",
        "chat_postMessage",
        credential_id=slack,
        user_id=user,
        request_body={"channel": "C", "text": "t"},
        additional_headers=third,
    )
    texts.append(repr(result))
    bad_calls = [
        # sent, then no answer: OutcomeUnknownError
        lambda: (
            fake.script("execute", Fault(reset="after")),
            alloy.actions.execute(
                "slack", "chat_postMessage", credential_id=slack, user_id=user,
                request_body={"channel": "C", "text": "t"}, additional_headers=third,
            ),
        )[1],
        # refused before sending, with secrets in the offending values
        lambda: alloy.actions.execute(
            "slack", "chat_postMessage", credential_id=slack, user_id=user,
            additional_headers={"Authorization": f"Bearer {THIRD_PARTY}\r\nX: 1"},
        ),
        lambda: alloy.actions.execute(
            "slack", "chat_postMessage", credential_id=slack,
            request_body={"k": {CRED_DATA}},
        ),
        lambda: alloy.users.get(user, extra_headers={"x-trace": "a\nb"}),
        lambda: alloy.users.get("no-such-user"),
        lambda: alloy.with_options(deadline=0.2).actions.execute(
            "slack", "chat_postMessage", credential_id=slack, user_id=user,
            request_body={"channel": "C", "text": "t"}, additional_headers=third,
        ) if fake.script("execute", Fault(delay=0.6)) is None else None,
        lambda: AlloyClient("sk_wrong", base_url=alloy.base_url, transport=alloy.transport)
        .users.list().to_list(),
    ]  # fmt: skip
    for make in bad_calls:
        try:
            await make()
        except AlloyError as exc:
            texts += _error_texts(exc)
        else:
            raise AssertionError("the call should have failed")
    jobs = [
        ExecuteJob(
            "slack", "chat_postMessage", slack, user_id=user,
            request_body={"channel": "C", "text": str(i)}, additional_headers=third,
        )
        for i in range(30)
    ]  # fmt: skip
    fake.script("execute", Fault(reset="after"), Fault(status=500))
    run = alloy.actions.execute_many(jobs, concurrency=4)
    async with run:
        async for outcome in run:
            texts += [repr(outcome), repr(outcome.job), str(outcome.job)]
            if outcome.error is not None:
                texts += _error_texts(outcome.error)
    texts += [repr(run.report), run.report.summary()]
    return [token]


@pytest.mark.parametrize("over", ["fake", "http"])
async def test_secrets_never_in_logs_reprs_errors_or_tracebacks(
    over: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ALLOY_LOG", "debug")
    before = list(logger.handlers)
    caplog.set_level(logging.DEBUG, logger="alloy_async")
    fake = FakeAlloy(api_key=API_KEY)
    texts: list[str] = []
    try:
        configure_logging_from_env()
        policy = RetryPolicy(max_retries=2, backoff_base=0.01)
        if over == "fake":
            async with fake.client(retry=policy) as alloy:
                tokens = await _scenario(alloy, fake, texts)
        else:
            async with (
                SandboxServer(fake) as server,
                AlloyClient(API_KEY, base_url=server.url, retry=policy) as alloy,
            ):
                tokens = await _scenario(alloy, fake, texts)
    finally:
        for handler in logger.handlers[:]:
            if handler not in before:
                logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    out, err = capfd.readouterr()
    logged = [r.getMessage() for r in caplog.records]
    logged += [repr(r.args) for r in caplog.records]
    assert any("retrying POST" in line for line in logged)  # DEBUG/INFO really happened
    assert "DEBUG alloy_async" in err  # the ALLOY_LOG handler wrote to stderr
    assert len(texts) > 100
    _scan([*texts, *logged, out, err], [API_KEY, CRED_DATA, THIRD_PARTY, PASSWORD, *tokens])
    with capfd.disabled():
        print(
            f"\n[reliability] secrets ({over}): {len(texts)} reprs/messages/tracebacks and "
            f"{len(caplog.records)} DEBUG records scanned for 5 secrets"
        )


async def test_api_key_not_in_the_locals_of_sdk_frames() -> None:
    """Errors raised through the SDK: no SDK frame's local variables show the API key.

    Catches: a local (Headers, Request, the requester) whose repr shows the key.
    """
    LOCALS.clear()
    fake = FakeAlloy(api_key=API_KEY)
    async with fake.client(retry=RetryPolicy(max_retries=2, backoff_base=0.01)) as alloy:
        await _scenario(alloy, fake, [])
    assert len(LOCALS) > 20
    _scan(LOCALS, [API_KEY])


@pytest.mark.parametrize("observer", ["plain", "observed"])
async def test_api_key_not_reachable_from_the_locals_of_sdk_frames(observer: str) -> None:
    """Errors raised through the SDK: walking their SDK frames' locals as an error tracker
    serializes them (mappings item by item, sequences, attributes of objects, 6 levels deep)
    reaches no string holding the API key.

    Catches: the key held as a plain str attribute or mapping value reachable from a frame;
    observed: OpenTelemetry (which adds ``traceparent`` to each request) or a hook copying the
    revealed ``authorization`` into the request it stores.
    """
    REACHED.clear()
    fake = FakeAlloy(api_key=API_KEY)
    observed: dict[str, Any] = {}
    if observer == "observed":
        from opentelemetry.sdk.trace import TracerProvider

        from alloy_async.observability.otel import OpenTelemetryObserver

        observed = {
            "telemetry": OpenTelemetryObserver(tracer_provider=TracerProvider()),
            "event_hooks": {"request": [lambda e: None], "response": [lambda e: None]},
        }
    policy = RetryPolicy(max_retries=2, backoff_base=0.01)
    async with fake.client(retry=policy, **observed) as alloy:
        await _scenario(alloy, fake, [])
    assert len(REACHED) > 1000  # the walk went deep (requests, jobs, errors, settings)
    leaks = sorted({path for path, text in REACHED if API_KEY in text or API_KEY[8:24] in text})
    assert not leaks, f"the API key is reachable from SDK frames' locals at: {leaks[:20]}"


@pytest.fixture
async def two_hosts() -> AsyncIterator[tuple[str, dict[str, int], list[dict[str, str]]]]:
    """127.0.0.1 answers every request with a redirect to 127.0.0.2, which counts its hits."""
    hits = {"second": 0}
    headers_seen: list[dict[str, str]] = []

    async def second(request: web.BaseRequest) -> web.StreamResponse:
        hits["second"] += 1
        headers_seen.append(dict(request.headers))
        return web.json_response({"stolen": True})

    target = RawTestServer(second, host="127.0.0.2")
    await target.start_server()
    where = f"http://127.0.0.2:{target.port}/collect"

    async def first(request: web.BaseRequest) -> web.StreamResponse:
        status = int(request.query.get("status", "307"))
        return web.Response(status=status, headers={"Location": where})

    origin = RawTestServer(first, host="127.0.0.1")
    await origin.start_server()
    try:
        yield f"http://127.0.0.1:{origin.port}", hits, headers_seen
    finally:
        await origin.close()
        await target.close()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_redirect_to_another_host_is_never_followed(
    two_hosts: tuple[str, dict[str, int], list[dict[str, str]]], status: int, method: str
) -> None:
    """The SDK raises on a 3xx naming the target; the other host is never contacted, so the
    Authorization header cannot reach it."""
    base, hits, seen = two_hosts
    async with AlloyClient(API_KEY, base_url=base, max_retries=2) as alloy:
        with pytest.raises(APIStatusError, match="redirect") as info:
            await alloy.request(
                method, "/users", query={"status": status}, json={} if method == "POST" else None
            )
    assert info.value.status == status
    assert "127.0.0.2" in str(info.value)
    assert hits["second"] == 0 and not seen
    _scan(_error_texts(info.value), [API_KEY])


def test_redirect_fixture_second_host_is_reachable() -> None:
    """127.0.0.2 is a real second host here (the redirect test would prove nothing otherwise)."""

    async def main() -> int:
        import aiohttp

        async def ok(request: web.BaseRequest) -> web.StreamResponse:
            return web.Response(text="ok")

        server = RawTestServer(ok, host="127.0.0.2")
        await server.start_server()
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.2:{server.port}/") as resp,
            ):
                return resp.status
        finally:
            await server.close()

    assert asyncio.run(main()) == 200


TRICKY_URLS = [
    "http://api.example.com",
    "http://127.0.0.1.nip.io",
    "http://localhost.evil.com",
    "http://evil.com#@127.0.0.1",
    "http://evil.com?@127.0.0.1",
    "http://127.0.0.1@evil.com",
    "http://localhost:80@evil.com",
    "http://127.0.0.1\\@evil.com",
    "http://0.0.0.0",
    "http://10.0.0.1",
    "http://[::ffff:8.8.8.8]",
    "http://2130706433.evil.com",
    "HTTP://Example.COM",
    "http://evil.com/127.0.0.1",
    " http://evil.com ",
    "http://169.254.169.254/latest",
]


@pytest.mark.parametrize("url", TRICKY_URLS)
def test_plain_http_to_non_loopback_is_refused(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the trick, plain http only ever goes to a loopback host (also via the env)."""
    with pytest.raises(ConfigurationError):
        AlloyClient(API_KEY, base_url=url)
    monkeypatch.setenv("ALLOY_BASE_URL", url)
    with pytest.raises(ConfigurationError) as info:
        AlloyClient(API_KEY)
    assert API_KEY not in str(info.value)


hosts = st.one_of(
    st.sampled_from(["127.0.0.1", "localhost", "LOCALHOST", "[::1]", "127.1.2.3", "example.com"]),
    st.from_regex(r"[a-z0-9.\-@:#?/\\\[\]%]{1,24}", fullmatch=True),
)


URL_CASES: list[str] = []


@settings(max_examples=1500, deadline=None, database=None)
@given(hosts, st.sampled_from(["", ":8080", "/base", ":1/x"]))
def test_any_accepted_http_url_points_at_loopback(host: str, tail: str) -> None:
    """For any http base URL the client accepts, the host aiohttp (yarl) connects to is loopback."""
    URL_CASES.append(host)
    url = f"http://{host}{tail}"
    try:
        alloy = AlloyClient(API_KEY, base_url=url)
    except ConfigurationError:
        return
    try:
        target = yarl.URL(alloy.base_url + "/users").host
    except ValueError:
        return  # aiohttp would refuse the URL as well
    assert target is not None and is_loopback(target), (url, target)


def test_url_property_ran(capsys: pytest.CaptureFixture[str]) -> None:
    """Reports the number of generated base URLs checked (the property runs first)."""
    if not URL_CASES:
        pytest.skip("run with the whole module")
    assert len(URL_CASES) >= 1500
    with capsys.disabled():
        print(f"\n[reliability] secrets: {len(URL_CASES)} generated http base URLs checked")
