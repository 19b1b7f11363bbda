"""Hostile input, property-based (hypothesis): over 10,000 generated cases in all.

* ids: a path parameter never leaves its URL segment (checked on the URL the transport receives,
  and on the raw path a real aiohttp server sees);
* header values and names: CR, LF and NUL are refused before anything is sent;
* bodies: anything JSON cannot encode is refused with InvalidRequestError, the rest arrives intact;
* responses: any status, headers and bytes (malformed, truncated, HTML, empty, huge, deeply
  nested, wrong content type) end in a result or a documented AlloyError, nothing else;
* a server that trickles bytes (headers or body) cannot hold a call past its timeout.

Each property counts the cases it ran and asserts the count; the totals are printed.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import RawTestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alloy_async import (
    AlloyClient,
    AlloyError,
    APITimeoutError,
    InvalidRequestError,
    OutcomeUnknownError,
    RetryPolicy,
)
from alloy_async._http import Request, Response
from alloy_async.transports import FakeTransport

KEY = "sk_test_hostile_0123456789"
RAN: Counter[str] = Counter()

HYP = settings(
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def _say(capsys: pytest.CaptureFixture[str], name: str, minimum: int) -> None:
    assert RAN[name] >= minimum, f"{name}: only {RAN[name]} cases ran"
    with capsys.disabled():
        print(f"\n[reliability] hostile input / {name}: {RAN[name]} cases")


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A private loop (debug off) that runs each hypothesis example to completion."""
    loop = asyncio.new_event_loop()
    try:
        yield loop
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


class Wire:
    """A FakeTransport whose answer each example chooses; keeps the last request."""

    def __init__(self) -> None:
        self.answer: Callable[[Request], Response] = lambda r: Response(404, {}, b"")
        self.transport = FakeTransport(self._handle, record=False)
        self.sent: list[Request] = []

    async def _handle(self, request: Request) -> Response:
        self.sent.append(request)
        return self.answer(request)

    def client(self, **kwargs: Any) -> AlloyClient:
        kwargs.setdefault("retry", RetryPolicy(max_retries=0))
        return AlloyClient(KEY, base_url="https://api.test", transport=self.transport, **kwargs)


# -- strategies --------------------------------------------------------------------------------

TRICKY = [
    "",
    " ",
    ".",
    "..",
    "...",
    "/",
    "../..",
    "a/../b",
    "%2F",
    "%2e%2e",
    "?x=1",
    "#frag",
    "a b",
    "\x00",
    "\r\n",
    "é/ü",
    "\ud7ff",
    "%",
    "\\..\\",
    "users",
    "u?userId=admin",
]
ids = st.one_of(st.sampled_from(TRICKY), st.text(max_size=24), st.text("./%?#\\ a", max_size=8))


def _refused_id(value: str) -> bool:
    """The documented refusals of a path parameter."""
    return not value.strip() or value in (".", "..") or "\x00" in value


# (call, the template's segments, which segment holds which argument, expected query)
IdCall = tuple[Callable[[AlloyClient, str, str], Awaitable[Any]], list[str], dict[int, int], Any]
ID_CALLS: list[IdCall] = [
    (lambda a, x, y: a.users.get(x), ["", "users", "{0}"], {2: 0}, None),
    (lambda a, x, y: a.users.delete(x), ["", "users", "{0}"], {2: 0}, None),
    (lambda a, x, y: a.users.update(x, username="n"), ["", "users", "{0}"], {2: 0}, None),
    (lambda a, x, y: a.users.token(x), ["", "users", "{0}", "token"], {2: 0}, "userId"),
    (lambda a, x, y: a.connectors.get(x), ["", "connectors", "{0}"], {2: 0}, None),
    (
        lambda a, x, y: a.connectors.resources(x),
        ["", "connectors", "{0}", "resources"],
        {2: 0},
        None,
    ),
    (
        lambda a, x, y: a.actions.get(x, y),
        ["", "connectors", "{0}", "actions", "{1}"],
        {2: 0, 4: 1},
        None,
    ),
    (
        lambda a, x, y: a.actions.execute(x, y, credential_id="c"),
        ["", "connectors", "{0}", "actions", "{1}", "execute"],
        {2: 0, 4: 1},
        None,
    ),
    (
        lambda a, x, y: a.credentials.delete(x, y, user_id="u"),
        ["", "connectors", "{0}", "credentials", "{1}"],
        {2: 0, 4: 1},
        "userId",
    ),
    (
        lambda a, x, y: a.credentials.metadata(x),
        ["", "connectors", "{0}", "credentials", "metadata"],
        {2: 0},
        None,
    ),
    (lambda a, x, y: a.files.delete(x), ["", "connectors", "files", "{0}"], {3: 0}, None),
    (
        lambda a, x, y: a.request("GET", "/x/{p}/y", path_params={"p": x}),
        ["", "x", "{0}", "y"],
        {2: 0},
        None,
    ),
]


