"""Fetching what codegen needs: each connector's resources, then each action's details."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..models.actions import Action

if TYPE_CHECKING:
    from ..client import AlloyClient

__all__ = ["fetch_catalog"]


async def fetch_catalog(
    alloy: AlloyClient, connector_ids: Iterable[str], *, concurrency: int = 8
) -> dict[str, list[Action]]:
    """``{connector_id: [Action, ...]}``: every action each connector's resources list (an
    action listed under two resources once), with its schemas (``actions.get``), at most
    ``concurrency`` requests at a time.

    Raises:
        NotFoundError: a connector or action the API does not know.
    """
    gate = asyncio.Semaphore(concurrency)

    async def get(connector_id: str, action_id: str) -> Action:
        async with gate:
            return await alloy.actions.get(connector_id, action_id)

    async def one(connector_id: str) -> list[Action]:
        async with gate:
            resources = await alloy.connectors.resources(connector_id)
        ids = sorted({a.id for r in resources for a in r.actions})
        return list(await asyncio.gather(*(get(connector_id, i) for i in ids)))

    ids = sorted(set(connector_ids))
    found = await asyncio.gather(*(one(i) for i in ids))
    return dict(zip(ids, found, strict=True))
