"""``alloy-async sandbox`` as a user starts it: what its stats count and where its ids come from."""

from __future__ import annotations

import json
import signal
import subprocess
from urllib.request import Request, urlopen

from test_cli_bulk import API_KEY, CLI, ENV

HEADERS = {"Authorization": f"Bearer {API_KEY}", "x-api-version": "2025-09"}


def _start(*extra: str) -> tuple[str, str]:
    """Start a sandbox, send it one request, read its stats; (its demo ids line, stats)."""
    proc = subprocess.Popen(
        [*CLI, "sandbox", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().rsplit(" ", 1)[1].strip()
        proc.stdout.readline()  # ALLOY_BASE_URL=... ALLOY_API_KEY=...
        ids = proc.stdout.readline().strip()
        users = Request(f"{url}/users", headers=HEADERS)
        with urlopen(users, timeout=30) as resp:
            assert resp.status == 200
        with urlopen(f"{url}/_sandbox/stats", timeout=30) as resp:
            stats = json.loads(resp.read())
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert stats["requests"] == 1, stats
    return ids, err


def test_stats_count_requests_and_a_restart_hands_out_new_ids() -> None:
    """Catches: ``requests: 0`` from the CLI sandbox (it counted a request log that is off);
    a fixed default seed (a restarted sandbox handed out the previous one's ids: 860 confusing
    403s for a driver that kept the old ones); a ``--seed`` that does not give the same ids."""
    first, said = _start()
    second, _ = _start()
    assert first.startswith("demo user ") and first != second
    seed = said.split("sandbox seed ", 1)[1].split()[0]
    again, _ = _start("--seed", seed)
    assert again == first


def test_faults_help_names_every_kind() -> None:
    """Catches: a help text that lists some fault kinds (users guessed the others)."""
    out = subprocess.run(
        [*CLI, "sandbox", "--help"], capture_output=True, text=True, env=ENV, check=True
    ).stdout
    text = " ".join(out.split())
    for kind in ("HTTP status", "reset", "reset_before", "reset_after", "slow"):
        assert kind in text, kind