def test_path_ids_never_leave_their_segment(
    loop: asyncio.AbstractEventLoop, capsys: pytest.CaptureFixture[str]
) -> None:
    """Any id lands, percent-encoded, in exactly its own segment, or is refused before sending."""
    wire = Wire()
    alloy = wire.client()

    @settings(HYP, max_examples=2500)
    @given(st.sampled_from(ID_CALLS), ids, ids)
    def prop(call: IdCall, first: str, second: str) -> None:
        RAN["path ids"] += 1
        fn, segments, where, query = call
        args = [first, second]
        wire.sent.clear()
        try:
            loop.run_until_complete(fn(alloy, first, second))
        except InvalidRequestError:
            assert not wire.sent
            assert any(_refused_id(args[i]) for i in where.values())
            return
        except AlloyError:
            pass  # the 404 answer
        assert not any(_refused_id(args[i]) for i in where.values())
        (request,) = wire.sent
        parts = urlsplit(request.url)
        assert (parts.scheme, parts.netloc, parts.fragment) == ("https", "api.test", "")
        got = parts.path.split("/")
        assert len(got) == len(segments), (request.url, args)
        for i, seg in enumerate(segments):
            if i in where:
                assert unquote(got[i]) == args[where[i]]
                assert "/" not in got[i] and "?" not in got[i] and "#" not in got[i]
            else:
                assert got[i] == seg
        assert request.path == parts.path
        if query is None:
            assert parts.query == ""
        else:
            assert parts.query.split("=")[0] == query and parts.query.count("&") == 0

    prop()
    _say(capsys, "path ids", 2500)


def test_path_ids_over_real_http(
    loop: asyncio.AbstractEventLoop, capsys: pytest.CaptureFixture[str]
) -> None:
    """The raw path a real aiohttp server receives (after yarl) keeps every id in its segment."""
    seen: list[str] = []

    async def record(request: web.Request) -> web.StreamResponse:
        seen.append(request.raw_path)
        return web.json_response({"ok": True})

    server = RawTestServer(record, host="127.0.0.1")  # no router: every path reaches record()
    loop.run_until_complete(server.start_server())
    base = str(server.make_url("")).rstrip("/")
    alloy = AlloyClient(KEY, base_url=base, retry=RetryPolicy(max_retries=0))
    try:

        @settings(HYP, max_examples=600)
        @given(ids, ids)
        def prop(first: str, second: str) -> None:
            RAN["path ids over HTTP"] += 1
            seen.clear()
            call = alloy.request(
                "GET", "/a/{x}/b/{y}/c", path_params={"x": first, "y": second}, query={"q": first}
            )
            try:
                loop.run_until_complete(call)
            except InvalidRequestError:
                assert _refused_id(first) or _refused_id(second)
                return
            (raw,) = seen
            path, _, query = raw.partition("?")
            segs = path.split("/")
            assert len(segs) == 6 and segs[1::2] == ["a", "b", "c"], raw
            assert (unquote(segs[2]), unquote(segs[4])) == (first, second)
            assert query.startswith("q=") and "&" not in query.replace("%26", "")

        prop()
    finally:
        loop.run_until_complete(alloy.aclose())
        loop.run_until_complete(server.close())
    _say(capsys, "path ids over HTTP", 600)


