"""``alloy.users``: the end users calls run for."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._convert import structure, structure_list, unwrap
from .._http import Timeout
from ..errors import InvalidResponseError
from ..models.users import User
from ..pagination import AsyncPaginator
from ._base import Service, check_id, extras

__all__ = ["Users"]

_USER = "/users/{userId}"


class Users(Service):
    """Create, list, read, update and delete Alloy users (one per end user or tenant)."""

    __slots__ = ()

    async def create(
        self,
        username: str,
        *,
        full_name: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, Any] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: float | Timeout | None = None,
    ) -> User:
        """Create a user. ``username`` must be unique in the account (an email or your own id).

        The API answers only the new ``userId``; the returned
        :class:`~alloy_async.models.User` also carries the username and full name that were
        sent.

        ``timeout``: seconds or a :class:`~alloy_async.Timeout` for this call (None: the
        client's).

        Raises:
            ConflictError: the username is taken.
        """
        check_id("username", username)
        if full_name is not None and not isinstance(full_name, str):
            raise _type_error("full_name", full_name)
        body: dict[str, Any] = {"username": username}
        if full_name is not None:
            body["fullName"] = full_name
        answer = await self._requester.request_json(
            "POST",
            "/users",
            json=body,
            **extras(extra_headers, extra_query, extra_body, timeout),
            operation="alloy.users.create",
        )
        user = structure(unwrap(answer, "user", "data"), User)
        return User(
            user_id=user.user_id,
            username=user.username if user.username is not None else username,
            full_name=user.full_name if user.full_name is not None else full_name,
            extra=user.extra,
        )

    def list(
        self,
        *,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, Any] | None = None,
        timeout: float | Timeout | None = None,
    ) -> AsyncPaginator[User]:
        """Every user of the account (the API documents no paging: one response).

        ``timeout``: seconds or a :class:`~alloy_async.Timeout` for each request it makes
        (None: the client's).
        """
        hatches = extras(extra_headers, extra_query, None, timeout)  # checked now

        async def fetch() -> Any:
            return await self._requester.request_json(
                "GET",
                "/users",
                **hatches,
                operation="alloy.users.list",
            )

        return AsyncPaginator.single(
            fetch, lambda body: structure_list(body, User, "data", "users")
        )

    async def get(
        self,
        user_id: str,
        *,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, Any] | None = None,
        timeout: float | Timeout | None = None,
    ) -> User:
        """One user, by id or by username.

        ``timeout``: seconds or a :class:`~alloy_async.Timeout` for this call (None: the
        client's).
        """
        answer = await self._requester.request_json(
            "GET",
            _USER,
            operation="alloy.users.get",
            path_params={"userId": check_id("user_id", user_id)},
            **extras(extra_headers, extra_query, None, timeout),
        )
        return structure(unwrap(answer, "user", "data"), User)

    async def update(
        self,
        user_id: str,
        *,
        username: str | None = None,
        full_name: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, Any] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: float | Timeout | None = None,
    ) -> User:
        """Change a user's username and/or full name; returns the updated user.

        ``timeout``: seconds or a :class:`~alloy_async.Timeout` for this call (None: the
        client's).
        """
        check_id("user_id", user_id)
        body: dict[str, Any] = {}
        if username is not None:
            body["username"] = check_id("username", username)
        if full_name is not None:
            if not isinstance(full_name, str):
                raise _type_error("full_name", full_name)
            body["fullName"] = full_name
        if not body and not extra_body:
            from ..errors import InvalidRequestError

            raise InvalidRequestError("update needs username or full_name", field="username")
        answer = await self._requester.request_json(
            "PUT",
            _USER,
            operation="alloy.users.update",
            path_params={"userId": user_id},
            json=body,
            **extras(extra_headers, extra_query, extra_body, timeout),
        )
        return structure(unwrap(answer, "user", "data"), User)

    async def delete(
        self,
        user_id: str,
        *,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, Any] | None = None,
        timeout: float | Timeout | None = None,
    ) -> None:
        """Delete a user (and with it, their credentials).

        ``timeout``: seconds or a :class:`~alloy_async.Timeout` for this call (None: the
        client's).
        """
        await self._requester.request_json(
            "DELETE",
            _USER,
            operation="alloy.users.delete",
            path_params={"userId": check_id("user_id", user_id)},
            **extras(extra_headers, extra_query, None, timeout),
        )

    async def token(
        self,
        user_id: str,
        *,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, Any] | None = None,
        timeout: float | Timeout | None = None,
    ) -> str:
        """A short-lived JWT for the user (for Alloy's embedded front-end components).

        Treat it as a secret: it is never logged or shown in reprs by the SDK.

        ``timeout``: seconds or a :class:`~alloy_async.Timeout` for this call (None: the
        client's).
        """
        check_id("user_id", user_id)
        answer = await self._requester.request_json(
            "GET",
            "/users/{userId}/token",
            operation="alloy.users.token",
            path_params={"userId": user_id},
            # One source documents userId as a query parameter as well as in the path.
            query={"userId": user_id},
            **extras(extra_headers, extra_query, None, timeout),
        )
        token = answer.get("token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise InvalidResponseError('expected {"token": "..."} from GET /users/{userId}/token')
        return token


def _type_error(name: str, value: object) -> Exception:
    from ..errors import InvalidRequestError

    return InvalidRequestError(f"{name} must be a string, got {type(value).__name__}", field=name)
