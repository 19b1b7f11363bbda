"""AsyncPaginator: lists that span many responses, read one page at a time.

A paginator knows nothing of HTTP. It is built from a ``fetch`` coroutine function (given the
next page's request state, it returns the decoded body) and a ``parse`` function (body -> items),
under one of three strategies:

* :meth:`AsyncPaginator.single`: one response is the whole list (Alloy's own list endpoints
  document no paging).
* :meth:`AsyncPaginator.offset`: ``limit`` / ``offset``, following ``pagination.hasMore`` and
  ``pagination.nextOffset`` (the Alloy pagination guide for third-party data through execute).
* :meth:`AsyncPaginator.cursor`: a callable picks the next cursor out of each body.

Retries (429 included) happen inside ``fetch``, in the request pipeline, so a throttled page is
fetched again on its own and iteration never restarts from page one.

A list that does not page never runs forever: :class:`~alloy_async.errors.PaginationError`
(naming the list and the page) ends it when a page repeats the one before (compared by hash),
has more items than ``limit``, an offset or cursor comes back, or ``DEFAULT_MAX_PAGES`` runs out.

Example::

    paginator = AsyncPaginator.offset(fetch, parse, limit=50)
    async for record in paginator:  # every item, page after page
        ...
    first = await paginator  # only the first page
    some = await paginator.to_list(limit=120)  # stops fetching at 120 items
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Iterable, Iterator
from contextlib import aclosing
from typing import Any, Generic, TypeVar

import attrs

from ._checks import check_number

# The loop guards (repeated pages, oversized pages, offset and cursor cycles, the default
# max_pages) live in _page_guards. _CURSOR_MEMORY is read from this module at each iteration,
# so setting ``alloy_async.pagination._CURSOR_MEMORY`` still changes the cursor memory.
from ._page_guards import _CURSOR_MEMORY, DEFAULT_MAX_PAGES, _Guard, at_cap
from .errors import InvalidResponseError

__all__ = ["DEFAULT_MAX_PAGES", "AsyncPaginator", "Page"]

T = TypeVar("T")
U = TypeVar("U")

_logger = logging.getLogger("alloy_async")

#: Turns one decoded response body into the items of that page.
Parse = Callable[[Any], Iterable[T]]
#: ``fetch(offset, limit)`` for the offset strategy.
OffsetFetch = Callable[[int, int], Awaitable[Any]]
#: ``fetch(cursor)`` for the cursor strategy; the first page is fetched with ``None``.
CursorFetch = Callable[[str | None], Awaitable[Any]]
#: ``fetch()`` for the single-response strategy.
SingleFetch = Callable[[], Awaitable[Any]]


@attrs.frozen(slots=True)
class Page(Generic[T]):
    """One fetched page.

    Attributes:
        items: the items parsed from this page.
        has_more: whether another page follows.
        number: 1-based position of this page in its iteration.
        offset: the offset this page was requested at (offset strategy), else None.
        next_offset: the offset of the next page, or None when there is none.
        cursor: the cursor this page was requested with (cursor strategy), else None.
        next_cursor: the cursor of the next page, or None when there is none.
        raw: the decoded response body, for fields the SDK does not model.
    """

    items: tuple[T, ...]
    has_more: bool
    number: int = 1
    offset: int | None = None
    next_offset: int | None = None
    cursor: str | None = None
    next_cursor: str | None = None
    raw: Any = attrs.field(default=None, repr=False, eq=False)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)


def _as_offset(value: Any) -> int | None:
    """An offset from the body: an int or a string of digits; anything else is None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _offset_info(body: Any) -> tuple[bool | None, Any]:
    """``(hasMore, nextOffset)`` from ``body["pagination"]``; None where absent."""
    if not isinstance(body, dict):
        return None, None
    info = body.get("pagination")
    if not isinstance(info, dict):
        return None, None
    has_more = info.get("hasMore", info.get("has_more"))
    next_offset = info.get("nextOffset", info.get("next_offset"))
    return (has_more if isinstance(has_more, bool) else None), next_offset


