"""Issue 10: a list that does not page ends with PaginationError, never an endless loop.

Each scripted server below is FakeAlloy with its ``execute`` route answered by a hook that
counts its own calls. Every one of them gives up after ``BOUND`` calls (it then ends the list),
so an SDK without the guards finishes with the wrong result instead of hanging the suite.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from alloy_async import (
    AlloyClient,
    AlloyError,
    InvalidRequestError,
    InvalidResponseError,
    PaginationError,
)
from alloy_async._http import Request, Response
from alloy_async.pagination import DEFAULT_MAX_PAGES, AsyncPaginator
from alloy_async.testing import FakeAlloy

pytestmark = pytest.mark.virtual_time

BOUND = 300  # calls after which a scripted server gives up and ends its list
Body = dict[str, Any]


class ListAction:
    """A list action behind FakeAlloy's execute route: ``answer(args, call)`` is the JSON body
    of one page, where ``args`` are the queryParameters the SDK sent."""

    def __init__(
        self, fake: FakeAlloy, answer: Callable[[Body, int], Body], *, bound: int = BOUND
    ) -> None:
        self.answer = answer
        self.bound = bound
        self.calls = 0
        self.asked: list[Body] = []
        fake.route_hooks["execute"] = self

    def __call__(self, request: Request) -> Response:
        self.calls += 1
        args = dict(orjson.loads(request.body or b"{}").get("queryParameters") or {})
        self.asked.append(args)
        body = self.answer(args, self.calls)
        if self.calls >= self.bound:
            body = {"data": [], "pagination": {"hasMore": False}, "response_metadata": {}}
        return Response(200, {"content-type": "application/json"}, orjson.dumps(body))


def rows(first: int, count: int) -> list[Body]:
    return [
        {"id": f"rec_{n:06d}", "email": f"c{n}@example.com"} for n in range(first, first + count)
    ]


@pytest.fixture
def fake() -> FakeAlloy:
    return FakeAlloy(strict=True, record=True)


@pytest.fixture
async def alloy(fake: FakeAlloy) -> Any:
    async with fake.client() as client:
        yield client


@pytest.fixture
def cred(fake: FakeAlloy) -> tuple[str, str]:
    uid = fake.add_user("pager@example.com")
    return uid, fake.add_credential(uid, "hubspot")


def contacts(alloy: AlloyClient, cred: tuple[str, str], **kwargs: Any) -> AsyncPaginator[Any]:
    uid, cred_id = cred
    return alloy.actions.paginate(
        "hubspot", "listContacts", credential_id=cred_id, user_id=uid, **kwargs
    )


async def drain(paginator: AsyncPaginator[Any], seen: list[Any]) -> None:
    async for item in paginator:
        seen.append(item)


# -- the four ways an action fails to page ------------------------------------------------------


async def test_action_ignoring_limit_and_offset_stops_at_the_repeated_page(
    fake: FakeAlloy, alloy: AlloyClient, cred: tuple[str, str]
) -> None:
    """(a) The same full page with hasMore true, whatever limit/offset: two calls, then
    PaginationError naming the action and page 2; page 1 was delivered once, page 2 never."""
    server = ListAction(
        fake, lambda args, call: {"data": rows(0, 50), "pagination": {"hasMore": True}}
    )
    seen: list[Any] = []
    with pytest.raises(PaginationError) as info:
        await drain(contacts(alloy, cred), seen)
    assert server.calls == 2
    assert server.asked == [{"limit": 50, "offset": 0}, {"limit": 50, "offset": 50}]
    assert seen == rows(0, 50)
    err = info.value
    assert (err.action, err.page, err.reason) == ("hubspot.listContacts", 2, "repeated_page")
    assert "hubspot.listContacts" in str(err)
    assert "page 2" in str(err)
    assert "same 50 items as page 1" in str(err)
    assert isinstance(err, InvalidResponseError)
    assert isinstance(err, AlloyError)


async def test_has_more_without_next_offset_on_a_server_ignoring_offset(
    fake: FakeAlloy, alloy: AlloyClient, cred: tuple[str, str]
) -> None:
    """(b) hasMore true, no nextOffset, the offset ignored: the SDK advances by the page length
    and sees the same short page again: PaginationError after two calls."""
    server = ListAction(
        fake, lambda args, call: {"data": rows(7, 3), "pagination": {"hasMore": True}}
    )
    with pytest.raises(PaginationError) as info:
        await contacts(alloy, cred, page_size=10).to_list()
    assert server.calls == 2
    assert [a["offset"] for a in server.asked] == [0, 3]
    assert (info.value.action, info.value.page) == ("hubspot.listContacts", 2)
    # to_list(limit=...) does not hide it: the repeated page is never counted as new items
    server.calls = 0
    with pytest.raises(PaginationError):
        await contacts(alloy, cred, page_size=10).to_list(limit=100)
    assert server.calls == 2


async def test_next_offset_that_comes_back_is_a_cycle(
    fake: FakeAlloy, alloy: AlloyClient, cred: tuple[str, str]
) -> None:
    """(c) nextOffset cycles 0 -> 50 -> 100 -> 0 with fresh-looking pages: PaginationError on
    page 3, the one that hands back an old offset, after three calls."""
    cycle = {0: 50, 50: 100, 100: 0}

    def answer(args: Body, call: int) -> Body:
        offset = args["offset"]
        return {
            "data": rows(offset, 50),
            "pagination": {"hasMore": True, "nextOffset": cycle.get(offset, offset + 50)},
        }

    server = ListAction(fake, answer)
    seen: list[Any] = []
    with pytest.raises(PaginationError) as info:
        await drain(contacts(alloy, cred), seen)
    assert server.calls == 3
    assert len(seen) == 100  # pages 1 and 2; page 3 announced the cycle and was not delivered
    err = info.value
    assert (err.action, err.page, err.reason) == ("hubspot.listContacts", 3, "offset_cycle")
    assert "nextOffset (0)" in str(err)


async def test_cursor_that_cycles_is_caught_on_the_page_that_hands_it_back(
    fake: FakeAlloy, alloy: AlloyClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(c) A Slack-style cursor list paged through execute whose cursors run c1 -> c2 -> c3 ->
    c1 (no cursor repeats at once): PaginationError naming the list and page 4, the one that
    hands c1 back, after four calls; a cycle of 10 after 5 fresh cursors on page 16. With no
    memory for cursors left (a list past 1 MiB of them) the cycle is still caught, later."""
    uid = fake.add_user("slack@example.com")
    cred_id = fake.add_credential(uid, "slack")

    def cursor_list(chain: Callable[[str | None], str]) -> ListAction:
        def answer(args: Body, call: int) -> Body:
            cursor = args.get("cursor")
            return {
                "data": [f"channel-{cursor}"],
                "response_metadata": {"next_cursor": chain(cursor)},
            }

        return ListAction(fake, answer)

    async def fetch(cursor: str | None) -> Any:
        result = await alloy.actions.execute(
            "slack", "conversations_list", credential_id=cred_id, user_id=uid,
            query_parameters={"cursor": cursor} if cursor else None,
        )  # fmt: skip
        return result.raw

    def paginator() -> AsyncPaginator[Any]:
        return AsyncPaginator.cursor(
            fetch,
            lambda body: body["data"],
            next_cursor=lambda body: body["response_metadata"].get("next_cursor"),
            name="slack.conversations_list",
        )

    short = {None: "c1", "c1": "c2", "c2": "c3", "c3": "c1"}
    server = cursor_list(lambda cursor: short[cursor])
    with pytest.raises(PaginationError) as info:
        await paginator().to_list()
    assert server.calls == 4
    assert [a.get("cursor") for a in server.asked] == [None, "c1", "c2", "c3"]
    err = info.value
    assert (err.action, err.page, err.reason) == ("slack.conversations_list", 4, "cursor_cycle")
    assert "slack.conversations_list" in str(err)
    assert "page 4 hands back the cursor 'c1' that page 1 gave" in str(err)

    def long_chain(cursor: str | None) -> str:  # k1..k5, then k6..k15 round and round
        n = 0 if cursor is None else int(cursor[1:])
        return f"k{n + 1 if n < 15 else 6}"

    server = cursor_list(long_chain)
    with pytest.raises(PaginationError, match="cursors cycle") as info:
        await paginator().to_list()
    assert server.calls == info.value.page == 16

    monkeypatch.setattr("alloy_async.pagination._CURSOR_MEMORY", 0)
    server = cursor_list(long_chain)
    with pytest.raises(PaginationError, match="cursors cycle"):
        await paginator().to_list()
    assert 16 <= server.calls <= 3 * 15


