"""A bad ``--redis`` is one line and exit code 2 (issue 22, item 8), for ``bulk`` and ``worker``.

A URL redis-py cannot use (a port that is not a number, an option it cannot read) was a 60-line
traceback and exit 1; a wrong password or a Redis that is down at the start was one line but
exit 1. docs/guarantees.md promises one line and exit 2 for every bad option; later outages
are pauses.
The password never appears in what is printed.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_server import RedisServer, free_port, running_redis
from test_cli_bulk import CLI, ENV

SECRET = "s3cr3t-pw"


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as server:
        yield server


def _jobs(tmp_path: Path) -> Path:
    path = tmp_path / "jobs.jsonl"
    path.write_text(
        '{"connectorId": "slack", "actionId": "chat_postMessage", "credentialId": "c", '
        '"userId": "u", "key": "k"}\n'
    )
    return path


def _both(url: str, tmp_path: Path) -> list[subprocess.CompletedProcess[str]]:
    out = tmp_path / "out.jsonl"
    commands = [
        [*CLI, "bulk", "--api-key", "k", "--redis", url, "--namespace", "n", "--out", str(out),
         str(_jobs(tmp_path))],
        [*CLI, "worker", "--api-key", "k", "--redis", url],
    ]  # fmt: skip
    return [
        subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=120, check=False)
        for argv in commands
    ]


def _one_clean_line(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert SECRET not in done.stderr + done.stdout
    for text in expected:
        assert text in lines[0], lines[0]


@pytest.mark.parametrize(
    ("url", "named"),
    [
        (f"redis://:{SECRET}@127.0.0.1:notaport/0", "notaport"),
        (f"redis://:{SECRET}@127.0.0.1:6379/0?socket_timeout=abc", "socket_timeout"),
    ],
)
def test_a_url_redis_cannot_use_is_one_line_and_exit_2(
    url: str, named: str, tmp_path: Path
) -> None:
    """Catches: the URL checked only by its scheme (redis-py's ValueError escapes as a
    traceback), or safe_url itself failing on a port that is not a number."""
    for done in _both(url, tmp_path):
        _one_clean_line(done, "--redis", named)


def test_redis_down_at_the_start_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """Catches: an unreachable Redis at the start reported as a run failure (exit 1)."""
    url = f"redis://:{SECRET}@127.0.0.1:{free_port()}/0"  # nothing listens there
    for done in _both(url, tmp_path):
        _one_clean_line(done, "--redis", "cannot be used")


def test_a_wrong_password_is_one_line_and_exit_2(redis_server: RedisServer, tmp_path: Path) -> None:
    """Catches: a refused password reported as a run failure (exit 1), or printed."""
    redis_server.client().config_set("requirepass", "the-right-one")
    url = f"redis://:{SECRET}@127.0.0.1:{redis_server.port}/0"
    for done in _both(url, tmp_path):
        _one_clean_line(done, "--redis", "cannot be used")
