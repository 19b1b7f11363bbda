"""One-off calls: ``alloy-async users|connectors|actions|credentials ...``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import click

from ..client import AlloyClient
from ._common import common, emit, json_arg, open_client, run_async

__all__ = ["actions", "connectors", "credentials", "users"]


def _call(
    kwargs: dict[str, Any],
    fn: Callable[[AlloyClient], Awaitable[Any]],
    columns: list[str] | None = None,
) -> None:
    as_json = kwargs.pop("as_json")

    async def go() -> Any:
        async with open_client(
            kwargs.pop("api_key"), kwargs.pop("base_url"), kwargs.pop("sandbox")
        ) as a:
            return await fn(a)

    emit(run_async(go()), as_json, columns)


# -- users ---------------------------------------------------------------------------------


@click.group("users")
def users() -> None:
    """Create, list, read and delete users."""


@users.command("list")
@common
def users_list(**kw: Any) -> None:
    """Every user."""
    _call(kw, lambda a: a.users.list().to_list(), ["userId", "username", "fullName"])


@users.command("create")
@common
@click.argument("username")
@click.option("--full-name", help="The user's full name.")
def users_create(username: str, full_name: str | None, **kw: Any) -> None:
    """Create a user."""
    _call(
        kw,
        lambda a: a.users.create(username, full_name=full_name),
        ["userId", "username", "fullName"],
    )


@users.command("get")
@common
@click.argument("user_id")
def users_get(user_id: str, **kw: Any) -> None:
    """One user, by id or username."""
    _call(kw, lambda a: a.users.get(user_id), ["userId", "username", "fullName"])


@users.command("delete")
@common
@click.argument("user_id")
def users_delete(user_id: str, **kw: Any) -> None:
    """Delete a user."""
    _call(kw, lambda a: a.users.delete(user_id))


# -- connectors ----------------------------------------------------------------------------


@click.group("connectors")
def connectors() -> None:
    """The connector catalog."""


@connectors.command("list")
@common
@click.option("--category", help="Only the connectors of this category.")
def connectors_list(category: str | None, **kw: Any) -> None:
    """Every connector (optionally of one category)."""
    _call(
        kw, lambda a: a.connectors.list(category=category).to_list(), ["id", "name", "categories"]
    )


@connectors.command("resources")
@common
@click.argument("connector_id")
def connectors_resources(connector_id: str, **kw: Any) -> None:
    """A connector's resources and their actions."""

    async def go(a: AlloyClient) -> Any:
        return [
            {"resource": r.name, "action": x.id, "name": x.name}
            for r in await a.connectors.resources(connector_id)
            for x in r.actions
        ]

    _call(kw, go, ["resource", "action", "name"])


# -- actions -------------------------------------------------------------------------------


@click.group("actions")
def actions() -> None:
    """Inspect and execute actions."""


@actions.command("get")
@common
@click.argument("connector_id")
@click.argument("action_id")
def actions_get(connector_id: str, action_id: str, **kw: Any) -> None:
    """An action's schema."""
    _call(kw, lambda a: a.actions.get(connector_id, action_id))


@actions.command("execute")
@common
@click.argument("connector_id")
@click.argument("action_id")
@click.option("--credential-id", required=True, help="The user's credential to run it with.")
@click.option("--user-id", help="The user to run it for (x-alloy-userid).")
@click.option("--body", help="The request body for the third party, as JSON.")
@click.option("--query", help="The third party's query parameters, as JSON.")
@click.option("--path-params", help="The action's path parameters, as JSON.")
def actions_execute(
    connector_id: str,
    action_id: str,
    credential_id: str,
    user_id: str | None,
    body: str | None,
    query: str | None,
    path_params: str | None,
    **kw: Any,
) -> None:
    """Execute an action once."""
    request_body = json_arg("--body", body)
    query_parameters = json_arg("--query", query)
    params = json_arg("--path-params", path_params)

    async def go(a: AlloyClient) -> Any:
        result = await a.actions.execute(
            connector_id,
            action_id,
            credential_id=credential_id,
            user_id=user_id,
            request_body=request_body,
            query_parameters=query_parameters,
            path_params=params,
        )
        return {"success": result.success, "data": result.data, "requestId": result.request_id}

    _call(kw, go)


# -- credentials ---------------------------------------------------------------------------


@click.group("credentials")
def credentials() -> None:
    """A user's credentials."""


@credentials.command("metadata")
@common
@click.argument("connector_id")
def credentials_metadata(connector_id: str, **kw: Any) -> None:
    """What a connector needs to create a credential."""
    _call(
        kw,
        lambda a: a.credentials.metadata(connector_id),
        ["authenticationType", "authConfigRequired", "requiredFields"],
    )


@credentials.command("list")
@common
@click.argument("connector_id")
@click.option("--user-id", required=True, help="The user whose credentials to list.")
def credentials_list(connector_id: str, user_id: str, **kw: Any) -> None:
    """A user's credentials for a connector."""
    _call(
        kw,
        lambda a: a.credentials.list(connector_id, user_id=user_id).to_list(),
        ["credentialId", "name", "type", "createdAt"],
    )


@credentials.command("create")
@common
@click.argument("connector_id")
@click.option("--user-id", required=True, help="The user the credential is for.")
@click.option(
    "--type",
    "auth_type",
    required=True,
    help="The authentication type, as credentials metadata lists it (oauth2, apiKey, ...).",
)
@click.option("--redirect-uri", help="Where OAuth sends the user back to (oauth2).")
@click.option("--data", help="The connector's inputs (an API key...), as JSON.")
def credentials_create(
    connector_id: str,
    user_id: str,
    auth_type: str,
    redirect_uri: str | None,
    data: str | None,
    **kw: Any,
) -> None:
    """Create a credential (prints oauthUrl or credentialId)."""
    inputs = json_arg("--data", data)
    _call(
        kw,
        lambda a: a.credentials.create(
            connector_id,
            user_id=user_id,
            authentication_type=auth_type,
            redirect_uri=redirect_uri,
            data=inputs,
        ),
    )


@credentials.command("delete")
@common
@click.argument("connector_id")
@click.argument("credential_id")
@click.option("--user-id", required=True, help="The user the credential belongs to.")
def credentials_delete(connector_id: str, credential_id: str, user_id: str, **kw: Any) -> None:
    """Delete a credential."""
    _call(kw, lambda a: a.credentials.delete(connector_id, credential_id, user_id=user_id))