async def test_page_larger_than_the_limit_asked_for(
    fake: FakeAlloy, alloy: AlloyClient, cred: tuple[str, str]
) -> None:
    """(d) limit=20 asked, 120 items answered: PaginationError on page 1, one call, nothing
    delivered (the offsets would be wrong from there on)."""
    server = ListAction(
        fake, lambda args, call: {"data": rows(0, 120), "pagination": {"hasMore": True}}
    )
    seen: list[Any] = []
    with pytest.raises(PaginationError) as info:
        await drain(contacts(alloy, cred, page_size=20), seen)
    assert server.calls == 1
    assert seen == []
    err = info.value
    assert (err.action, err.page, err.reason) == ("hubspot.listContacts", 1, "oversized_page")
    assert "120 items" in str(err)
    assert "limit=20" in str(err)


async def test_generic_cursor_list_ignoring_its_cursor_repeats_a_page() -> None:
    """A cursor list that hands out fresh cursors but always the same items stops on page 2."""
    calls = 0

    async def fetch(cursor: str | None) -> Any:
        nonlocal calls
        calls += 1
        return {"items": [{"id": 1}, {"id": 2}], "next": f"c{calls}" if calls < BOUND else None}

    paginator = AsyncPaginator.cursor(
        fetch, lambda b: b["items"], next_cursor=lambda b: b["next"], name="crm.deals"
    )
    with pytest.raises(PaginationError) as info:
        await paginator.to_list()
    assert calls == 2
    assert (info.value.action, info.value.page, info.value.reason) == (
        "crm.deals",
        2,
        "repeated_page",
    )