header_text = st.one_of(
    st.text(max_size=16),
    st.sampled_from(["a\r\nX-Injected: 1", "a\nb", "a\rb", "a\x00b", "ok", "\x7f", " lead"]),
)


def _bad_value(value: str) -> bool:
    return any(c in value for c in "\r\n\x00")


def test_header_values_with_cr_lf_nul_are_refused(
    loop: asyncio.AbstractEventLoop, capsys: pytest.CaptureFixture[str]
) -> None:
    """user ids, extra headers and the third party's additional headers: CR/LF/NUL refused
    before sending (InvalidRequestError); anything else arrives unchanged."""
    wire = Wire()
    wire.answer = lambda r: Response(200, {"content-type": "application/json"}, b"{}")
    alloy = wire.client()

    @settings(HYP, max_examples=2000)
    @given(st.sampled_from(["user_id", "extra", "additional", "name"]), header_text)
    def prop(where: str, value: str) -> None:
        RAN["header values"] += 1
        wire.sent.clear()
        if where == "user_id":
            call = alloy.request("GET", "/users", user_id=value)
        elif where == "extra":
            call = alloy.users.get("u", extra_headers={"x-custom": value})
        elif where == "additional":
            call = alloy.actions.execute(
                "s", "a", credential_id="c", additional_headers={"X-Third": value}
            )
        else:
            call = alloy.actions.execute(
                "s", "a", credential_id="c", additional_headers={value: "v"}
            )
        try:
            loop.run_until_complete(call)
        except InvalidRequestError:
            assert not wire.sent
            if where != "name":
                assert _bad_value(value) or (where == "user_id" and not value.strip())
            return
        except AlloyError:
            pass  # a 200 "{}" is not a valid user: fine, it was sent
        assert not _bad_value(value), f"{where} {value!r} was sent"
        (request,) = wire.sent
        if where == "user_id":
            assert request.headers["x-alloy-userid"] == value
        elif where == "extra":
            assert request.headers["x-custom"] == value
        else:
            sent = orjson.loads(request.body or b"")["additionalHeaders"]
            assert sent == ({"X-Third": value} if where == "additional" else {value: "v"})
            if where == "name":
                assert value and not any(c in value for c in ':()<>@,;\\"/[]?={} \t')

    prop()
    _say(capsys, "header values", 2000)


