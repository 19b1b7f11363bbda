"""AsyncPaginator: single, offset and cursor strategies, re-iteration, early stops, 429s."""

from __future__ import annotations

import asyncio
import logging
import weakref
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from alloy_async._http import Request, Response
from alloy_async.client import AlloyClient
from alloy_async.errors import InvalidRequestError, InvalidResponseError, ServerError
from alloy_async.pagination import AsyncPaginator, Page
from alloy_async.retry import RetryPolicy
from alloy_async.transports.fake import FakeTransport

# Every test runs in-process, so the virtual clock costs nothing and keeps retry waits instant.
# (tests/conftest.py's loop-factory hook also rejects unmarked async tests under
# pytest-asyncio 1.5, so marking the module keeps this file runnable on its own.)
pytestmark = pytest.mark.virtual_time


def data(body: dict[str, Any]) -> list[Any]:
    """The parse function of Alloy's paging guide: the ``data`` list."""
    items: list[Any] = body["data"]
    return items


class OffsetAPI:
    """An in-memory offset-paged list that records every (offset, limit) it is asked for."""

    def __init__(self, total: int, *, next_offset: bool = True, flag: bool = True) -> None:
        self.rows = list(range(total))
        self.calls: list[tuple[int, int]] = []
        self.next_offset = next_offset
        self.flag = flag

    async def fetch(self, offset: int, limit: int) -> dict[str, Any]:
        self.calls.append((offset, limit))
        await asyncio.sleep(0)
        chunk = self.rows[offset : offset + limit]
        more = offset + limit < len(self.rows)
        pagination: dict[str, Any] = {}
        if self.flag:
            pagination["hasMore"] = more
        if self.next_offset and more:
            pagination["nextOffset"] = offset + len(chunk)
        return {"data": chunk, "pagination": pagination}


class CursorAPI:
    """Pages ``[[0, 1], [2, 3], [4]]`` behind cursors ``None -> "p2" -> "p3"``."""

    pages: ClassVar[dict[str | None, tuple[list[int], str | None]]] = {
        None: ([0, 1], "p2"),
        "p2": ([2, 3], "p3"),
        "p3": ([4], None),
    }

    def __init__(self) -> None:
        self.calls: list[str | None] = []

    async def fetch(self, cursor: str | None) -> dict[str, Any]:
        self.calls.append(cursor)
        items, following = self.pages[cursor]
        return {"items": items, "next": following}


# -- offset ---------------------------------------------------------------------------------


async def test_offset_yields_every_item_following_next_offset() -> None:
    """Items arrive in order across pages; each page is requested at nextOffset."""
    api = OffsetAPI(5)
    paginator = AsyncPaginator.offset(api.fetch, data, limit=2)
    assert [item async for item in paginator] == [0, 1, 2, 3, 4]
    assert api.calls == [(0, 2), (2, 2), (4, 2)]


async def test_offset_pages_describe_themselves() -> None:
    """pages() yields Page objects with their offsets, flags and raw bodies."""
    api = OffsetAPI(5)
    pages = [page async for page in AsyncPaginator.offset(api.fetch, data, limit=2).pages()]
    assert [(p.number, p.offset, p.next_offset, p.has_more) for p in pages] == [
        (1, 0, 2, True),
        (2, 2, 4, True),
        (3, 4, None, False),
    ]
    assert pages[0].items == (0, 1)
    assert list(pages[2]) == [4]
    assert len(pages[2]) == 1
    assert pages[1].raw == {"data": [2, 3], "pagination": {"hasMore": True, "nextOffset": 4}}


async def test_offset_without_next_offset_advances_by_page_length() -> None:
    """hasMore without nextOffset continues at offset + len(items)."""
    api = OffsetAPI(5, next_offset=False)
    assert await AsyncPaginator.offset(api.fetch, data, limit=2, start=1).to_list() == [1, 2, 3, 4]
    assert api.calls == [(1, 2), (3, 2)]


async def test_offset_without_pagination_block_reads_while_pages_are_full() -> None:
    """With no hasMore at all, a full page means "maybe more" and a short page ends the list."""
    api = OffsetAPI(4, next_offset=False, flag=False)
    assert await AsyncPaginator.offset(api.fetch, data, limit=2).to_list() == [0, 1, 2, 3]
    # The third call finds the empty page that proves the end.
    assert api.calls == [(0, 2), (2, 2), (4, 2)]


