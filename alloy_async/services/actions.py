"""``alloy.actions``: inspect actions, execute them, page through their data, fan out."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from .._convert import structure, unwrap
from .._core import CallStats
from .._http import Request, Timeout, check_timeout
from .._wire import build_request
from ..errors import InvalidRequestError, InvalidResponseError
from ..models.actions import Action, CatalogAction, ExecutionResult
from ..pagination import DEFAULT_MAX_PAGES, AsyncPaginator
from ..validation import Problem, jsonschema_module
from ._base import Service, check_id, check_mapping, extras
from ._catalog import catalog, catalog_slug
from ._execute import EXECUTE_OPERATION, execute_body, execute_result, execute_route
from ._hatches import checked_extras
from ._preflight import Preflight, SchemaCache, Validate, check_validate

if TYPE_CHECKING:
    import os

    from ..engine import (
        BulkRun,
        CoolDown,
        Coordinator,
        ExecuteOne,
        Journal,
        RateBudget,
        Schedule,
    )
    from ..engine.quarantine import OnCredentialError
    from ..models.bulk import BulkReport, ExecuteJob, JobOutcome

__all__ = ["Actions", "catalog_slug"]

T = TypeVar("T")


class Actions(Service):
    """Action details, execution (one, paged, or many users at once) and the action catalog."""

    __slots__ = ()

    async def get(
        self,
        connector_id: str,
        action_id: str,
        *,
        user_id: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, Any] | None = None,
        timeout: float | Timeout | None = None,
    ) -> Action:
        """An action's schema: method, path, parameters and request body (JSON Schema).

        ``timeout``: seconds or a :class:`~alloy_async.Timeout` for this call (None: the
        client's).
        """
        answer = await self._requester.request_json(
            "GET",
            "/connectors/{connectorId}/actions/{actionId}",
            operation="alloy.actions.get",
            path_params={
                "connectorId": check_id("connector_id", connector_id),
                "actionId": check_id("action_id", action_id),
            },
            user_id=user_id,
            **extras(extra_headers, extra_query, None, timeout),
        )
        return structure(unwrap(answer, "action", "data"), Action)

    async def validate(
        self,
        connector_id: str,
        action_id: str,
        *,
        request_body: Any = None,
        query_parameters: Mapping[str, Any] | None = None,
        path_params: Mapping[str, Any] | None = None,
        timeout: float | Timeout | None = None,
    ) -> list[Problem]:
        """What the action's published schema refuses in these arguments; empty when valid.

        Each :class:`~alloy_async.validation.Problem` has a JSON pointer into the arguments
        (``/request_body/to``), a message and the failing schema keyword. The schema is fetched
        once per client (``actions.get``; kept 10 minutes, 256 actions at most) and checked
        locally; nothing is executed. Needs the ``validate`` extra (jsonschema). ``timeout``
        (seconds or a :class:`~alloy_async.Timeout`; None: the client's) bounds the schema's
        fetch.

        Raises:
            UnusableSchemaError: the action's schema cannot be applied.
        """
        check_id("connector_id", connector_id)
        check_id("action_id", action_id)
        check_mapping("query_parameters", query_parameters)
        check_mapping("path_params", path_params)
        return await self._preflight(timeout).problems(
            connector_id, action_id, request_body, query_parameters, path_params
        )

    def _preflight(self, timeout: float | Timeout | None = None) -> Preflight:
        shared = self._requester._shared
        if shared.schemas is None:
            shared.schemas = SchemaCache()
        if timeout is None:
            return Preflight(shared.schemas, self.get)
        return Preflight(shared.schemas, functools.partial(self.get, timeout=timeout))

    async def execute(
        self,
        connector_id: str,
        action_id: str,
        *,
        credential_id: str,
        user_id: str | None = None,
        request_body: Any = None,
        query_parameters: Mapping[str, Any] | None = None,
        path_params: Mapping[str, Any] | None = None,
        additional_headers: Mapping[str, str] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, Any] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        stats: CallStats | None = None,
        validate: Validate = False,
        timeout: float | Timeout | None = None,
    ) -> ExecutionResult:
        """Run an action for a user with one of their credentials.

        Not idempotent: it is retried only when the server cannot have acted (connection not
        made, 429, 503). If the request was sent and no answer came it raises
        :class:`~alloy_async.errors.OutcomeUnknownError` and is never re-sent.

        Args:
            connector_id: e.g. ``"slack"``.
            action_id: e.g. ``"chat_postMessage"`` (case-sensitive).
            credential_id: the user's credential for this connector.
            user_id: the end user (``x-alloy-userid``); defaults to the client's.
            request_body: the body forwarded to the third party.
            query_parameters: the third-party call's query string.
            path_params: values for ``{placeholders}`` in the action's path.
            additional_headers: extra headers for the third-party call.
            stats: receives the attempts made and seconds throttled (used by ``execute_many``).
            validate: check the arguments against the action's schema first (see
                :meth:`validate`): an invalid call raises
                :class:`~alloy_async.InvalidRequestError` with
                ``problems``, and nothing is sent. ``"best_effort"``: a schema that cannot be
                applied lets the call through unvalidated (True raises
                :class:`~alloy_async.UnusableSchemaError`).
            timeout: seconds per attempt, or a :class:`~alloy_async.Timeout` (``total``,
                ``connect``, ``pool``, ``read``), for this call and its schema fetch; None:
                the client's. A timeout after the request was written is
                :class:`~alloy_async.errors.APITimeoutError` with ``sent=True``: never re-sent.
        """
        request = self._execute_request(
            connector_id,
            action_id,
            credential_id,
            user_id,
            request_body,
            query_parameters,
            path_params,
            additional_headers,
            extra_headers,
            extra_query,
            extra_body,
            timeout,
        )
        if validate is not False:
            await self._preflight(timeout).check(
                check_validate(validate),
                connector_id,
                action_id,
                request_body,
                query_parameters,
                path_params,
            )
        response = await self._requester.send(
            request, scope=f"execute:{connector_id}", stats=stats, operation=EXECUTE_OPERATION
        )
        return execute_result(request, response)

    def _execute_request(
        self,
        connector_id: str,
        action_id: str,
        credential_id: str,
        user_id: str | None,
        request_body: Any,
        query_parameters: Mapping[str, Any] | None,
        path_params: Mapping[str, Any] | None,
        additional_headers: Mapping[str, str] | None,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, Any] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: float | Timeout | None = None,
    ) -> Request:
        """The request of one execute call (no I/O): :meth:`execute`'s and each bulk job's."""
        # The common case is checked inline (this is the bulk hot path); check_id is called
        # only to raise its error naming the argument.
        if type(connector_id) is not str or not connector_id or connector_id.isspace():
            check_id("connector_id", connector_id)
        if type(action_id) is not str or not action_id or action_id.isspace():
            check_id("action_id", action_id)
        requester = self._requester
        # The builder itself: ``requester.build`` only forwards to it (this is every bulk job's
        # path).
        return build_request(
            requester,
            "POST",
            "",
            route=execute_route(requester.base_url, connector_id, action_id),
            json=execute_body(
                credential_id, request_body, query_parameters, path_params, additional_headers
            ),
            user_id=user_id,
            extra_headers=extra_headers,
            extra_query=extra_query,
            extra_body=extra_body,
            timeout=timeout,
        )

    def paginate(
        self,
        connector_id: str,
        action_id: str,
        *,
        credential_id: str,
        user_id: str | None = None,
        request_body: Mapping[str, Any] | None = None,
        query_parameters: Mapping[str, Any] | None = None,
        path_params: Mapping[str, Any] | None = None,
        additional_headers: Mapping[str, str] | None = None,
        page_size: int = 50,
        start: int = 0,
        page_in: str = "query",
        items_key: str = "data",
        max_pages: int | None = DEFAULT_MAX_PAGES,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, Any] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: float | Timeout | None = None,
    ) -> AsyncPaginator[Any]:
        """Page through a third party's data by executing a list action repeatedly.

        Follows the Alloy pagination guide: ``limit`` (at most 50) and ``offset`` go into the
        action's query parameters (``page_in="query"``) or request body (``page_in="body"``);
        each answer carries ``data[]`` and ``pagination.hasMore`` / ``nextOffset``. Only one
        page is held in memory; a 429 mid-way is retried without restarting.

        An action that does not page cannot make this loop forever: iterating raises
        :class:`~alloy_async.errors.PaginationError` (naming ``connector.action`` and the page)
        when a page has more than ``page_size`` items, a page holds the same items as the one
        before it (the action ignores ``offset``), or ``nextOffset`` does not move forward.

        Args:
            max_pages: the most pages one iteration fetches. By default
                :data:`~alloy_async.pagination.DEFAULT_MAX_PAGES` (10,000 pages), and
                reaching it while the action still announces more raises
                :class:`~alloy_async.errors.PaginationError`; pass a larger number to raise the
                cap (iteration then stops quietly at it, ``truncated`` tells) or None to lift
                it.
            extra_headers: headers merged into every execute request this makes (the Alloy
                request itself, not the third party's).
            extra_query: query parameters merged into every execute request this makes (the
                Alloy request's own query, not the third party's).
            extra_body: fields merged into the body of every execute request this makes (the
                Alloy request's own body, not the third party's ``requestBody``).
            timeout: seconds or a :class:`~alloy_async.Timeout` for each execute request it
                makes (None: the client's).
        """
        check_id("connector_id", connector_id)
        check_id("action_id", action_id)
        check_id("credential_id", credential_id)
        hatches = checked_extras(extra_headers, extra_query, extra_body, timeout)
        if page_in not in ("query", "body"):
            raise InvalidRequestError('page_in must be "query" or "body"', field="page_in")
        if (
            isinstance(page_size, bool)
            or not isinstance(page_size, int)
            or not 1 <= page_size <= 50
        ):
            raise InvalidRequestError(
                "page_size must be an integer from 1 to 50", field="page_size"
            )
        base_query = dict(check_mapping("query_parameters", query_parameters) or {})
        if request_body is not None and not isinstance(request_body, Mapping):
            raise InvalidRequestError(
                "request_body must be a mapping to page through it", field="request_body"
            )
        base_body = dict(request_body or {})

        async def fetch(offset: int, limit: int) -> Any:
            paging = {"limit": limit, "offset": offset}
            query = {**base_query, **paging} if page_in == "query" else base_query
            body = {**base_body, **paging} if page_in == "body" else base_body
            result = await self.execute(
                connector_id,
                action_id,
                credential_id=credential_id,
                user_id=user_id,
                request_body=body or None,
                query_parameters=query or None,
                path_params=path_params,
                additional_headers=additional_headers,
                **hatches,
            )
            return result.raw

        def parse(body: Any) -> list[Any]:
            items = unwrap(body, "result", "responseData") if isinstance(body, dict) else body
            if isinstance(items, dict):
                items = items.get(items_key, [])
            if items is None:
                return []
            if not isinstance(items, list):
                raise InvalidResponseError(
                    f"expected a list of items under {items_key!r} from "
                    f"{connector_id}.{action_id}, got {type(items).__name__}"
                )
            return items

        return AsyncPaginator.offset(
            lambda offset, limit: _then(fetch(offset, limit), _page_info),
            parse,
            limit=page_size,
            start=start,
            max_pages=max_pages,
            name=f"{connector_id}.{action_id}",
        )

    def execute_many(
        self,
        jobs: Iterable[ExecuteJob | Mapping[str, Any]]
        | AsyncIterable[ExecuteJob | Mapping[str, Any]],
        *,
        concurrency: int = 32,
        per_user: int | None = None,
        per_connector: int | None = None,
        rate: float | RateBudget | None = None,
        burst: int | None = None,
        ordered: bool = False,
        deadline: float | None = None,
        stop_when: Callable[[BulkReport], bool] | None = None,
        checkpoint: str | os.PathLike[str] | Journal | None = None,
        validate: Validate = False,
        adaptive: CoolDown | bool = True,
        scope: Callable[[ExecuteJob], str] | None = None,
        lookahead: int | None = None,
        schedule: Schedule = "makespan",
        max_requeues: int = 3,
        default_user: str | None = None,
        on_skip: Callable[[ExecuteJob, str], None] | None = None,
        coordinator: Coordinator | None = None,
        on_credential_error: OnCredentialError | None = None,
        on_outcome: Callable[[JobOutcome], Awaitable[None] | None] | None = None,
        timeout: float | Timeout | None = None,
    ) -> BulkRun:
        """Execute many jobs (one action for many users) under caps, fairly; stream outcomes.

        ``async for outcome in alloy.actions.execute_many(jobs, per_user=2): ...`` yields one
        :class:`~alloy_async.JobOutcome` per job as it finishes (input order with
        ``ordered=True``); ``run.report`` is the :class:`~alloy_async.BulkReport`. Returns
        the :class:`~alloy_async.BulkRun` at once: nothing is sent before it is iterated.

        Args:
            jobs: an iterable or async iterable of :class:`~alloy_async.ExecuteJob` or
                mappings (camelCase or snake_case keys), read lazily.
            concurrency: worker tasks, and so the global cap on calls in flight.
            per_user: the cap on calls in flight per user id (None: no cap).
            per_connector: the cap on calls in flight per connector id (None: no cap).
            rate: calls per second: a number, or a rate budget of your own (a
                :class:`~alloy_async.engine.RateBudget`, e.g. one shared by several runs).
            burst: goes with a numeric ``rate``: at most ``burst`` calls in any
                ``burst / rate`` seconds (default: a tenth of a second's worth, at least 1);
                with a ``RedisCoordinator``, for every run sharing its budget. A rate budget
                of your own, or a coordinator that builds none from ``rate`` (one without
                ``configure``), sets its own burst: ``burst=`` is then refused
                (:class:`~alloy_async.InvalidRequestError` naming ``burst``), as is a burst
                without a rate.
            ordered: yield outcomes in input order (a reorder window of ``lookahead`` jobs).
            deadline: seconds for the run; then nothing more is dispatched (in-flight calls
                end under their own deadline) and the report says so.
            stop_when: called with the report after each outcome; True stops dispatch.
            checkpoint: the write-ahead journal: a path (a
                :class:`~alloy_async.SqliteJournal`) or any
                :class:`~alloy_async.engine.Journal`; locked for the run (a second run raises
                :class:`~alloy_async.JournalLockedError`).
            validate: True checks every job against its action's schema before it is queued
                (one schema fetch per distinct action): an invalid job ends with
                :class:`~alloy_async.InvalidRequestError` (its ``problems``), journaled as
                failed, never sent. ``"best_effort"`` lets a job through unchecked when its
                action's schema cannot be applied.
            adaptive: True for an :class:`~alloy_async.AdaptiveLimiter` of ``concurrency``
                per scope, or a cool-down of your own (a :class:`~alloy_async.engine.CoolDown`;
                wire its ``on_throttle`` into the pipeline's throttle listener), or False.
            scope: the adaptive scope of a job; default ``"execute:<connector_id>"``.
            lookahead: jobs read ahead of dispatch (the reach of fairness; bounds memory).
            schedule: how the users' queued jobs are ordered. ``"makespan"`` (default): every
                other pick goes to the user with the most queued jobs that is below its
                ``per_user`` cap, while at its cap it would still outlast all the others (its
                queued jobs / ``per_user`` > all queued / ``concurrency``), so such a user runs
                at its cap from the start and the run ends near ``max(jobs / rate, its jobs /
                (per_user / latency))``; the other picks are round-robin, so every user still
                gets a turn each round. ``"round_robin"``: the rotation alone, one job per user
                per round (light users finish a little sooner, a heavy capped user last).
                Without ``per_user`` both are the rotation.
            max_requeues: times a job that ended with a 429 is re-queued after the cool-down.
            default_user: the user of jobs without ``user_id``: their fairness and
                ``per_user`` key. Defaults to the client's user (``for_user``).
            on_skip: called with ``(job, reason)`` for each job not run because the journal
                has its key: ``"duplicate"`` (earlier in this run) or ``"done"`` (an earlier
                run).
            coordinator: the limits and journal as one bundle (a
                :class:`~alloy_async.engine.Coordinator`); when given, ``per_user``,
                ``per_connector``, ``rate``, ``checkpoint`` and a custom ``adaptive`` belong to
                it and must not be passed here too, except to a coordinator that takes its
                limits from these arguments (:class:`~alloy_async.distributed.RedisCoordinator`:
                ``per_user``, ``per_connector`` and a numeric ``rate`` are then shared by every
                process on its namespace).
            on_credential_error: called once per credential the run quarantines, with
                ``(user_id, credential_id, error)`` (sync or async), so the app can ask that
                user to reconnect. A job failing with 401/403 from the third party (``source``
                ``THIRD_PARTY``) quarantines its credential: its queued jobs are not sent (they
                end with :class:`~alloy_async.CredentialQuarantinedError`, journaled as not
                sent). A 401 from the Connectivity API itself (a bad API key) stops the run,
                unless ``stop_when`` is given.
            on_outcome: called (sync or async) with each outcome before the consumer gets it;
                the journal says the job is done only after it returned, so a sink that makes
                the outcome durable here (writes and flushes a line, commits a row) never loses
                one the journal calls done, even after SIGKILL. If it raises, the run stops and
                the error reaches the consumer; that job keeps its intent (a rerun reports it
                outcome-unknown, never sends it again). A plain ``async for`` gives the same
                order for what its body does before asking for the next outcome, but a write
                left in a buffer then is not durable.
            timeout: each job's call, as :meth:`execute`'s ``timeout=``: seconds per attempt,
                or a :class:`~alloy_async.Timeout`; also each schema fetch of ``validate``.
                None: the client's. (The run's own limit is ``deadline``.)
        """
        from ..engine import InProcessCoordinator, check_caps, check_options, execute_many

        timeout = check_timeout(timeout)  # refused now, naming it: not once per job
        check_caps(concurrency, per_user, per_connector)
        # What is used below before the engine checks the rest (a coordinator's cool-down,
        # the default coordinator's journal and adaptive limit).
        check_options(adaptive=adaptive, coordinator=coordinator, checkpoint=checkpoint)
        mode = check_validate(validate)
        preflight = None
        if mode is not False:
            jsonschema_module()  # missing: one clear error now, not one per job
            preflight = functools.partial(self._preflight(timeout).check_job, mode)

        # A closed client, or one bound to another loop, refuses the run at once instead of
        # failing every job with the same ConfigurationError.
        # (Outside a running loop there is nothing to check yet: each call checks later.)
        with contextlib.suppress(RuntimeError):
            self._requester._shared.check()
        limits: dict[str, Any] = {
            "per_user": per_user,
            "per_connector": per_connector,
            "rate": rate,
            "burst": burst,
            "checkpoint": checkpoint,
        }
        if coordinator is None:
            coordinator = InProcessCoordinator.build(
                concurrency=concurrency, adaptive=adaptive, **limits
            )
            limits = {}
            # Your own `adaptive=` object is wired by you (its docstring says how).
            wire = adaptive is True
        else:
            wire = True  # a coordinator's cool-down hears every 429/503 the pipeline sees
        return execute_many(
            # A coordinator that only configures runs (no cool-down of its own) wires none.
            self._execute_one(getattr(coordinator, "cooldown", None) if wire else None, timeout),
            jobs,
            concurrency=concurrency,
            ordered=ordered,
            deadline=deadline,
            stop_when=stop_when,
            coordinator=coordinator,
            scope=scope,
            lookahead=lookahead,
            schedule=schedule,
            max_requeues=max_requeues,
            default_user=self._requester.user_id if default_user is None else default_user,
            on_skip=on_skip,
            on_credential_error=on_credential_error,
            on_outcome=on_outcome,
            observer=self._requester.observer,
            preflight=preflight,
            **limits,
        )

    def _execute_one(
        self, cooldown: CoolDown | None, timeout: float | Timeout | None
    ) -> ExecuteOne:
        """``execute`` for one bulk job (each attempt within ``timeout``, None: the client's);
        with ``cooldown``, 429s seen inside the pipeline's own retries cool the whole scope,
        not one task."""
        runner = self
        if cooldown is not None:
            runner = Actions(self._requester.evolve(throttle_listener=cooldown.on_throttle))

        async def execute_one(job: ExecuteJob, stats: CallStats) -> ExecutionResult:
            # execute() without validation (execute_many's preflight checked the job first).
            request = runner._execute_request(
                job.connector_id,
                job.action_id,
                job.credential_id,
                job.user_id,
                job.request_body,
                job.query_parameters,
                job.path_params,
                job.additional_headers,
                timeout=timeout,
            )
            response = await runner._requester.send(
                request,
                scope=f"execute:{job.connector_id}",
                stats=stats,
                operation=EXECUTE_OPERATION,
            )
            return execute_result(request, response)

        return execute_one

    def catalog(
        self,
        *,
        user_id: str | None = None,
        connectors: Iterable[str] | None = None,
        concurrency: int = 8,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, Any] | None = None,
        timeout: float | Timeout | None = None,
    ) -> AsyncPaginator[CatalogAction]:
        """Every action across connectors, as :class:`~alloy_async.models.CatalogAction`
        with an UPPER_SNAKE slug.

        With ``user_id``, ``is_connected`` tells whether the user holds a credential for the
        action's connector. Connectors are fetched ``concurrency`` at a time and streamed one
        batch per page. ``extra_headers`` / ``extra_query`` are merged into every request it
        makes (the connector list, each connector's resources and credentials).

        ``timeout``: seconds or a :class:`~alloy_async.Timeout` for each request it makes
        (None: the client's).
        """
        return catalog(
            self._requester,
            user_id=user_id,
            connectors=connectors,
            concurrency=concurrency,
            extra_headers=extra_headers,
            extra_query=extra_query,
            timeout=timeout,
        )


async def _then(awaitable: Any, fn: Callable[[Any], Any]) -> Any:
    return fn(await awaitable)


def _page_info(body: Any) -> Any:
    """Where an execute answer's pagination block is: beside ``data`` at the top, or inside
    ``result``."""
    if isinstance(body, dict) and "pagination" not in body:
        inner = unwrap(body, "result", "responseData")
        if isinstance(inner, dict):
            return inner
    return body
