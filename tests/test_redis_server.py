"""The throwaway ``redis-server`` helper (tests/redis_server.py) that the Redis tests rely on:
it starts on its own loopback port, answers, and keeps acknowledged writes across a clean
restart and across SIGKILL (append-only file, ``appendfsync always``)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis_server import HOST, RedisServer, RedisServerMissing, running_redis


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as server:
        yield server


def _get(server: RedisServer, key: str) -> bytes | None:
    client = server.client()
    try:
        value = client.get(key)
        assert value is None or isinstance(value, bytes)
        return value
    finally:
        client.close()


def _set(server: RedisServer, key: str, value: str) -> None:
    client = server.client()
    try:
        assert client.set(key, value) is True  # acknowledged
    finally:
        client.close()


def test_starts_on_loopback_and_answers(redis_server: RedisServer) -> None:
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    assert redis_server.port != 6379
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert client.ping() is True
        info = client.info("server")
        assert info["process_id"] == redis_server.pid
        assert info["tcp_port"] == redis_server.port
        assert client.config_get("bind")["bind"] == HOST
        assert client.config_get("appendfsync")["appendfsync"] == "always"
        assert client.config_get("save")["save"] == ""
    finally:
        client.close()


def test_write_survives_stop_and_start(redis_server: RedisServer) -> None:
    port = redis_server.port
    _set(redis_server, "k", "clean")
    redis_server.stop()
    assert not redis_server.running
    assert redis_server.pid is None
    redis_server.start()
    assert redis_server.port == port
    assert _get(redis_server, "k") == b"clean"


def test_acknowledged_write_survives_sigkill(redis_server: RedisServer) -> None:
    old_pid = redis_server.pid
    _set(redis_server, "k", "crash")
    redis_server.kill()
    assert not redis_server.running
    redis_server.start()
    assert redis_server.pid != old_pid
    assert _get(redis_server, "k") == b"crash"


def test_without_appendonly_a_restart_starts_empty(tmp_path: Path) -> None:
    with running_redis(tmp_path, appendonly=False) as server:
        _set(server, "k", "gone")
        server.stop()
        server.start()
        assert _get(server, "k") is None


def test_two_servers_get_different_ports(tmp_path: Path) -> None:
    with (
        running_redis(tmp_path / "a") as a,
        running_redis(tmp_path / "b") as b,
    ):
        assert a.port != b.port
        _set(a, "k", "a")
        assert _get(b, "k") is None


def test_stop_and_kill_are_idempotent(tmp_path: Path) -> None:
    with running_redis(tmp_path) as server:
        server.stop()
        server.stop()
        server.kill()
        assert not server.running
    server.stop()  # after the block too


class _Boom(Exception):
    pass


def _fail_inside(tmp_path: Path, seen: list[RedisServer]) -> None:
    with running_redis(tmp_path) as server:
        seen.append(server)
        raise _Boom


def test_always_stopped_when_the_block_raises(tmp_path: Path) -> None:
    seen: list[RedisServer] = []
    with pytest.raises(_Boom):
        _fail_inside(tmp_path, seen)
    assert not seen[0].running
    client = redis.Redis(host=HOST, port=seen[0].port, retry=Retry(NoBackoff(), 0))
    try:
        with pytest.raises(redis.ConnectionError):
            client.ping()
    finally:
        client.close()


def test_restart_while_running_is_refused(redis_server: RedisServer) -> None:
    with pytest.raises(RuntimeError, match="already running"):
        redis_server.start()


def test_a_taken_port_is_retried_with_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import redis_server as helper

    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        busy = taken.getsockname()[1]
        ports = iter([busy, helper.free_port()])
        monkeypatch.setattr(helper, "free_port", lambda: next(ports))
        with running_redis(tmp_path) as server:
            assert server.port != busy
            assert _get(server, "k") is None
    assert "Address already in use" in (tmp_path / "redis.log").read_text()


def test_missing_redis_server_is_an_error_not_a_skip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RedisServerMissing, match="install Debian's redis-server"):
        RedisServer(tmp_path)
