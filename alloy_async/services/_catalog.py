"""``actions.catalog``: every action across connectors, fetched a batch of connectors at a time."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Coroutine, Iterable, Mapping
from typing import Any, TypeVar

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
    hatches = _checked_extras(extra_headers, extra_query, None, timeout)
    state: dict[str, list[str]] = {}

    async def connector_ids() -> list[str]:
        if chosen is not None:
            return chosen
        answer = await requester.request_json(
            "GET", "/connectors", **hatches, operation="alloy.actions.catalog"
        )
        return [c.id for c in structure_list(answer, Connector, "connectors", "data")]

    async def one(connector_id: str) -> list[CatalogAction]:
        path = {"connectorId": connector_id}
        resources_call = requester.request_json(
            "GET",
            "/connectors/{connectorId}/resources",
            path_params=path,
            **hatches,
            operation="alloy.actions.catalog",
        )
        if user_id is None:
            answer = await resources_call
            connected = None
        else:
            answer, creds = await _all_or_first_error(
                [
                    resources_call,
                    requester.request_json(
                        "GET",
                        "/connectors/{connectorId}/credentials",
                        operation="alloy.actions.catalog",
                        path_params=path,
                        query={"userId": user_id},
                        user_id=user_id,
                        **hatches,
                    ),
                ]
            )
            connected = bool(structure_list(creds, Credential, "credentials", "data"))
        resources = structure_list(answer, Resource, "resources", "data")
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
            for r in resources
            for a in r.actions
        ]

    async def fetch(cursor: str | None) -> Any:
        if cursor is None:
            state["ids"] = await connector_ids()
        start = int(cursor or 0)
        batch = state["ids"][start : start + concurrency]
        results = await _all_or_first_error([one(c) for c in batch])
        end = start + len(batch)
        return {
            "items": [item for chunk in results for item in chunk],
            "next": str(end) if end < len(state["ids"]) else None,
        }

    return AsyncPaginator.cursor(
        fetch,
        lambda body: body["items"],
        next_cursor=lambda body: body["next"],
        name="actions.catalog",
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
