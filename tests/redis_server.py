"""A throwaway ``redis-server`` on 127.0.0.1 for the tests and benchmarks that need a real Redis.

Usage (tests import helpers by module name, like ``from test_cli_bulk import running_sandbox``;
benchmarks, run as ``python -m benchmarks`` from the repository root, use
``from tests.redis_server import running_redis``)::

    from redis_server import RedisServer, running_redis

    @pytest.fixture
    def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
        with running_redis(tmp_path) as server:
            yield server

    def test_restart(redis_server: RedisServer) -> None:
        ...  # use redis_server.url
        redis_server.kill()   # SIGKILL: "Redis crashed"
        redis_server.start()  # same port, same dir: the append-only file is replayed

Each server gets its own free loopback port (never 6379, so a system Redis that Debian's
package may have started does not matter), its own data directory and log file, persistence
only through the append-only file with ``appendfsync always`` (an acknowledged write survives
SIGKILL), and no RDB snapshots. It is always stopped when the ``with`` block ends, failed test
or not.

``redis-server`` must be on PATH (Debian: ``apt-get install redis-server``; ``.ci/run`` installs
it). When it is missing and the tests run as root on a Debian-like machine (a fresh CI box,
README's quick start), the helper installs Debian's package once, so the README's test command
holds on a fresh machine; otherwise it raises :class:`RedisServerMissing` instead of skipping:
the Redis tests are required, and a skip would let CI pass without running them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

HOST = "127.0.0.1"
STARTUP_TIMEOUT = 15.0  # seconds for redis-server to answer; generous for a loaded CI machine
STOP_TIMEOUT = 10.0  # seconds after SIGTERM before the server is killed
_POLL_INTERVAL = 0.01  # between PING attempts, inside a deadline loop
_PORT_ATTEMPTS = 20  # fresh ports to try when a chosen port is taken before Redis binds it
_IN_USE = "Address already in use"


class RedisServerMissing(RuntimeError):
    """``redis-server`` is not installed: the Redis tests cannot run (and must not be skipped)."""


def _install_with_apt() -> None:
    """Install Debian's redis-server when we are root and apt-get is here (else do nothing)."""
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    install = [apt, "install", "-y", "-q", "--no-install-recommends", "redis-server"]
    if subprocess.run(install, check=False, **quiet).returncode != 0:  # type: ignore[call-overload]
        subprocess.run([apt, "update", "-q"], check=False, **quiet)  # type: ignore[call-overload]
        subprocess.run(install, check=False, **quiet)  # type: ignore[call-overload]


def redis_server_binary() -> str:
    """Path of ``redis-server`` on PATH (installed from Debian's packages when missing and we
    may); raises :class:`RedisServerMissing` (with the fix)."""
    found = shutil.which("redis-server")
    if found is None:
        _install_with_apt()
        found = shutil.which("redis-server")
    if found is None:
        raise RedisServerMissing(
            "redis-server is not on PATH. The Redis tests are required: install Debian's "
            "redis-server (`apt-get install -y --no-install-recommends redis-server`; "
            ".ci/run does this) and run the tests again."
        )
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel's choice for port 0).

    Another process may take it before Redis binds it; :meth:`RedisServer.start` retries.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class _PortInUse(Exception):
    """Redis exited at start-up because its port was taken (internal: triggers a retry)."""


