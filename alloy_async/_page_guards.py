"""The checks that stop a list that does not page, for :mod:`alloy_async.pagination`.

Each check raises :class:`~alloy_async.errors.PaginationError` (naming the list and the page)
instead of letting an iteration run forever:

* ``repeated_page``: a non-empty page holds the same items as the page before (compared by a
  128-bit hash, no page is kept);
* ``oversized_page``: a page has more items than the ``limit`` asked for;
* ``offset_cycle``: more pages are announced but ``nextOffset`` does not move forward;
* ``cursor_cycle``: a cursor comes back;
* ``max_pages``: the default cap, :data:`DEFAULT_MAX_PAGES`, is reached.

No I/O and no event loop here: the paginator calls these between fetches.
"""

from __future__ import annotations

import hashlib
from typing import Any

import attrs
import orjson

from .errors import PaginationError

__all__ = ["DEFAULT_MAX_PAGES", "at_cap"]


class _DefaultCap(int):
    """The default ``max_pages``, an int that remembers nobody chose it: reaching it raises
    (10,000 pages is likelier a server that does not page than a list that long), reaching a
    chosen cap (``max_pages=10_000`` written out included) stops quietly."""

    __slots__ = ()


#: Characters of cursors a cursor iteration remembers to catch one that comes back at once.
_CURSOR_MEMORY = 1 << 20

#: ``max_pages`` of offset and cursor paginators when none is given: reaching it raises
#: PaginationError. Pass a larger number to raise it (iteration then stops quietly there, with
#: ``truncated`` set) or None to lift it.
DEFAULT_MAX_PAGES: int = _DefaultCap(10_000)


def at_cap(name: str, number: int, max_pages: int | None) -> bool:
    """True once ``max_pages`` pages were read while the server still has more.

    Raises :class:`PaginationError` instead when that cap is the default one."""
    if max_pages is None or number < max_pages:
        return False
    if type(max_pages) is _DefaultCap:
        raise PaginationError(
            f"{name} does not page, or is longer than the default max_pages: page "
            f"{number} still says more pages follow; stopping instead of reading on. Pass "
            f"max_pages=None to read on without a cap, or a larger max_pages to stop "
            f"quietly there",
            action=name,
            page=number,
            reason="max_pages",
        )
    return True


def _plain(obj: Any) -> Any:
    """orjson's ``default``: attrs models as dicts; anything else is not fingerprinted."""
    if attrs.has(type(obj)):
        return attrs.asdict(obj, recurse=False)
    raise TypeError


def _fingerprint(items: tuple[Any, ...]) -> bytes | None:
    """A 128-bit hash of a page's items, or None for an empty page or items JSON cannot encode
    (those pages are not compared). Holds no reference to the items."""
    if not items:
        return None
    try:
        encoded = orjson.dumps(items, default=_plain)
    except TypeError:  # orjson.JSONEncodeError included: odd objects, depth, huge ints
        return None
    return hashlib.blake2b(encoded, digest_size=16).digest()


class _Guard:
    """One iteration's checks against a list that does not page; no page is kept.

    Pages are compared by fingerprint with the page before. Cursors are remembered (up to
    ``cursor_memory`` characters of them) so one that comes back is caught on the page that
    hands it back; past that budget, Brent's cycle detection (one saved cursor, saved again
    after 1, 2, 4, 8... pages) still catches any cycle, in constant memory, within about three
    times as many pages as the cycle takes to come round.
    """

    __slots__ = ("budget", "name", "power", "previous", "saved", "saved_on", "seen", "steps")

    def __init__(self, name: str, cursor_memory: int = _CURSOR_MEMORY) -> None:
        self.name = name
        self.previous: bytes | None = None
        self.seen: dict[str, int] = {}
        self.budget = cursor_memory
        self.saved: str | None = None
        self.saved_on = self.steps = 0
        self.power = 1

    def fail(self, number: int, reason: str, what: str) -> PaginationError:
        return PaginationError(
            f"{self.name} does not page: {what}; stopping instead of paging forever",
            action=self.name,
            page=number,
            reason=reason,
        )

    def check_size(self, number: int, items: tuple[Any, ...], offset: int, limit: int) -> None:
        if len(items) > limit:
            raise self.fail(
                number,
                "oversized_page",
                f"page {number} (offset {offset}) has {len(items)} items but "
                f"limit={limit} was asked for, the server ignores limit (does the list "
                f"take limit and offset where they are sent?)",
            )

    def check_items(self, number: int, items: tuple[Any, ...], at: str, ignored: str) -> None:
        fingerprint = _fingerprint(items)
        if fingerprint is not None and fingerprint == self.previous:
            raise self.fail(
                number,
                "repeated_page",
                f"page {number} ({at}) holds the same {len(items)} items as page "
                f"{number - 1}, the server ignores {ignored}",
            )
        self.previous = fingerprint

    def check_offset(self, number: int, offset: int, next_offset: int) -> None:
        if next_offset <= offset:
            raise self.fail(
                number,
                "offset_cycle",
                f"page {number} says more pages follow but its "
                f"pagination.nextOffset ({next_offset}) does not move past its "
                f"offset ({offset})",
            )

    def check_cursor(self, number: int, cursor: str | None, following: str | None) -> None:
        if following is None:
            return
        first = self.seen.get(following)
        if first is None and following == cursor:
            first = number - 1
        if first is None and following == self.saved:
            first = self.saved_on
        if first is not None:
            raise self.fail(
                number,
                "cursor_cycle",
                f"page {number} hands back the cursor {following!r} that page {first} gave, "
                f"the cursors cycle",
            )
        if len(following) <= self.budget:
            self.seen[following] = number
            self.budget -= len(following)
        self.steps += 1
        if self.steps == self.power:
            self.saved, self.saved_on, self.power, self.steps = following, number, 2 * self.power, 0