json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)
unencodable = st.one_of(
    st.integers(min_value=2**64),
    st.integers(max_value=-(2**63) - 1),
    st.sets(st.integers(), min_size=1, max_size=3),
    st.builds(object),
    st.binary(min_size=1, max_size=4),
    st.dictionaries(st.integers(), st.integers(), min_size=1, max_size=2),
    st.just(float("nan")),
    st.just(complex(1, 2)),
)
maybe_bad = st.recursive(
    st.one_of(json_leaf, unencodable),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


def _encodable(value: Any) -> bool:
    try:
        orjson.dumps(value)
        json.dumps(value, allow_nan=False)  # JSON has no NaN or Infinity (issue 10 item 2)
    except (TypeError, ValueError, orjson.JSONEncodeError):
        return False
    return True


def test_bodies_are_sent_intact_or_refused(
    loop: asyncio.AbstractEventLoop, capsys: pytest.CaptureFixture[str]
) -> None:
    """request_body / credential data / query parameters: what orjson cannot encode is refused
    with InvalidRequestError (never TypeError), the rest reaches the wire unchanged."""
    wire = Wire()
    wire.answer = lambda r: Response(200, {"content-type": "application/json"}, b'{"ok":1}')
    alloy = wire.client()

    @settings(HYP, max_examples=2000)
    @given(st.sampled_from(["execute", "credentials", "raw"]), st.one_of(json_value, maybe_bad))
    def prop(where: str, value: Any) -> None:
        RAN["bodies"] += 1
        wire.sent.clear()
        if where == "execute":
            call = alloy.actions.execute("s", "a", credential_id="c", request_body=value)
        elif where == "credentials":
            call = alloy.credentials.create(
                "s", user_id="u", authentication_type="apiKey", data={"apiKey": "k", "v": value}
            )
        else:
            call = alloy.request("POST", "/x", json={"v": value})
        try:
            loop.run_until_complete(call)
        except InvalidRequestError:
            assert not wire.sent
            if where != "credentials":
                assert not _encodable(value), f"{value!r} was refused"
            return
        except AlloyError:
            pass  # {"ok": 1} is not a credential
        assert _encodable(value)
        (request,) = wire.sent
        sent = orjson.loads(request.body or b"")
        expected = orjson.loads(orjson.dumps(value))
        if where == "execute":
            assert sent.get("requestBody") == expected or (
                value is None and sent == {"credentialId": "c"}
            )
        elif where == "credentials":
            assert sent["data"]["v"] == expected
        else:
            assert sent == {"v": expected}

    prop()
    _say(capsys, "bodies", 2000)


# -- hostile responses -------------------------------------------------------------------------

KEYS = [
    "data", "users", "user", "userId", "username", "fullName", "connectors", "connector", "id",
    "name", "resources", "actions", "action", "result", "responseData", "token", "credentials",
    "credentialId", "oauthUrl", "error", "message", "code", "details", "pagination", "hasMore",
    "nextOffset", "url", "type", "s3Key", "files", "statusCode", "headers", "errors", "source",
]  # fmt: skip
shaped = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(KEYS), inner, max_size=5),
    ),
    max_leaves=25,
)


def _nested(depth: int) -> bytes:
    return b'{"data":' * depth + b"1" + b"}" * depth


bodies = st.one_of(
    shaped.map(orjson.dumps),
    st.tuples(shaped.map(orjson.dumps), st.integers(0, 50)).map(lambda t: t[0][: t[1]]),
    st.binary(max_size=64),
    st.sampled_from(
        [
            b"",
            b"   ",
            b"null",
            b"<html><body><h1>502 Bad Gateway</h1></body></html>",
            b"<!DOCTYPE html><title>Error</title>",
            b'{"error": ',
            b"\xff\xfe\x00{",
            b"[" * 5000 + b"]" * 5000,
            _nested(200),
            _nested(1500),
            b'{"error": {"code": ["x"], "message": {"a": 1}, "source": 5}}',
            b'{"errors": [null, 3]}',
            b'{"error": 404, "message": null}',
        ]
    ),
)
statuses = st.one_of(
    st.sampled_from([200, 201, 204, 301, 307, 400, 401, 403, 404, 408, 409, 422, 429, 500, 503]),
    st.integers(100, 599),
)
header_maps = st.dictionaries(
    st.sampled_from(["content-type", "retry-after", "retry-after-ms", "x-request-id", "location"]),
    st.one_of(
        st.text(max_size=12),
        st.sampled_from(
            ["application/json", "text/html", "0", "-1", "nan", "inf", "1e400", "0.0001",
             "Wed, 21 Oct 2015 07:28:00 GMT", "Thu, 01 Jan 3000 00:00:00 GMT", "99999999999"]
        ),
    ),
    max_size=4,
)  # fmt: skip


async def _paged(a: AlloyClient) -> Any:
    return await a.actions.paginate("s", "a", credential_id="c").to_list(limit=20)


async def _catalog(a: AlloyClient) -> Any:
    return await a.actions.catalog(connectors=["s", "t"]).to_list()