class RedisServer:
    """One ``redis-server`` process on 127.0.0.1, restartable on the same port and directory.

    ``directory`` holds the append-only files and ``redis.log``; it is created if missing.
    With ``appendonly=False`` nothing is persisted, so a restart starts empty.
    The port is chosen at the first :meth:`start` and kept for every later one, so clients
    configured with :attr:`url` reconnect to the restarted server.
    """

    def __init__(self, directory: Path, *, appendonly: bool = True) -> None:
        self.directory = Path(directory).resolve()
        self.appendonly = appendonly
        self.log_path = self.directory / "redis.log"
        self._binary = redis_server_binary()
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # -- addresses -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port on 127.0.0.1 (fixed by the first :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("RedisServer has not been started yet")
        return self._port

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://{HOST}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """Process id of the running server, or ``None`` when it is not running."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def running(self) -> bool:
        """Whether the server process is alive (it may have been killed from outside)."""
        return self._proc is not None and self._proc.poll() is None

    def client(self, **options: Any) -> redis.Redis:
        """A new synchronous client for this server (the caller closes it); ``options`` go to
        :class:`redis.Redis` (e.g. ``decode_responses=True``)."""
        return redis.Redis(host=HOST, port=self.port, db=0, **options)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the server and return once it answers PING (its AOF, if any, is loaded).

        The first start picks a free port, trying another when the chosen one is taken before
        Redis binds it. Later starts reuse that port and directory ("Redis restarted").
        """
        if self.running:
            raise RuntimeError(f"redis-server already running (pid {self.pid})")
        self._reap()
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._port is not None:
            # A restart must keep its port. Redis sets SO_REUSEADDR, so TIME_WAIT is no
            # obstacle; only a process that took the port meanwhile is, and that is an error.
            try:
                self._start_on(self._port)
            except _PortInUse:
                raise RuntimeError(
                    f"cannot restart redis-server: port {self._port} is now taken by another "
                    f"process; see {self.log_path}"
                ) from None
            return
        for _ in range(_PORT_ATTEMPTS):
            port = free_port()
            try:
                self._start_on(port)
            except _PortInUse:
                continue
            self._port = port
            return
        raise RuntimeError(f"no free port for redis-server after {_PORT_ATTEMPTS} attempts")

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM (Redis flushes its AOF and exits), wait; SIGKILL if it takes longer than
        ``timeout`` seconds. Does nothing when the server is not running."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._reap()

    def kill(self) -> None:
        """SIGKILL, as in a crash: only what Redis already wrote to its AOF survives."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        self._reap()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals -------------------------------------------------------------------------

    def _argv(self, port: int) -> list[str]:
        return [
            self._binary,
            "--port", str(port),
            "--bind", HOST,
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--logfile", str(self.log_path),
        ]  # fmt: skip

    def _start_on(self, port: int) -> None:
        """Run redis-server on ``port`` and wait for it; raises :class:`_PortInUse`."""
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        proc = subprocess.Popen(
            self._argv(port),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,  # everything goes to --logfile
            stderr=subprocess.DEVNULL,
        )
        self._proc = proc
        try:
            self._wait_ready(proc, port, log_offset)
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self, proc: subprocess.Popen[bytes], port: int, log_offset: int) -> None:
        """Poll until *this* process answers on ``port``, it exits, or the deadline passes."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        # No client-side retries: redis-py's default backoff would make each refused
        # connection cost up to seconds; this loop is the retry.
        client = redis.Redis(
            host=HOST,
            port=port,
            socket_timeout=1.0,
            socket_connect_timeout=1.0,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            while True:
                if proc.poll() is not None:
                    log = self._log_since(log_offset)
                    if _IN_USE in log:
                        raise _PortInUse
                    raise RuntimeError(
                        f"redis-server exited with status {proc.returncode} at start-up; "
                        f"its log ({self.log_path}):\n{log}"
                    )
                # Compare process ids: a port race could put another server behind this port.
                # ConnectionError covers "refused" and Redis's LOADING reply (AOF replay).
                with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                    if client.info("server").get("process_id") == proc.pid:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"redis-server did not answer on {HOST}:{port} within "
                        f"{STARTUP_TIMEOUT}s; its log ({self.log_path}):\n"
                        f"{self._log_since(log_offset)}"
                    )
                time.sleep(_POLL_INTERVAL)
        finally:
            client.close()

    def _log_since(self, offset: int) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                return log.read().decode(errors="replace")
        except FileNotFoundError:
            return "(no log written)"

    def _reap(self) -> None:
        """Wait for an exited (or just killed) process so no zombie or ResourceWarning is left."""
        proc = self._proc
        if proc is not None:
            proc.wait()
            self._proc = None


@contextlib.contextmanager
def running_redis(
    tmp_dir: str | os.PathLike[str], *, appendonly: bool = True
) -> Iterator[RedisServer]:
    """A started :class:`RedisServer` whose data and log live in ``tmp_dir``; always stopped
    at the end of the block, whatever happened inside it."""
    server = RedisServer(Path(tmp_dir), appendonly=appendonly)
    server.start()
    try:
        yield server
    finally:
        server.stop()
