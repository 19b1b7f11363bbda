"""``actions.catalog``: every action across connectors, fetched a batch of connectors at a time."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Coroutine, Iterable, Mapping
from typing import Any, TypeVar

import attrs

from .._convert import structure_list
from .._core import Requester
from .._http import Timeout
from ..errors import InvalidRequestError
from ..models.actions import CatalogAction
from ..models.connectors import Connector, Resource
from ..models.credentials import Credential
from ..pagination import AsyncPaginator
from ._base import check_id
from ._hatches import checked_extras as _checked_extras

__all__ = ["catalog", "catalog_slug"]

T = TypeVar("T")


def catalog_slug(connector_id: str, action_id: str) -> str:
    """``slack`` + ``chat_postMessage`` -> ``SLACK_CHAT_POST_MESSAGE`` (UPPER_SNAKE)."""
    text = f"{connector_id}_{action_id}"
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", text)
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").upper()


def catalog(
    requester: Requester,
    *,
    user_id: str | None,
    connectors: Iterable[str] | None,
    concurrency: int,
    extra_headers: Mapping[str, str] | None,
    extra_query: Mapping[str, Any] | None,
    timeout: float | Timeout | None = None,
) -> AsyncPaginator[CatalogAction]:
    """See :meth:`~alloy_async.services.actions.Actions.catalog`."""
    if concurrency < 1:
        raise InvalidRequestError("concurrency must be at least 1", field="concurrency")
    if user_id is not None:
        check_id("user_id", user_id)
    chosen = None if connectors is None else [check_id("connectors", c) for c in connectors]
    pages = _CatalogPages(
        requester,
        user_id,
        concurrency,
        _checked_extras(extra_headers, extra_query, None, timeout),
        chosen,
    )
    return AsyncPaginator.cursor(
        pages.fetch,
        lambda body: body["items"],
        next_cursor=lambda body: body["next"],
        name="actions.catalog",
    )


@attrs.define
class _CatalogPages:
    """The catalog's pages: each one the actions of ``concurrency`` connectors, fetched
    together. The cursor is the index of the page's first connector."""

    requester: Requester
    user_id: str | None
    concurrency: int
    #: The escape hatches (extra headers, query, timeout) of every call.
    hatches: dict[str, Any]
    #: The caller's connectors, or None: every connector, read as the first page is fetched.
    chosen: list[str] | None
    ids: list[str] = attrs.field(factory=list, init=False)

    async def fetch(self, cursor: str | None) -> Any:
        """One page: ``{"items": [...], "next": cursor or None}``."""
        if cursor is None:
            self.ids = self.chosen if self.chosen is not None else await self._all_connectors()
        start = int(cursor or 0)
        batch = self.ids[start : start + self.concurrency]
        results = await _all_or_first_error([self._actions(c) for c in batch])
        end = start + len(batch)
        return {
            "items": [item for chunk in results for item in chunk],
            "next": str(end) if end < len(self.ids) else None,
        }

    async def _actions(self, connector_id: str) -> list[CatalogAction]:
        """One connector's actions, and (with a user) whether that user has a credential."""
        path = {"connectorId": connector_id}
        resources_call = self._get("/connectors/{connectorId}/resources", path)
        connected = None
        if self.user_id is None:
            answer = await resources_call
        else:
            credentials_call = self._get(
                "/connectors/{connectorId}/credentials",
                path,
                query={"userId": self.user_id},
                user_id=self.user_id,
            )
            answer, creds = await _all_or_first_error([resources_call, credentials_call])
            connected = bool(structure_list(creds, Credential, "credentials", "data"))
        return [
            CatalogAction(
                connector_id=connector_id,
                action_id=a.id,
                slug=catalog_slug(connector_id, a.id),
                name=a.name,
                description=a.description,
                resource=r.name,
                is_connected=connected,
            )
            for r in structure_list(answer, Resource, "resources", "data")
            for a in r.actions
        ]

    async def _all_connectors(self) -> list[str]:
        answer = await self._get("/connectors", None)
        return [c.id for c in structure_list(answer, Connector, "connectors", "data")]

    def _get(
        self, template: str, path: Mapping[str, str] | None, **options: Any
    ) -> Coroutine[Any, Any, Any]:
        return self.requester.request_json(
            "GET",
            template,
            path_params=path,
            operation="alloy.actions.catalog",
            **self.hatches,
            **options,
        )


async def _all_or_first_error(calls: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Run ``calls`` together; on the first failure cancel the rest, wait for them, and raise
    that failure itself (not an ExceptionGroup: callers catch ``AlloyError`` subclasses).

    Unlike a bare ``gather``, no call is left running unobserved after a failure."""
    tasks: list[asyncio.Task[T]] = []
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(call) for call in calls]
    except BaseExceptionGroup as group_error:
        raise group_error.exceptions[0] from None
    return [task.result() for task in tasks]
