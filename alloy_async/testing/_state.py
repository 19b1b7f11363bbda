"""FakeAlloy's in-memory data (users, connectors, credentials, files, executions) and the
lookups its route handlers share. :class:`~alloy_async.testing.fake.FakeAlloy` extends it with
the server (routing, faults, recording)."""

from __future__ import annotations

import collections
import copy
import datetime
import hashlib
import random
import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .catalog import CONNECTORS
from .faults import HTTPError
from .records import ExecutionRecord

__all__ = ["FakeState"]


class FakeState:
    """The simulated API's data, reproducible from ``seed`` (ids and timestamps)."""

    def __init__(self, *, seed: int, execute_shape: str, dataset_size: int) -> None:
        self.dataset_size = dataset_size
        self.execute_shape = execute_shape
        self._rng = random.Random(seed)
        self._clock = 1_754_000_000.0  # 2025-07-31: deterministic timestamps
        #: The connector catalog, by id, as the API answers it (camelCase keys).
        self.connectors: dict[str, dict[str, Any]] = {c["id"]: copy.deepcopy(c) for c in CONNECTORS}
        #: User id -> the user, as the API answers it.
        self.users: dict[str, dict[str, Any]] = {}
        #: Credential id -> the credential, as stored.
        self.credentials: dict[str, dict[str, Any]] = {}
        #: User id -> file id -> the file, as stored.
        self.files: dict[str, dict[str, dict[str, Any]]] = collections.defaultdict(dict)
        #: Every action execution actually performed (a side effect happened), in order.
        self.executions: list[ExecutionRecord] = []
        #: Credentials the third party refuses (401, ``source`` THIRD_PARTY), as
        #: :meth:`revoke_credential` set them.
        self.revoked: set[str] = set()
        #: Executes refused because their credential was revoked, per credential.
        self.revoked_requests: collections.Counter[str] = collections.Counter()
        #: Compiled action schemas (strict mode), by (connector, action).
        self.validators: dict[tuple[str, str], Any] = {}
        self._pending_oauth: set[str] = set()

    # -- test helpers -----------------------------------------------------------------------

    def add_user(self, username: str, full_name: str | None = None) -> str:
        """Create a user directly; returns its id."""
        user_id = self._new_id()
        self.users[user_id] = {"userId": user_id, "username": username, "fullName": full_name}
        return user_id

    def revoke_credential(self, credential_id: str) -> None:
        """The end user revoked access at the third party: every execute with this credential
        now answers 401 with ``source: THIRD_PARTY`` (and executes nothing)."""
        if credential_id not in self.credentials:
            raise KeyError(f"no credential {credential_id!r}")
        self.revoked.add(credential_id)

    def add_credential(self, user_id: str, connector_id: str, *, name: str | None = None) -> str:
        """Create a working credential directly (as if consent was given); returns its id."""
        if user_id not in self.users:
            raise KeyError(f"no user {user_id!r}")
        if connector_id not in self.connectors:
            raise KeyError(f"no connector {connector_id!r}")
        auth = self.connectors[connector_id]["auth"][0]["authenticationType"]
        cred_id = self._new_id()
        now = self._now()
        user = self.users[user_id]
        self.credentials[cred_id] = {
            "credentialId": cred_id,
            "name": name or f"{user.get('fullName') or user['username']}'s {connector_id}",
            "type": f"{connector_id}-{auth}",
            "connectorId": connector_id,
            "userId": user_id,
            "createdAt": now,
            "updatedAt": now,
        }
        return cred_id

    def complete_oauth(self, oauth_url: str) -> str:
        """Finish the consent behind an ``oauthUrl`` the fake issued; returns the credential id."""
        query = dict(parse_qsl(urlsplit(oauth_url).query))
        match = re.search(r"/connector/([^/]+)/authorize", oauth_url)
        if not match or "userId" not in query or query.get("token") not in self._pending_oauth:
            raise ValueError("not an oauthUrl issued by this FakeAlloy (or already completed)")
        self._pending_oauth.discard(query["token"])
        return self.add_credential(query["userId"], match.group(1))

    def executions_of(self, **match: Any) -> list[ExecutionRecord]:
        """Processed executions whose fields equal the given values."""
        return [e for e in self.executions if all(getattr(e, k) == v for k, v in match.items())]

    # -- helpers for the route handlers -----------------------------------------------------

    def _new_id(self) -> str:
        return f"{self._rng.getrandbits(96):024x}"

    def _now(self) -> str:
        self._clock += 1.0
        return (
            datetime.datetime.fromtimestamp(self._clock, datetime.UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )

    def _user(self, key: str) -> dict[str, Any]:
        user = self.users.get(key)
        if user is None:
            user = next((u for u in self.users.values() if u["username"] == key), None)
        if user is None:
            raise HTTPError(404, "USER_NOT_FOUND", "User not found")
        return user

    def _connector(self, connector_id: str) -> dict[str, Any]:
        connector = self.connectors.get(connector_id)
        if connector is None:
            raise HTTPError(404, "CONNECTOR_NOT_FOUND", "Connector not found")
        return connector

    def _action(self, connector_id: str, action_id: str) -> dict[str, Any]:
        for resource in self._connector(connector_id)["resources"]:
            for action in resource["actions"]:
                if action["id"] == action_id:
                    return action  # type: ignore[no-any-return]
        raise HTTPError(404, "ACTION_NOT_FOUND", "Action not found")

    def _digest(self, *parts: str) -> str:
        return hashlib.sha256("\x00".join(parts).encode()).hexdigest()
