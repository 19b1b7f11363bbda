"""The credential quarantine of a namespace, shared by every run on it (on Redis).

One hash (``alloy:{ns}:quarantine``): credential id -> why it was quarantined (the user and the
third party's refusal). A run that sees a credential refused adds it there and announces it on
the coordinator's channel, so every process stops sending that credential's jobs within a
message's latency, not after each of its runs has paid its own 401s.

The quarantine lives as long as the namespace has live runs (``alloy:{ns}:runs``, renewed like
the leases): the last run to end takes it away (also a dead holder, once its expiry passes),
so a rerun after the users reconnect sends the jobs it held back. A long-lived process keeps it
across the gaps between its runs with :meth:`RedisCoordinator.session`; an app that learns of a
reconnection ends one credential's quarantine with :meth:`RedisCoordinator.lift_quarantine`.

Outages follow the journal's rules: joining retries through an outage up to
``unavailable_timeout`` (then the run stops, nothing sent); additions are queued with the
outcomes (a lost one costs other processes a few more 401s, never a job sent twice).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from ..errors import status_error_class
from ._redis import Shared
from ._scripts import JOIN, LEAVE, RENEW_RUNS
from ._writes import Publish, Quarantined, Writer

__all__ = ["RedisQuarantine"]


class RedisQuarantine:
    """A namespace's shared quarantine: this process's view of it, and its writes.

    The engine reads :attr:`bad` for every job (a local dict, refreshed by the channel's
    messages, by each run's start and by every renewal) and calls :meth:`add`.
    """

    def __init__(
        self,
        shared: Shared,
        prefix: str,
        *,
        ttl_ms: int,
        writer: Writer,
        channel: str,
    ) -> None:
        self._shared = shared
        self.key = prefix + "quarantine"
        self.runs_key = prefix + "runs"
        self._run_prefix = prefix + "run:"
        self._ttl_ms = ttl_ms
        self._writer = writer
        self._channel = channel
        #: This process's live runs on the namespace (renewed in the background).
        self.live: set[str] = set()
        #: Credential id -> the error that quarantined it, as this process knows it.
        self.bad: dict[str, BaseException] = {}
        #: Credential id -> its user, when known.
        self.users: dict[str, str | None] = {}

    def add(self, credential_id: str, user_id: str | None, error: BaseException) -> bool:
        """Quarantine ``credential_id`` for every run on the namespace; False when this
        process already knew it was (the callback is owed once)."""
        if credential_id in self.bad:
            return False
        self._know(credential_id, user_id, error)
        why = _dumps(user_id, error)
        message = orjson.dumps(
            {"quarantine": credential_id, "why": orjson.Fragment(why), "from": self._shared.id}
        )
        self._writer.queue(Quarantined(self.key, credential_id, why, self._ttl_ms * 2))
        self._writer.queue(Publish(self._channel, message))
        return True

    async def join(self, run_id: str) -> None:
        """Start run ``run_id`` (one round trip) and take the quarantine it now shares (with
        no other run of this process live, what Redis no longer has is gone)."""
        keys = [self.runs_key, self._run_prefix + run_id, self.key]
        flat = await self._shared.call(
            "starting a run", self._shared.script(JOIN), keys, [run_id, self._ttl_ms]
        )
        self.refresh(flat, replace=not self.live)
        self.live.add(run_id)

    async def leave(self, run_id: str) -> None:
        """End run ``run_id``; the last live run of the namespace removes the quarantine."""
        self.live.discard(run_id)
        keys = [self.runs_key, self._run_prefix + run_id, self.key]
        await self._shared.call("ending a run", self._shared.script(LEAVE), keys, [run_id])

    async def renew(self, pipe: Any) -> None:
        """Queue the renewal of the live runs on ``pipe``; its answer goes to :meth:`refresh`."""
        runs = list(self.live)
        keys = [self.runs_key, self.key, *(self._run_prefix + r for r in runs)]
        await self._shared.script(RENEW_RUNS)(keys=keys, args=[self._ttl_ms, *runs], client=pipe)

    async def lift(self, credential_ids: Iterable[str]) -> None:
        """End the quarantine of these credentials for every run on the namespace."""
        ids = list(credential_ids)
        if not ids:
            return
        message = orjson.dumps({"lift": ids, "from": self._shared.id})

        def build(pipe: Any) -> None:
            pipe.hdel(self.key, *ids)
            pipe.publish(self._channel, message)

        await self._shared.batch("lifting a quarantine", build)
        self._forget(ids)

    def refresh(self, flat: Any, *, replace: bool = False) -> None:
        """Take what Redis holds (HGETALL's flat list); ``replace``: forget what it lacks."""
        found: dict[str, tuple[str | None, BaseException]] = {}
        items = list(flat or ())
        for name, raw in zip(items[::2], items[1::2], strict=True):
            why = _loads(raw)
            if why is not None:
                found[name.decode() if isinstance(name, bytes) else str(name)] = why
        if replace:
            self._forget([c for c in self.bad if c not in found])
        for credential_id, (user_id, error) in found.items():
            if credential_id not in self.bad:
                self._know(credential_id, user_id, error)

    def heard(self, message: Mapping[str, Any]) -> None:
        """Apply another process's message (an addition or a lift)."""
        credential_id, lifted = message.get("quarantine"), message.get("lift")
        if isinstance(credential_id, str) and credential_id not in self.bad:
            why = _parse(message.get("why"))
            if why is not None:
                self._know(credential_id, *why)
        elif isinstance(lifted, list):
            self._forget([c for c in lifted if isinstance(c, str)])

    def _know(self, credential_id: str, user_id: str | None, error: BaseException) -> None:
        self.bad[credential_id] = error
        self.users[credential_id] = user_id

    def _forget(self, credential_ids: Iterable[str]) -> None:
        for credential_id in credential_ids:
            self.bad.pop(credential_id, None)
            self.users.pop(credential_id, None)


def _dumps(user_id: str | None, error: BaseException) -> bytes:
    """Why a credential is quarantined, as stored: the user and the refusal (an
    :class:`APIStatusError`; no body, only what its message already says)."""
    fields = {k: getattr(error, a, None) for k, a in _FIELDS.items()}
    return orjson.dumps({"user": user_id, "type": type(error).__name__, **fields})


#: What is stored of the refusal: field -> the error's attribute.
_FIELDS = {
    "status": "status",
    "message": "message",
    "code": "code",
    "source": "source",
    "requestId": "request_id",
}


def _loads(raw: Any) -> tuple[str | None, BaseException] | None:
    """The stored form back (None for anything malformed: another writer's garbage must not
    stop a run, nor quarantine anything)."""
    try:
        return _parse(orjson.loads(raw))
    except (orjson.JSONDecodeError, TypeError):
        return None


def _parse(why: Any) -> tuple[str | None, BaseException] | None:
    if not isinstance(why, dict):
        return None
    user, status, message = why.get("user"), why.get("status"), why.get("message")
    if not (user is None or isinstance(user, str)) or not isinstance(message, str):
        return None
    if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599:
        return None
    text = {k: why.get(k) for k in ("code", "source", "requestId")}
    if not all(v is None or isinstance(v, str) for v in text.values()):
        return None
    error = status_error_class(status)(
        message,
        status=status,
        code=text["code"],
        source=text["source"],
        request_id=text["requestId"],
    )
    return user, error