async def test_offset_accepts_a_numeric_string_next_offset() -> None:
    """nextOffset given as a string of digits is still followed."""
    bodies = {
        0: {"data": [1], "pagination": {"hasMore": True, "nextOffset": "1"}},
        1: {"data": [2], "pagination": {"hasMore": False}},
    }

    async def fetch(offset: int, limit: int) -> Any:
        return bodies[offset]

    assert await AsyncPaginator.offset(fetch, data, limit=1).to_list() == [1, 2]


async def test_empty_first_page_ends_at_once() -> None:
    """An empty first page gives no items and one fetch, even if hasMore claims more."""
    calls: list[int] = []

    async def fetch(offset: int, limit: int) -> Any:
        calls.append(offset)
        return {"data": [], "pagination": {"hasMore": True, "nextOffset": 50}}

    paginator = AsyncPaginator.offset(fetch, data)
    assert await paginator.to_list() == []
    assert calls == [0]
    page = await paginator.first_page()
    assert page.items == ()
    assert not page.has_more
    assert page.next_offset is None


async def test_empty_page_midway_ends_the_list() -> None:
    """An empty page after full ones stops iteration instead of trusting hasMore."""
    bodies = {
        0: {"data": [1, 2], "pagination": {"hasMore": True, "nextOffset": 2}},
        2: {"data": [], "pagination": {"hasMore": True, "nextOffset": 4}},
    }
    calls: list[int] = []

    async def fetch(offset: int, limit: int) -> Any:
        calls.append(offset)
        return bodies[offset]

    assert await AsyncPaginator.offset(fetch, data, limit=2).to_list() == [1, 2]
    assert calls == [0, 2]


@pytest.mark.parametrize("stuck", [0, 10, -5])
async def test_stuck_next_offset_raises_instead_of_looping(stuck: int) -> None:
    """A nextOffset that does not move forward raises InvalidResponseError, not a hang."""
    calls: list[int] = []

    async def fetch(offset: int, limit: int) -> Any:
        calls.append(offset)
        nxt = 10 if offset == 0 else stuck
        return {"data": [offset], "pagination": {"hasMore": True, "nextOffset": nxt}}

    paginator = AsyncPaginator.offset(fetch, data, limit=10)
    seen: list[int] = []

    async def drain() -> None:
        async for item in paginator:
            seen.append(item)

    with pytest.raises(InvalidResponseError, match="nextOffset"):
        await drain()
    assert seen == [0]  # the good first page was delivered before the error
    assert calls == [0, 10]


async def test_non_integer_next_offset_raises() -> None:
    """A nextOffset that is not an integer is an InvalidResponseError."""

    async def fetch(offset: int, limit: int) -> Any:
        return {"data": [1], "pagination": {"hasMore": True, "nextOffset": "later"}}

    with pytest.raises(InvalidResponseError, match="integer"):
        await AsyncPaginator.offset(fetch, data).to_list()


# -- cursor and single -----------------------------------------------------------------------


async def test_cursor_strategy_follows_next_cursor() -> None:
    """The cursor strategy starts with None and follows next_cursor until it is None."""
    api = CursorAPI()
    paginator = AsyncPaginator.cursor(
        api.fetch, lambda body: body["items"], next_cursor=lambda body: body["next"]
    )
    assert await paginator.to_list() == [0, 1, 2, 3, 4]
    assert api.calls == [None, "p2", "p3"]
    pages = [page async for page in paginator.pages()]
    assert [(p.cursor, p.next_cursor, p.has_more) for p in pages] == [
        (None, "p2", True),
        ("p2", "p3", True),
        ("p3", None, False),
    ]


async def test_cursor_empty_string_ends_and_repeated_cursor_raises() -> None:
    """An empty next cursor ends the list; a cursor handed back unchanged raises."""

    async def fetch_end(cursor: str | None) -> Any:
        return {"items": [1], "next": ""}

    ended = AsyncPaginator.cursor(fetch_end, lambda b: b["items"], next_cursor=lambda b: b["next"])
    assert await ended.to_list() == [1]
    assert ended.pages_fetched == 1

    async def fetch_stuck(cursor: str | None) -> Any:
        return {"items": [1], "next": "same"}

    stuck = AsyncPaginator.cursor(
        fetch_stuck, lambda b: b["items"], next_cursor=lambda b: b["next"]
    )
    with pytest.raises(InvalidResponseError, match="cursor"):
        await stuck.to_list()
    assert stuck.pages_fetched == 2


