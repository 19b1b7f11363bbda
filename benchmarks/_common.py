"""Shared pieces of the benchmarks: the server subprocesses (sandbox, light server), the execute
call, timing helpers."""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

EXECUTE_PATH = "/connectors/sendgrid/actions/sendEmail/execute"


@attrs.frozen
class Sandbox:
    """A server (the sandbox or the light server) running in its own process (so its CPU is not
    the client's)."""

    url: str
    api_key: str
    user_id: str
    credential_id: str
    pid: int

    def cpu_seconds(self) -> float:
        """User + system CPU the server process has used so far (Linux /proc)."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks


@contextlib.contextmanager
def sandbox_process() -> Iterator[Sandbox]:
    """``python -m alloy_async.cli sandbox --port 0`` in a subprocess, seeded with a demo user."""
    with _server_process("alloy_async.cli", "sandbox", "--port", "0") as sb:
        yield sb


@contextlib.contextmanager
def light_process() -> Iterator[Sandbox]:
    """``python -m benchmarks.light_server --port 0`` in a subprocess: canned execute answers,
    no simulator, so the client's own cost shows in wall-clock figures. Its key and ids are made
    up (nothing checks them)."""
    with _server_process("benchmarks.light_server", "--port", "0") as sb:
        yield sb


@contextlib.contextmanager
def _server_process(module: str, *args: str) -> Iterator[Sandbox]:
    """``python -m <module> <args>``, which prints the sandbox's three-line banner, then serves
    until SIGTERM."""
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=Path(__file__).parent.parent,  # so ``benchmarks.*`` imports from any directory
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        url = re.search(r"(http://\S+)", lines[0])
        key = re.search(r"ALLOY_API_KEY=(\S+)", lines[1])
        demo = re.search(r"demo user (\S+) has sendgrid credential (\S+)", lines[2])
        if not (url and key and demo):
            raise RuntimeError(f"unexpected banner from {module}: {lines!r}")
        yield Sandbox(url.group(1), key.group(1), demo.group(1), demo.group(2), proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_json(module: str, *args: str) -> dict[str, Any]:
    """``python -m <module> <args>`` in a fresh process (so its peak RSS is its own); the last
    line of its output is a JSON object."""
    out = subprocess.run(
        [sys.executable, "-m", module, *args],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent.parent,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def cpu_now() -> float:
    """This process's CPU seconds (user + system, all threads)."""
    return time.process_time()


def peak_rss_mib() -> float:
    """This process's peak RSS in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def execute_body(sb: Sandbox, i: int) -> dict[str, Any]:
    """The body of the i-th execute call: the same for every client under test."""
    return {"credentialId": sb.credential_id, "requestBody": {"to": f"u{i}@x.io", "subject": "hi"}}
