"""``alloy.credentials``: a user's stored authentication with a third-party app."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .._convert import structure, structure_list
from .._http import Timeout
from ..errors import InvalidRequestError
from ..models.credentials import Credential, CredentialCreated, CredentialMetadata
from ..pagination import AsyncPaginator
from ._base import Service, check_id, check_mapping, extras

__all__ = ["Credentials"]

_BASE = "/connectors/{connectorId}/credentials"


class Credentials(Service):
    """What a connector needs, creating credentials (OAuth or API key), listing and deleting."""

    __slots__ = ()

    async def metadata(
        self,
        connector_id: str,
        *,
        user_id: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, Any] | None = None,
        timeout: float | Timeout | None = None,
    ) -> list[CredentialMetadata]:
        """The authentication types a connector supports and the inputs each one needs.

        ``timeout``: seconds or a :class:`~alloy_async.Timeout` for this call (None: the
        client's).
        """
        answer = await self._requester.request_json(
            "GET",
            _BASE + "/metadata",
            operation="alloy.credentials.metadata",
            path_params={"connectorId": check_id("connector_id", connector_id)},
            user_id=user_id,
            **extras(extra_headers, extra_query, None, timeout),
        )
        return structure_list(answer, CredentialMetadata, "metadata", "data")

    async def create(
        self,
        connector_id: str,
        *,
        user_id: str,
        authentication_type: str,
        redirect_uri: str | None = None,
        auth_config_id: str | None = None,
        data: Mapping[str, Any] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, Any] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        timeout: float | Timeout | None = None,
    ) -> CredentialCreated:
        """Create a credential for a user.

        * OAuth (``authentication_type="oauth2"``): the answer's ``oauth_url`` is where to send
          the user's browser; the credential exists after consent (find it with :meth:`list`).
          ``redirect_uri`` (where the user lands after consent) is optional, as the reference
          schema has it, and sent as ``redirectUri`` only when given.
        * API key / HTTP auth (``data={...}`` as the connector's metadata asks): the answer's
          ``credential_id`` is usable at once.

        The user goes in the body as ``userId`` (as the reference documents) and in
        ``x-alloy-userid``. Not idempotent: never re-sent once it may have reached the server.

        ``timeout``: seconds or a :class:`~alloy_async.Timeout` for this call (None: the
        client's).
        """
        check_id("connector_id", connector_id)
        body: dict[str, Any] = {
            "userId": check_id("user_id", user_id),
            "authenticationType": check_id("authentication_type", authentication_type),
        }
        if redirect_uri is not None:
            check_id("redirect_uri", redirect_uri)
            if not redirect_uri.startswith(("https://", "http://")):
                raise InvalidRequestError(
                    "redirect_uri must be an absolute http(s) URL", field="redirect_uri"
                )
            body["redirectUri"] = redirect_uri
        if auth_config_id is not None:
            body["authConfigId"] = check_id("auth_config_id", auth_config_id)
        if data is not None:
            body["data"] = check_mapping("data", data)
        answer = await self._requester.request_json(
            "POST",
            _BASE,
            operation="alloy.credentials.create",
            path_params={"connectorId": connector_id},
            json=body,
            user_id=user_id,
            **extras(extra_headers, extra_query, extra_body, timeout),
        )
        return structure(answer, CredentialCreated)

    def list(
        self,
        connector_id: str,
        *,
        user_id: str,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, Any] | None = None,
        timeout: float | Timeout | None = None,
    ) -> AsyncPaginator[Credential]:
        """A user's credentials for one connector.

        The user is sent as ``x-alloy-userid`` and as the ``userId`` query parameter (one
        source requires the query; the others ignore it).

        ``timeout``: seconds or a :class:`~alloy_async.Timeout` for each request it makes
        (None: the client's).
        """
        check_id("connector_id", connector_id)
        check_id("user_id", user_id)

        hatches = extras(extra_headers, extra_query, None, timeout)  # checked now

        async def fetch() -> Any:
            return await self._requester.request_json(
                "GET",
                _BASE,
                operation="alloy.credentials.list",
                path_params={"connectorId": connector_id},
                query={"userId": user_id},
                user_id=user_id,
                **hatches,
            )

        return AsyncPaginator.single(
            fetch, lambda body: structure_list(body, Credential, "credentials", "data")
        )

    async def delete(
        self,
        connector_id: str,
        credential_id: str,
        *,
        user_id: str,
        extra_headers: Mapping[str, str] | None = None,
        extra_query: Mapping[str, Any] | None = None,
        timeout: float | Timeout | None = None,
    ) -> None:
        """Delete one of a user's credentials.

        ``timeout``: seconds or a :class:`~alloy_async.Timeout` for this call (None: the
        client's).
        """
        await self._requester.request_json(
            "DELETE",
            _BASE + "/{credentialId}",
            operation="alloy.credentials.delete",
            path_params={
                "connectorId": check_id("connector_id", connector_id),
                "credentialId": check_id("credential_id", credential_id),
            },
            query={"userId": check_id("user_id", user_id)},
            user_id=user_id,
            **extras(extra_headers, extra_query, None, timeout),
        )