async def test_single_response_is_one_page() -> None:
    """single() fetches once and yields one page with has_more False."""
    calls = 0

    async def fetch() -> Any:
        nonlocal calls
        calls += 1
        return {"users": [{"userId": "a"}, {"userId": "b"}]}

    paginator = AsyncPaginator.single(fetch, lambda body: (u["userId"] for u in body["users"]))
    assert await paginator.to_list() == ["a", "b"]
    page = await paginator
    assert isinstance(page, Page)
    assert page.items == ("a", "b")
    assert not page.has_more
    assert page.number == 1
    assert calls == 2
    assert paginator.strategy == "single"


# -- iteration behaviour ---------------------------------------------------------------------


async def test_reiteration_starts_again_from_page_one() -> None:
    """Two loops give identical items and fetch every page twice; the paginator is no iterator."""
    api = OffsetAPI(5)
    paginator = AsyncPaginator.offset(api.fetch, data, limit=2)
    first = [item async for item in paginator]
    second = [item async for item in paginator]
    assert first == second == [0, 1, 2, 3, 4]
    assert api.calls == [(0, 2), (2, 2), (4, 2)] * 2
    assert paginator.pages_fetched == 6
    assert paginator.__aiter__() is not paginator.__aiter__()
    assert not hasattr(paginator, "__anext__")


async def test_interleaved_iterations_are_independent() -> None:
    """Two iterations in flight at once each see the whole list."""
    api = OffsetAPI(5)
    paginator = AsyncPaginator.offset(api.fetch, data, limit=2)
    a, b = await asyncio.gather(paginator.to_list(), paginator.to_list())
    assert a == b == [0, 1, 2, 3, 4]


async def test_to_list_limit_stops_fetching_early() -> None:
    """to_list(limit=n) fetches only the pages needed for n items."""
    api = OffsetAPI(100)
    paginator = AsyncPaginator.offset(api.fetch, data, limit=10)
    assert await paginator.to_list(limit=25) == list(range(25))
    assert api.calls == [(0, 10), (10, 10), (20, 10)]

    api.calls.clear()
    assert await paginator.to_list(limit=10) == list(range(10))
    assert api.calls == [(0, 10)]  # a full first page is enough: no look-ahead

    api.calls.clear()
    assert await paginator.to_list(limit=0) == []
    assert api.calls == []


async def test_first_page_and_await_fetch_one_page() -> None:
    """await paginator and first_page() fetch page one only."""
    api = OffsetAPI(100)
    paginator = AsyncPaginator.offset(api.fetch, data, limit=10)
    page = await paginator
    assert page.items == tuple(range(10))
    assert page.has_more
    assert page.next_offset == 10
    assert (await paginator.first_page()).items == page.items
    assert api.calls == [(0, 10), (0, 10)]


async def test_break_stops_fetching() -> None:
    """Leaving an async for early fetches no further page."""
    api = OffsetAPI(100)
    async for item in AsyncPaginator.offset(api.fetch, data, limit=10):
        if item == 12:
            break
    assert api.calls == [(0, 10), (10, 10)]


async def test_holds_at_most_one_page_in_memory() -> None:
    """While page n+1 is fetched, no item of pages before n is still alive."""

    class Row:
        def __init__(self, n: int) -> None:
            self.n = n

    alive: weakref.WeakSet[Row] = weakref.WeakSet()
    peak = 0

    async def fetch(offset: int, limit: int) -> Any:
        nonlocal peak
        peak = max(peak, len(alive))
        rows = [Row(n) for n in range(offset, min(offset + limit, 100))]
        alive.update(rows)
        return {"data": rows, "pagination": {"hasMore": offset + limit < 100}}

    total = 0
    async for row in AsyncPaginator.offset(fetch, data, limit=10):
        total += row.n
    assert total == sum(range(100))
    # The consumer's loop variable keeps one row alive, the paginator none of the old pages.
    assert peak <= 1


async def test_error_midway_propagates_and_next_loop_restarts() -> None:
    """A failing page raises out of the loop; the next loop starts from page one."""
    fail = True
    calls: list[int] = []

    async def fetch(offset: int, limit: int) -> Any:
        calls.append(offset)
        if offset == 2 and fail:
            raise ServerError("boom", status=500)
        return {"data": [offset, offset + 1], "pagination": {"hasMore": offset < 2}}

    paginator = AsyncPaginator.offset(fetch, data, limit=2)
    with pytest.raises(ServerError):
        await paginator.to_list()
    fail = False
    assert await paginator.to_list() == [0, 1, 2, 3]
    assert calls == [0, 2, 0, 2]