SERVICE_CALLS: list[Callable[[AlloyClient], Awaitable[Any]]] = [
    lambda a: a.users.get("u"),
    lambda a: a.users.list(),
    lambda a: a.users.create(username="x@example.com"),
    lambda a: a.users.token("u"),
    lambda a: a.users.delete("u"),
    lambda a: a.connectors.list(),
    lambda a: a.connectors.get("s"),
    lambda a: a.connectors.resources("s"),
    lambda a: a.actions.get("s", "a"),
    lambda a: a.actions.execute("s", "a", credential_id="c", request_body={"t": 1}),
    _paged,
    _catalog,
    lambda a: a.credentials.metadata("s"),
    lambda a: a.credentials.create(
        "s", user_id="u", authentication_type="apiKey", data={"apiKey": "k"}
    ),
    lambda a: a.credentials.list("s", user_id="u"),
    lambda a: a.credentials.delete("s", "c", user_id="u"),
    lambda a: a.files.request_upload(
        filename="f", mime_type="text/plain", md5="1B2M2Y8AsgTpgAmY7PhCfg=="
    ),
    lambda a: a.files.list(),
    lambda a: a.request("GET", "/anything"),
]


def test_any_response_gives_a_result_or_a_documented_error(
    loop: asyncio.AbstractEventLoop, capsys: pytest.CaptureFixture[str]
) -> None:
    """Whatever status, headers and bytes come back, every service call returns or raises an
    AlloyError subclass: never KeyError, TypeError, RecursionError, orjson or cattrs errors."""
    wire = Wire()
    # One retry, no waits longer than 1 ms: retried answers are hostile too.
    alloy = wire.client(retry=RetryPolicy(max_retries=1, backoff_base=0, max_retry_after=0.001))
    kinds: Counter[str] = Counter()

    @settings(HYP, max_examples=3500)
    @given(st.sampled_from(SERVICE_CALLS), statuses, header_maps, bodies)
    def prop(
        call: Callable[[AlloyClient], Awaitable[Any]], status: int, headers: Any, body: bytes
    ) -> None:
        RAN["responses"] += 1
        wire.answer = lambda r: Response(status, headers, body)
        wire.sent.clear()
        try:
            loop.run_until_complete(asyncio.wait_for(call(alloy), 5))
            kinds["ok"] += 1
        except AlloyError as exc:
            kinds[type(exc).__name__] += 1
            str(exc), repr(exc)  # rendering the error must not fail either
        assert 1 <= len(wire.sent) <= 40  # paginate/catalog make several calls; none loops

    prop()
    assert kinds["ok"] and len(kinds) >= 5, kinds
    _say(capsys, "responses", 3500)


# -- trickling servers -------------------------------------------------------------------------


@pytest.fixture
async def trickler() -> Any:
    """A raw TCP server that sends its answer a byte at a time, forever."""
    tasks: set[asyncio.Task[None]] = set()
    hits = Counter[str]()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            mode = "headers" if b" /headers" in head else "body"
            hits[mode] += 1
            if mode == "headers":
                data = (
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + b"X-Pad: a" * 10**4
                )
            else:
                data = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b" " * 100000
            for i in range(len(data)):
                writer.write(data[i : i + 1])
                await writer.drain()
                await asyncio.sleep(0.02)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def spawn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(handle(reader, writer))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    server = await asyncio.start_server(spawn, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", hits
    server.close()
    for task in list(tasks):
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await server.wait_closed()


@pytest.mark.parametrize(
    ("method", "path", "error"),
    [
        ("GET", "/headers", APITimeoutError),
        ("POST", "/headers", OutcomeUnknownError),
        ("POST", "/body", OutcomeUnknownError),
    ],
)
async def test_trickling_headers_or_body_cannot_outlast_the_timeout(
    trickler: Any, method: str, path: str, error: type[Exception]
) -> None:
    """Status line and headers (or a sized body) dribbling in one byte per 20 ms: the call ends
    near its timeout; a POST ends OutcomeUnknownError and is sent once."""
    base, hits = trickler
    async with AlloyClient(
        KEY, base_url=base, timeout=0.5, retry=RetryPolicy(max_retries=2, backoff_base=0.01)
    ) as alloy:
        start = time.monotonic()
        with pytest.raises(error):
            await alloy.request(method, path, json={} if method == "POST" else None)
        elapsed = time.monotonic() - start
    retries = 3 if method == "GET" else 1
    assert elapsed < 0.5 * retries + 1.5, elapsed
    assert sum(hits.values()) == retries  # the GET is retried; a POST never is
