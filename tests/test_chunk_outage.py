"""Issue 22, item 5: after a Redis outage past ``unavailable_timeout``, a chunk's rows say what
the server did.

What went wrong: a worker whose rate permit (or intent) could not be taken because Redis was
unreachable got the engine's "not sent" outcome (``CoordinatorError``, ``attempts: 0``) and
treated it as the job's row: it stored it in the journal (``HSET row``) and returned it. The
queue hands a chunk held through such an outage to another worker when Redis is back, and that
copy sent the job; the first copy's late write then replaced the real row (journal: state
``succeeded``, row "not sent"), and the driver could write the first copy's result. The line
said "not sent" for a job the server executed, and a user re-sending failed lines sent it twice.

Everything here is real: a ``redis-server`` of our own, killed and restarted with its data (or
cut off from one worker by a TCP relay); the last test runs a sandbox, ``alloy-async worker``
processes and the driver, and judges by the sandbox's ``/_sandbox/executions``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio
from redis_server import RedisServer, free_port, running_redis
from test_cli_bulk import Sandbox, running_sandbox
from test_distributed_cli import (
    Workers,
    driver,
    executed,
    finish,
    lines,
    one_line_per_job,
    wait_for,
    write_jobs,
)

from alloy_async.distributed import RedisCoordinator, run_chunk
from alloy_async.errors import CoordinatorError
from alloy_async.testing import FakeAlloy


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path / "redis") as server:
        yield server


def _job(fake: FakeAlloy, key: str) -> dict[str, Any]:
    user = fake.add_user(f"{key}@example.com")
    return {
        "connectorId": "slack", "actionId": "chat_postMessage",
        "credentialId": fake.add_credential(user, "slack"), "userId": user,
        "requestBody": {"channel": "C1", "text": key}, "key": key, "_line": 7,
    }  # fmt: skip


def _sent(fake: FakeAlloy, key: str) -> int:
    return sum(1 for e in fake.executions if e.request_body.get("text") == key)


async def _stored(url: str, namespace: str, key: str) -> dict[bytes, bytes]:
    async with redis.asyncio.Redis.from_url(url) as raw:
        found: dict[bytes, bytes] = await raw.hgetall(f"alloy:{{{namespace}}}:job:{key}")
        return found


async def test_a_copy_whose_permit_failed_in_an_outage_keeps_the_row_of_the_copy_that_ran(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Catches: run_chunk storing and returning the engine's 'not sent' outcome (a
    CoordinatorError while taking a rate permit) as the job's row.

    Copy A of a one-job chunk waits for its rate permit when Redis is killed; past A's
    ``unavailable_timeout`` the engine gives the job up, unsent. Redis comes back, copy B (the
    queue's redelivery) sends the job, and only then does A's next Redis call go through (the
    order the report saw: A's write, retried with back-off, landed after B's). Without the fix
    A returns the 'not sent' row and its write replaces B's row in the journal."""
    fake = FakeAlloy()
    job = _job(fake, "x")
    ns = "item5"
    a = RedisCoordinator(redis_server.url, namespace=ns, unavailable_timeout=0.5)
    b = RedisCoordinator(redis_server.url, namespace=ns)
    gave_up, b_done = asyncio.Event(), asyncio.Event()
    real: Callable[..., Awaitable[Any]] = a._shared.call

    async def a_call(what: str, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        if what == "taking a rate permit" and not gave_up.is_set():
            await asyncio.to_thread(redis_server.kill)  # the outage starts at A's permit
            try:
                return await real(what, fn, *args)
            except CoordinatorError:
                gave_up.set()
                raise
        if gave_up.is_set():
            await b_done.wait()  # A's next call lands after copy B ran the job
        return await real(what, fn, *args)

    monkeypatch.setattr(a._shared, "call", a_call)
    async with fake.client() as alloy, a, b:
        copy_a = asyncio.create_task(run_chunk(alloy, a, [job], rate=50))
        async with asyncio.timeout(30):
            await gave_up.wait()
        await asyncio.to_thread(redis_server.start)  # with its data (append-only file)
        (row_b,) = await run_chunk(alloy, b, [job], rate=50)
        b_done.set()
        async with asyncio.timeout(30):
            rows_a = await copy_a
    assert _sent(fake, "x") == 1  # the server's own record: sent once, by copy B
    assert row_b["ok"] is True and row_b["attempts"] == 1, row_b
    stored = await _stored(redis_server.url, ns, "x")
    assert stored[b"s"] == b"succeeded"
    assert orjson.loads(stored[b"row"]) == row_b, "the journal's row is not the one that ran"
    assert rows_a == [row_b], "copy A reported the job as not sent though B ran it"


async def test_a_job_the_coordinator_never_let_through_is_not_journaled_as_failed(
    redis_server: RedisServer,
) -> None:
    """Catches: a 'not sent' row (the coordinator refused the job's journal look-up, so nothing
    was sent) stored in the journal and returned as the chunk's row; and, with that fixed, a
    chunk that keeps trying for ever when the coordinator keeps refusing.

    Redis refuses this worker's scripts for good (an ACL): the chunk fails with the
    CoordinatorError, nothing is sent, and the journal holds nothing for the job, so the
    driver's resend or a rerun sends it."""
    fake = FakeAlloy()
    job = _job(fake, "y")
    with redis_server.client() as admin:
        admin.acl_setuser(
            "noscripts", enabled=True, passwords=["+pw"], keys=["*"], channels=["*"],
            commands=["+@all", "-@scripting"],
        )  # fmt: skip
    url = redis_server.url.replace("redis://", "redis://noscripts:pw@")
    async with fake.client() as alloy, RedisCoordinator(url, namespace="refused") as coord:
        async with asyncio.timeout(10):  # not for ever
            with pytest.raises(CoordinatorError, match="refused"):
                await run_chunk(alloy, coord, [job], rate=50)
    assert _sent(fake, "y") == 0
    assert await _stored(redis_server.url, "refused", "y") == {}


# -- the whole thing: worker processes, one of them cut off from Redis past its limit ---------

#: Seconds the first worker is cut off from Redis: past its 30 s ``unavailable_timeout`` (its
#: permit is given up), within the 30 s it then keeps retrying to write.
OUTAGE = 34.0


class CutOff:
    """A TCP relay to Redis on 127.0.0.1 that :meth:`cut` closes (every connection, and new ones
    refused) and :meth:`restore` opens again on the same port: an outage one process sees."""

    def __init__(self, target: int) -> None:
        self.target, self.port = target, free_port()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.restore()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        with self._lock:
            conns, self._open = self._open, set()
        for sock in [s for s in (listener,) if s is not None] + list(conns):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept or recv
            sock.close()

    close = cut

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                near, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                far = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                near.close()
                continue
            with self._lock:
                self._open |= {near, far}
            for src, dst in ((near, far), (far, near)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with running_sandbox(latency="50ms", users=6) as box:
        yield box


def _results(server: RedisServer) -> list[bytes]:
    with server.client() as raw:
        return list(raw.scan_iter(match="alloy-async:result:*"))


def _agrees(rows: list[dict[str, Any]], done: Counter[str]) -> None:
    for row in rows:
        if row["ok"]:
            assert done[row["key"]] == 1, row
        else:  # in flight when Redis went away: outcome unknown, never 'not sent' or failed
            assert row["error"]["type"] == "OutcomeUnknownError", json.dumps(row)


def test_a_worker_cut_off_past_the_limit_never_leaves_a_not_sent_row_for_a_job_that_ran(
    redis_server: RedisServer, sandbox: Sandbox, tmp_path: Path
) -> None:
    """Catches (with real workers): the cut-off worker's 'not sent' row replacing, in the
    journal, the row of the worker that ran the job; a rerun then says 'not sent' for it.

    Worker 1 runs the chunk at one permit a second (so it waits for a permit, not for the
    sandbox, when it is cut off); worker 2 takes the chunk over after the idle timeout and
    finishes it; the driver writes worker 2's rows. Worker 1 gives its permit up at 30 s and,
    without the fix, writes its 'not sent' row once Redis is back. A rerun with the same
    namespace (a new --out) reports every job from the journal. (It misses the bug only if
    worker 1 had a call in flight when it was cut off, 50 ms of each second.)"""
    (tmp_path / "near").mkdir()
    (tmp_path / "far").mkdir()
    jobs, out, again = tmp_path / "jobs.jsonl", tmp_path / "out.jsonl", tmp_path / "again.jsonl"
    keys = write_jobs(jobs, sandbox, "cut", 6)
    with contextlib.closing(CutOff(redis_server.port)) as relay:
        near = Workers(relay.url, sandbox, tmp_path / "near")
        far = Workers(redis_server.url, sandbox, tmp_path / "far")
        try:
            near.start()
            run = driver(redis_server.url, jobs, out, "cut", "--rate", "1")
            try:
                wait_for("worker 1 to run a job", lambda: len(executed(sandbox, "cut")) >= 1)
                far.start()
                relay.cut()
                cut_at = time.monotonic()
                code, err = finish(run, timeout=60)  # worker 2 finishes the chunk
            finally:
                if run.poll() is None:
                    run.kill()
                    run.communicate()
            assert code in (0, 1), err
            assert time.monotonic() - cut_at < OUTAGE, "worker 2 took too long to finish"
            time.sleep(cut_at + OUTAGE - time.monotonic())  # the outage's length, not a wait
            relay.restore()
            wait_for("worker 1's copy of the chunk to answer", lambda: bool(_results(redis_server)))
            code_again, err_again = finish(driver(redis_server.url, jobs, again, "cut"))
        finally:
            codes = near.stop() + far.stop()
    done = executed(sandbox, "cut")
    assert set(done) == keys and max(done.values()) == 1, done
    for path in (out, again):
        rows = lines(path)
        one_line_per_job(rows, keys)
        _agrees(rows, done)
    assert code_again == code, err_again
    assert codes == [0, 0]