# -- max_pages -------------------------------------------------------------------------------


async def test_max_pages_caps_fetching_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    """max_pages stops after that many pages, marks the run truncated and logs a warning."""
    api = OffsetAPI(100)
    paginator = AsyncPaginator.offset(api.fetch, data, limit=10, max_pages=3)
    with caplog.at_level(logging.WARNING, logger="alloy_async"):
        assert await paginator.to_list() == list(range(30))
    assert api.calls == [(0, 10), (10, 10), (20, 10)]
    assert paginator.truncated
    assert "max_pages=3" in caplog.text


async def test_max_pages_not_reached_is_not_truncated() -> None:
    """A list that ends within max_pages is read whole and not marked truncated."""
    api = OffsetAPI(30)
    paginator = AsyncPaginator.offset(api.fetch, data, limit=10, max_pages=3)
    assert await paginator.to_list() == list(range(30))
    assert not paginator.truncated


async def test_max_pages_bounds_an_endless_cursor() -> None:
    """A server handing out fresh cursors forever is stopped by max_pages."""
    counter = 0

    async def fetch(cursor: str | None) -> Any:
        nonlocal counter
        counter += 1
        return {"items": [], "next": f"c{counter}"}

    paginator = AsyncPaginator.cursor(
        fetch, lambda b: b["items"], next_cursor=lambda b: b["next"], max_pages=5
    )
    assert await paginator.to_list() == []
    assert counter == 5
    assert paginator.truncated


# -- arguments and repr ----------------------------------------------------------------------


async def _never(offset: int, limit: int) -> Any:
    raise AssertionError("not fetched")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"start": -1}, "start"),
        ({"max_pages": 0}, "max_pages"),
        ({"limit": True}, "limit"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, Any], field: str) -> None:
    """Nonsense limits, starts and caps raise InvalidRequestError before any fetch."""
    with pytest.raises(InvalidRequestError, match=field):
        AsyncPaginator.offset(_never, data, **kwargs)


async def test_negative_to_list_limit_is_refused() -> None:
    """to_list(limit=-1) raises InvalidRequestError."""
    with pytest.raises(InvalidRequestError):
        await AsyncPaginator.offset(_never, data).to_list(limit=-1)


async def test_repr_shows_strategy_and_progress() -> None:
    """The repr names the strategy, its settings and the pages fetched so far."""
    api = OffsetAPI(5)
    paginator = AsyncPaginator.offset(api.fetch, data, limit=2, max_pages=9)
    assert repr(paginator) == "<AsyncPaginator offset limit=2 start=0 pages_fetched=0 max_pages=9>"
    await paginator.to_list()
    assert "pages_fetched=3" in repr(paginator)
    assert "raw" not in repr(await paginator)  # page reprs never dump whole bodies


# -- through the real request pipeline -------------------------------------------------------


async def test_429_midway_is_retried_without_restarting() -> None:
    """A 429 on page 3 is retried by the pipeline: page 3 is fetched twice, page 1 once."""
    offsets: list[int] = []
    throttled = False

    async def handler(request: Request) -> Response:
        nonlocal throttled
        query = parse_qs(urlsplit(request.url).query)
        offset, limit = int(query["offset"][0]), int(query["limit"][0])
        offsets.append(offset)
        if offset == 100 and not throttled:
            throttled = True
            return Response(429, {"retry-after": "2"}, b'{"error": "RATE_LIMITED"}')
        rows = list(range(offset, min(offset + limit, 180)))
        more = offset + limit < 180
        body: dict[str, Any] = {"data": rows, "pagination": {"hasMore": more}}
        if more:
            body["pagination"]["nextOffset"] = offset + limit
        return Response(200, {"content-type": "application/json"}, orjson.dumps(body))

    transport = FakeTransport(handler)
    async with AlloyClient(
        api_key="k", transport=transport, retry=RetryPolicy(max_retries=2)
    ) as client:

        async def fetch(offset: int, limit: int) -> Any:
            return await client._requester.request_json(
                "GET", "/things", query={"offset": offset, "limit": limit}
            )

        loop = asyncio.get_running_loop()
        started = loop.time()
        items = await AsyncPaginator.offset(fetch, data).to_list()

    assert items == list(range(180))
    assert offsets == [0, 50, 100, 100, 150]
    assert offsets.count(0) == 1
    assert offsets.count(100) == 2
    assert loop.time() - started >= 2  # the Retry-After wait happened (virtually)