# -- max_pages ------------------------------------------------------------------------------------


async def test_default_max_pages_is_an_error_a_chosen_one_stops_quietly_none_lifts_it(
    fake: FakeAlloy, alloy: AlloyClient, cred: tuple[str, str]
) -> None:
    """An action with 10,050 distinct one-item pages: by default iteration raises
    PaginationError after DEFAULT_MAX_PAGES (10,000) pages instead of truncating silently;
    max_pages=10_020 (or 10_000 written out) stops there quietly; None reads everything."""
    assert DEFAULT_MAX_PAGES == 10_000
    last = 10_050

    def answer(args: Body, call: int) -> Body:
        offset = args["offset"]
        return {"data": rows(offset, 1), "pagination": {"hasMore": offset + 1 < last}}

    server = ListAction(fake, answer, bound=last + 1)  # this server is long, not endless
    seen: list[Any] = []
    with pytest.raises(PaginationError) as info:
        await drain(contacts(alloy, cred, page_size=1), seen)
    assert server.calls == 10_000
    assert len(seen) == 10_000  # everything read so far was delivered
    err = info.value
    assert (err.action, err.page, err.reason) == ("hubspot.listContacts", 10_000, "max_pages")
    assert "max_pages" in str(err)

    for chosen in (10_020, 10_000):
        server.calls = 0
        paginator = contacts(alloy, cred, page_size=1, max_pages=chosen)
        assert len(await paginator.to_list()) == chosen
        assert server.calls == chosen
        assert paginator.truncated

    server.calls = 0
    lifted = contacts(alloy, cred, page_size=1, max_pages=None)
    assert len(await lifted.to_list()) == last
    assert server.calls == last
    assert not lifted.truncated


async def test_generic_paginators_share_the_default_cap() -> None:
    """AsyncPaginator.offset and .cursor (which serve the other list calls) cap at 10,000 pages
    by default with a PaginationError naming the list."""
    calls = 0

    async def endless(cursor: str | None) -> Any:
        nonlocal calls
        calls += 1
        return {"items": [calls], "next": f"c{calls}" if calls < 20_000 else None}

    paginator = AsyncPaginator.cursor(
        endless, lambda b: b["items"], next_cursor=lambda b: b["next"], name="feed"
    )
    with pytest.raises(PaginationError, match="feed") as info:
        await paginator.to_list()
    assert calls == 10_000
    assert info.value.reason == "max_pages"


# -- the escape hatches --------------------------------------------------------------------------


async def test_paginate_sends_extra_headers_query_and_body_on_every_page() -> None:
    """extra_headers / extra_query / extra_body reach every execute request paginate makes."""
    fake = FakeAlloy(dataset_size=120)  # lenient: extra_body adds an unknown body field
    uid = fake.add_user("x@example.com")
    cred_id = fake.add_credential(uid, "hubspot")
    async with fake.client() as alloy:
        items = await alloy.actions.paginate(
            "hubspot", "listContacts", credential_id=cred_id, user_id=uid,
            extra_headers={"X-Trace": "t1"}, extra_query={"dryRun": True},
            extra_body={"newField": 1},
        ).to_list()  # fmt: skip
    assert len(items) == 120
    pages = [r for r in fake.requests if r.route == "execute"]
    assert len(pages) == 3
    for request in pages:
        assert request.headers["x-trace"] == "t1"
        assert request.query == {"dryRun": "true"}
        assert request.json["newField"] == 1
        assert request.json["credentialId"] == cred_id


async def test_catalog_sends_extra_headers_and_query_on_every_request(
    fake: FakeAlloy, alloy: AlloyClient
) -> None:
    """catalog merges extra_headers / extra_query into the connector list, each connector's
    resources and each credentials look-up, beside its own userId query."""
    uid = fake.add_user("cat@example.com")
    items = await alloy.actions.catalog(
        user_id=uid, extra_headers={"X-Trace": "t2"}, extra_query={"region": "eu"}
    ).to_list()
    assert items
    routes = sorted({r.route for r in fake.requests})
    assert routes == ["connectors.list", "connectors.resources", "credentials.list"]
    for request in fake.requests:
        assert request.headers["x-trace"] == "t2", request.route
        assert request.query["region"] == "eu", request.route
    assert all(r.query["userId"] == uid for r in fake.requests if r.route == "credentials.list")


async def test_bad_extra_header_is_refused_before_anything_is_sent(
    fake: FakeAlloy, alloy: AlloyClient, cred: tuple[str, str]
) -> None:
    """A CR/LF header given to paginate or catalog is refused by the call itself."""
    with pytest.raises(InvalidRequestError):
        contacts(alloy, cred, extra_headers={"X-Bad": "a\r\nInjected: 1"})
    with pytest.raises(InvalidRequestError):
        alloy.actions.catalog(extra_headers={"X-Bad": "a\nb"})
    assert fake.requests == []
