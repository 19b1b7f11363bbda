"""Preflight for ``actions``: each action's schema fetched once per client, then checked locally.

The compiled schemas live in a :class:`SchemaCache` every view of a client shares: at most
``maxsize`` actions, each kept ``ttl`` seconds; concurrent callers of one action share a single
fetch. A schema that cannot be compiled is remembered as such (reported once, logged once).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

from .._env import logger
from ..errors import AlloyError, InvalidRequestError, UnusableSchemaError
from ..models.actions import Action
from ..models.bulk import ExecuteJob
from ..validation import ActionValidator, Problem, compile_action, refusal

__all__ = ["Preflight", "SchemaCache", "Validate", "check_validate"]

#: ``validate=`` of execute calls: off, on (an unusable schema fails the call), or on with an
#: unusable schema letting the call through unvalidated.
Validate = bool | Literal["best_effort"]

_Entry = tuple[float, "ActionValidator | UnusableSchemaError"]


def check_validate(value: object) -> Validate:
    """``value`` as a ``validate=`` setting, or :class:`InvalidRequestError` naming it."""
    if value is True or value is False or value == "best_effort":
        return value
    raise InvalidRequestError('validate must be True, False or "best_effort"', field="validate")


class SchemaCache:
    """Compiled action schemas, by ``(connector_id, action_id)``; see the module docstring."""

    def __init__(self, maxsize: int = 256, ttl: float = 600.0) -> None:
        self.maxsize = maxsize
        self.ttl = ttl
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._pending: dict[tuple[str, str], asyncio.Task[ActionValidator]] = {}
        #: Schema fetches made (what "fetched once" is judged by).
        self.fetches = 0

    async def get(
        self, key: tuple[str, str], fetch: Callable[[], Awaitable[Action]]
    ) -> ActionValidator:
        """The compiled schema of ``key``, fetching it if needed.

        Raises:
            UnusableSchemaError: its schema cannot be compiled.
            AlloyError: the fetch failed (not remembered: the next call fetches again).
        """
        loop = asyncio.get_running_loop()
        entry = self._entries.get(key)
        if entry is not None:
            if entry[0] > loop.time():
                self._entries.move_to_end(key)
                return _value(entry[1])
            del self._entries[key]
        pending = self._pending.get(key)
        if pending is None:
            # The fetch is a task of its own: a caller cancelled (a timeout, a stop) leaves it
            # running for the others sharing it, instead of cancelling them all.
            pending = loop.create_task(self._load(key, fetch))
            pending.add_done_callback(_retrieved)
            self._pending[key] = pending
        return await asyncio.shield(pending)

    async def _load(
        self, key: tuple[str, str], fetch: Callable[[], Awaitable[Action]]
    ) -> ActionValidator:
        try:
            self.fetches += 1
            action = await fetch()
            try:
                value: ActionValidator | UnusableSchemaError = compile_action(
                    action, f"{key[0]}.{key[1]}"
                )
            except UnusableSchemaError as exc:
                logger.warning("%s", exc)  # once per action and TTL: it is cached below
                value = exc
            self._entries[key] = (asyncio.get_running_loop().time() + self.ttl, value)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)
            return _value(value)
        finally:
            del self._pending[key]


def _retrieved(task: asyncio.Task[ActionValidator]) -> None:
    """Mark a shared fetch's failure as seen: every caller may have gone (no warning then)."""
    if not task.cancelled():
        task.exception()


def _value(value: ActionValidator | UnusableSchemaError) -> ActionValidator:
    if isinstance(value, UnusableSchemaError):
        # A fresh error each time: re-raising the cached one would grow its traceback (and
        # keep every caller's frame, jobs included) with each job of the action.
        raise UnusableSchemaError(value.action, value.reason)
    return value


class Preflight:
    """Validation of execute calls for one client (``actions.validate`` and ``validate=``)."""

    def __init__(self, cache: SchemaCache, fetch: Callable[[str, str], Awaitable[Action]]) -> None:
        self.cache = cache
        self._fetch = fetch

    async def problems(
        self,
        connector_id: str,
        action_id: str,
        request_body: Any,
        query_parameters: Mapping[str, Any] | None,
        path_params: Mapping[str, Any] | None,
    ) -> list[Problem]:
        """What the action's schema refuses (raises :class:`UnusableSchemaError`)."""
        validator = await self.cache.get(
            (connector_id, action_id), lambda: self._fetch(connector_id, action_id)
        )
        return validator.problems(request_body, query_parameters, path_params)

    async def check(
        self,
        mode: Validate,
        connector_id: str,
        action_id: str,
        request_body: Any,
        query_parameters: Mapping[str, Any] | None,
        path_params: Mapping[str, Any] | None,
    ) -> None:
        """Raise :class:`InvalidRequestError` (with ``problems``) for an invalid call, or
        :class:`UnusableSchemaError` unless ``mode`` is ``"best_effort"``."""
        try:
            found = await self.problems(
                connector_id, action_id, request_body, query_parameters, path_params
            )
        except UnusableSchemaError:
            if mode == "best_effort":
                return
            raise
        if found:
            raise refusal(f"{connector_id}.{action_id}", found)

    async def check_job(self, mode: Validate, job: ExecuteJob) -> BaseException | None:
        """``execute_many(validate=...)``'s check of one job: the error that is its outcome
        (the run goes on), or None to send it."""
        try:
            await self.check(
                mode,
                job.connector_id,
                job.action_id,
                job.request_body,
                job.query_parameters,
                job.path_params,
            )
        except AlloyError as exc:
            return exc
        return None