class AsyncPaginator(Generic[T]):
    """An async-iterable, re-iterable list spread over pages.

    * ``async for item in paginator`` yields every item, fetching pages as needed.
    * ``async for page in paginator.pages()`` yields :class:`Page` objects.
    * ``await paginator.to_list(limit=None)`` collects items (stopping early at ``limit``).
    * ``await paginator`` / ``await paginator.first_page()`` fetches the first page only.

    Every iteration starts again from page one: the paginator is a recipe, never its own
    iterator, so it can be shared and looped over twice. An iteration holds at most one page
    in memory. Build one with :meth:`single`, :meth:`offset` or :meth:`cursor`; ``name`` says
    what is paged (``"hubspot.listContacts"``) in errors and logs.
    """

    __slots__ = (
        "_detail",
        "_kind",
        "_max_pages",
        "_name",
        "_pages_fetched",
        "_parse",
        "_source",
        "_truncated",
    )

    def __init__(
        self,
        kind: str,
        source: Callable[[AsyncPaginator[T]], AsyncGenerator[Page[T], None]],
        parse: Parse[T],
        *,
        max_pages: int | None = None,
        detail: str = "",
        name: str = "",
    ) -> None:
        check_number("max_pages", max_pages, low=1, integer=True, optional=True)
        self._kind = kind
        self._name = name or f"{kind} list"
        self._detail = detail
        self._source = source
        self._parse = parse
        self._max_pages = max_pages
        self._pages_fetched = 0
        self._truncated = False

    # -- constructors --------------------------------------------------------------------

    @staticmethod
    def single(fetch: SingleFetch, parse: Parse[U], *, name: str = "") -> AsyncPaginator[U]:
        """A list that one response holds entirely.

        Args:
            fetch: ``await fetch()`` returns the decoded body.
            parse: turns the body into the items.
            name: what is listed, for errors and logs.
        """

        async def source(p: AsyncPaginator[U]) -> AsyncGenerator[Page[U], None]:
            body = await fetch()
            p._pages_fetched += 1
            yield Page(items=tuple(p._parse(body)), has_more=False, raw=body)

        return AsyncPaginator("single", source, parse, name=name)

    @staticmethod
    def offset(
        fetch: OffsetFetch,
        parse: Parse[U],
        *,
        limit: int = 50,
        start: int = 0,
        max_pages: int | None = DEFAULT_MAX_PAGES,
        name: str = "",
    ) -> AsyncPaginator[U]:
        """Offset paging: ``limit`` items per page, starting at ``start``.

        After each page: stop when ``pagination.hasMore`` is false or the page is empty;
        otherwise continue at ``pagination.nextOffset`` (or ``offset + len(items)`` when the
        body gives none). A body without ``pagination.hasMore`` is taken to have more only
        while its pages are full (``len(items) >= limit``), so no data is silently dropped.

        Args:
            fetch: ``await fetch(offset, limit)`` returns the decoded body of one page.
            parse: turns a body into that page's items (for Alloy, its ``data`` list).
            limit: items per page (Alloy's execute paging allows at most 50).
            start: the offset of the first page.
            max_pages: the most pages one iteration fetches;
                :data:`~alloy_async.pagination.DEFAULT_MAX_PAGES` (10,000, reaching it raises
                PaginationError) unless you pass a number (reaching
                it stops quietly, :attr:`truncated` tells) or None (no cap).
            name: what is paged (e.g. ``"hubspot.listContacts"``), for errors and logs.

        Raises:
            InvalidRequestError: ``limit`` < 1, ``start`` < 0 or ``max_pages`` < 1.

        Iterating raises :class:`~alloy_async.errors.PaginationError` (an
        :class:`~alloy_async.errors.InvalidResponseError`) instead of looping forever when a
        page has more than ``limit`` items (the server ignores ``limit``), a non-empty page
        holds the same items as the page before it (the server ignores ``offset``), or the
        server announces more data but its ``nextOffset`` does not move forward. Pages before
        the bad one are delivered; the bad one is not.
        """
        check_number("limit", limit, low=1, integer=True)
        check_number("start", start, low=0, integer=True)

        async def source(p: AsyncPaginator[U]) -> AsyncGenerator[Page[U], None]:
            guard = _Guard(p._name, _CURSOR_MEMORY)
            offset = start
            number = 0
            while True:
                body = await fetch(offset, limit)
                p._pages_fetched += 1
                number += 1
                items = tuple(p._parse(body))
                guard.check_size(number, items, offset, limit)
                guard.check_items(number, items, f"offset {offset}", "offset")
                has_more_flag, raw_next = _offset_info(body)
                has_more = (len(items) >= limit) if has_more_flag is None else has_more_flag
                # An empty page ends the list even if hasMore says otherwise: there is no
                # progress to be made from it, and trusting the flag could loop forever.
                if not items:
                    has_more = False
                next_offset: int | None = None
                if has_more:
                    next_offset = _as_offset(raw_next)
                    if raw_next is not None and next_offset is None:
                        raise InvalidResponseError(
                            f"pagination.nextOffset must be an integer, got {raw_next!r} "
                            f"(page {number} of {p._name}, offset {offset})"
                        )
                    if next_offset is None:
                        next_offset = offset + len(items)
                    else:
                        guard.check_offset(number, offset, next_offset)
                page = Page(
                    items=items,
                    has_more=has_more,
                    number=number,
                    offset=offset,
                    next_offset=next_offset,
                    raw=body,
                )
                # Drop our references before yielding so that only the consumer holds this
                # page while the next one is fetched.
                del body, items, raw_next
                yield page
                del page
                if next_offset is None:
                    return
                if p._stop_at_cap(number):
                    return
                offset = next_offset

        detail = f" limit={limit} start={start}"
        return AsyncPaginator(
            "offset", source, parse, max_pages=max_pages, detail=detail, name=name
        )

    @staticmethod
    def cursor(
        fetch: CursorFetch,
        parse: Parse[U],
        *,
        next_cursor: Callable[[Any], str | None],
        max_pages: int | None = DEFAULT_MAX_PAGES,
        name: str = "",
    ) -> AsyncPaginator[U]:
        """Cursor paging: each body names the cursor of the page after it.

        The first page is fetched with ``fetch(None)``. Iteration ends when ``next_cursor``
        returns None or an empty string. An empty page with a new cursor does not end the list
        (some APIs filter after paging); ``max_pages`` bounds such servers.

        Args:
            fetch: ``await fetch(cursor)`` returns the decoded body of one page.
            parse: turns a body into that page's items.
            next_cursor: picks the next cursor out of a body.
            max_pages: as for :meth:`offset`.
            name: what is paged, for errors and logs.

        Iterating raises :class:`~alloy_async.errors.PaginationError` (an
        :class:`~alloy_async.errors.InvalidResponseError`) when a non-empty page holds the
        same items as the page before it, or a cursor comes back (the cursors cycle): on the
        page that hands it back while the cursors seen fit in 1 MiB, later (within about three
        times the cycle's length) but in constant memory past that.
        """

        async def source(p: AsyncPaginator[U]) -> AsyncGenerator[Page[U], None]:
            guard = _Guard(p._name, _CURSOR_MEMORY)
            cursor: str | None = None
            number = 0
            while True:
                body = await fetch(cursor)
                p._pages_fetched += 1
                number += 1
                items = tuple(p._parse(body))
                following = next_cursor(body) or None
                guard.check_items(number, items, f"cursor {cursor!r}", "the cursor")
                guard.check_cursor(number, cursor, following)
                page = Page(
                    items=items,
                    has_more=following is not None,
                    number=number,
                    cursor=cursor,
                    next_cursor=following,
                    raw=body,
                )
                del body, items
                yield page
                del page
                if following is None or p._stop_at_cap(number):
                    return
                cursor = following

        return AsyncPaginator("cursor", source, parse, max_pages=max_pages, name=name)

    # -- iteration -----------------------------------------------------------------------

    def _stop_at_cap(self, number: int) -> bool:
        """True once ``max_pages`` pages were read while the server still has more.

        Raises :class:`~alloy_async.errors.PaginationError` instead when that cap is the
        default one."""
        if not at_cap(self._name, number, self._max_pages):
            return False
        self._truncated = True
        _logger.warning(
            "%r stopped at max_pages=%d although the server has more pages",
            self,
            self._max_pages,
        )
        return True

    def _open(self) -> AsyncGenerator[Page[T], None]:
        """A fresh page source, starting from page one."""
        self._truncated = False
        return self._source(self)

    def pages(self) -> AsyncGenerator[Page[T], None]:
        """Iterate page by page, from page one, fetching each when it is asked for."""
        return self._open()

    async def _item_stream(self) -> AsyncGenerator[T, None]:
        async with aclosing(self._open()) as pages:
            async for page in pages:
                items = page.items
                # Release the page (and its raw body) before the next fetch: only one page
                # may be alive per iteration.
                del page
                for item in items:
                    yield item
                del items

    def __aiter__(self) -> AsyncGenerator[T, None]:
        """A fresh iteration over every item, from page one."""
        return self._item_stream()

    async def to_list(self, limit: int | None = None) -> list[T]:
        """Collect the items into a list.

        Args:
            limit: the most items to collect; no further page is fetched once it is reached.
                None collects everything.

        Raises:
            InvalidRequestError: ``limit`` is negative.
        """
        check_number("limit", limit, low=0, integer=True, optional=True)
        out: list[T] = []
        if limit == 0:
            return out
        async with aclosing(self._item_stream()) as items:
            async for item in items:
                out.append(item)
                if limit is not None and len(out) >= limit:
                    break
        return out

    async def first_page(self) -> Page[T]:
        """Fetch only the first page."""
        async with aclosing(self._open()) as pages:
            async for page in pages:
                return page
        raise AssertionError("a paginator source always yields a first page")  # pragma: no cover

    def __await__(self) -> Generator[Any, None, Page[T]]:
        """``await paginator`` is :meth:`first_page`."""
        return self.first_page().__await__()

    # -- introspection -------------------------------------------------------------------

    @property
    def strategy(self) -> str:
        """``"single"``, ``"offset"`` or ``"cursor"``."""
        return self._kind

    @property
    def pages_fetched(self) -> int:
        """Pages fetched so far, over every iteration of this paginator."""
        return self._pages_fetched

    @property
    def truncated(self) -> bool:
        """Whether the latest iteration stopped at ``max_pages`` with more pages left."""
        return self._truncated

    def __repr__(self) -> str:
        cap = f" max_pages={self._max_pages}" if self._max_pages is not None else ""
        return (
            f"<AsyncPaginator {self._kind}{self._detail} pages_fetched={self._pages_fetched}{cap}>"
        )
