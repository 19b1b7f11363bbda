"""``alloy.connectors``: the catalog of third-party apps and their resources."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any

from .._convert import structure, structure_list, unwrap
from .._http import Timeout
from ..models.connectors import Connector, Resource
from ..pagination import AsyncPaginator
from ._base import Service, check_id, extras

__all__ = ["Connectors"]


class Connectors(Service):
    """List connectors, read one, and list its resources (with their actions)."""

    __slots__ = ()

    def list(
        self,
        *,
        category: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, Any] | None = None,
        timeout: float | Timeout | None = None,
    ) -> AsyncPaginator[Connector]:
        """Every connector, optionally only those in ``category`` (e.g. ``"crm"``).

        The REST API documents no category filter, so the filter is applied here.

        ``timeout``: seconds or a :class:`~alloy_async.Timeout` for each request it makes
        (None: the client's).
        """
        if category is not None:
            check_id("category", category)

        hatches = extras(extra_headers, extra_query, None, timeout)  # checked now

        async def fetch() -> Any:
            return await self._requester.request_json(
                "GET",
                "/connectors",
                **hatches,
                operation="alloy.connectors.list",
            )

        def parse(body: Any) -> builtins.list[Connector]:
            items = structure_list(body, Connector, "connectors", "data")
            if category is None:
                return items
            wanted = category.lower()
            return [c for c in items if wanted in (x.lower() for x in c.categories)]

        return AsyncPaginator.single(fetch, parse)

    async def get(
        self,
        connector_id: str,
        *,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, Any] | None = None,
        timeout: float | Timeout | None = None,
    ) -> Connector:
        """One connector's metadata.

        ``timeout``: seconds or a :class:`~alloy_async.Timeout` for this call (None: the
        client's).
        """
        answer = await self._requester.request_json(
            "GET",
            "/connectors/{connectorId}",
            operation="alloy.connectors.get",
            path_params={"connectorId": check_id("connector_id", connector_id)},
            **extras(extra_headers, extra_query, None, timeout),
        )
        return structure(unwrap(answer, "connector", "data"), Connector)

    async def resources(
        self,
        connector_id: str,
        *,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, Any] | None = None,
        timeout: float | Timeout | None = None,
    ) -> builtins.list[Resource]:
        """The connector's resources (entities), each with its action summaries.

        ``timeout``: seconds or a :class:`~alloy_async.Timeout` for this call (None: the
        client's).
        """
        answer = await self._requester.request_json(
            "GET",
            "/connectors/{connectorId}/resources",
            operation="alloy.connectors.resources",
            path_params={"connectorId": check_id("connector_id", connector_id)},
            **extras(extra_headers, extra_query, None, timeout),
        )
        return structure_list(answer, Resource, "resources", "data")
