"""``alloy-async bulk`` input handling: bad input never gives a traceback, options are checked
before anything runs, and ``bulk -`` streams (a job written to stdin runs while stdin is open).

End to end in subprocesses against a sandbox subprocess on 127.0.0.1, whose own record
(``/_sandbox/executions``) is the judge of what ran; plus in-process tests of the reader thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple
from urllib.request import urlopen

import pytest

from alloy_async.cli._bulk_input import BadLine, JobReader, parse_line
from alloy_async.models import ExecuteJob
from alloy_async.testing import FakeAlloy
from alloy_async.testing.seed import seed_demo

CLI = [sys.executable, "-m", "alloy_async.cli"]
ENV = {k: v for k, v in os.environ.items() if not k.startswith("ALLOY_")}
API_KEY = "sk_test_fake_alloy_key"


class Sandbox(NamedTuple):
    url: str
    seeded: list[tuple[str, str]]  # (user id, sendgrid credential id)

    def args(self) -> list[str]:
        return ["--base-url", self.url, "--api-key", API_KEY]


@contextlib.contextmanager
def running_sandbox(latency: str = "20ms", users: int = 3) -> Iterator[Sandbox]:
    """``alloy-async sandbox --users N`` in a subprocess; stopped with SIGINT afterwards.

    The one sandbox-process helper of the CLI tests (test_cli, test_kill and test_cli_signals
    use it too). Its stderr goes nowhere: a long run must not fill a pipe nobody reads.
    """
    proc = subprocess.Popen(
        [*CLI, "sandbox", "--users", str(users), "--latency", latency, "--seed", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=ENV,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the first line says where it listens
        assert first.startswith("sandbox listening on http://127.0.0.1:"), first
        url = first.rsplit(" ", 1)[1].strip()
        yield Sandbox(url, seed_demo(FakeAlloy(seed=0), users=users))  # same seed: same ids
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            assert proc.stdout is not None
            proc.stdout.close()


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with running_sandbox() as box:
        yield box


@pytest.fixture(scope="module")
def idle_sandbox() -> Iterator[Sandbox]:
    """One sandbox for the refused runs: nothing may ever be executed on it."""
    with running_sandbox() as box:
        yield box


def executed(url: str) -> Counter[str]:
    """subject -> times the server executed it (the server's own record)."""
    with urlopen(f"{url}/_sandbox/executions", timeout=10) as resp:
        rows: list[dict[str, Any]] = json.loads(resp.read())
    return Counter(str(r["request_body"].get("subject")) for r in rows)


def job(box: Sandbox, n: int, prefix: str = "job", **extra: Any) -> dict[str, Any]:
    user, cred = box.seeded[n % len(box.seeded)]
    return {
        "connectorId": "sendgrid",
        "actionId": "sendEmail",
        "credentialId": cred,
        "userId": user,
        "key": f"{prefix}-{n}",
        "requestBody": {"to": f"c{n}@example.com", "subject": f"{prefix}-{n}"},
        **extra,
    }


def line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()


def run_cli(*args: str, timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, env=ENV, check=False,
        **kwargs,
    )  # fmt: skip


def rows_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Poll ``condition`` (another process's doing) until true, for at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


# -- bad input -----------------------------------------------------------------------------


def hostile_input(box: Sandbox) -> tuple[bytes, dict[int, str], dict[int, str]]:
    """Jobs mixed with every kind of bad line: (bytes, {good line: key}, {bad line: why})."""
    bom = b"\xef\xbb\xbf"
    nested_30 = json.loads("[" * 30 + "]" * 30)
    lines: list[bytes] = [
        bom + line(job(box, 0)),  # 1: a BOM before the first job is not an error
        b"\xff\xfe" + line(job(box, 1)),  # 2: not UTF-8
        line(job(box, 2))[:-2] + b'\xc3"}',  # 3: a truncated UTF-8 sequence in a value
        b"[" * 1000 + b"]" * 1000,  # 4: json.loads raises RecursionError
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,  # 5: far deeper still
        line(job(box, 5, requestBody={**job(box, 5)["requestBody"], "x": nested_30})),  # 6: fine
        b"[1, 2]",  # 7: not an object
        b'"a string"',  # 8
        b"null",  # 9
        line({k: v for k, v in job(box, 9).items() if k != "credentialId"}),  # 10: missing
        line(job(box, 10, bogus=True)),  # 11: unknown field
        line(job(box, 11, connectorId="")),  # 12: empty id
        line(job(box, 12, requestBody={"n": 2**70})),  # 13: beyond 64 bits
        line(job(box, 13))[:-1] + b', "extra": 1}',  # 14: unknown field at the end
        b"{not json",  # 15
        b"",  # 16: blank lines are skipped silently
        b"   \t ",  # 17
        line(job(box, 17)) + b"\r",  # 18: CRLF is fine
        bom + line(job(box, 18)),  # 19: a BOM anywhere but the start is an error
        b'{"connectorId": "sendgrid", "key": "\\ud800"}',  # 20: missing fields, lone surrogate
        line(job(box, 20, key="\ud800")),  # 21: a key JSON cannot carry
        line(job(box, 21)),  # 22, the last line, without a newline
    ]
    good = {1: "job-0", 6: "job-5", 18: "job-17", 22: "job-21"}
    bad = {
        2: "UTF-8",
        3: "UTF-8",
        4: "nested too deeply",
        5: "nested too deeply",
        7: "array",
        8: "string",
        9: "null",
        10: "credential_id",
        11: "bogus",
        12: "connector_id",
        13: "64-bit",
        14: "extra",
        15: "not JSON",
        19: "not JSON",
        20: "action_id",
        21: "surrogates",
    }
    return b"\n".join(lines), good, bad


@pytest.mark.parametrize("source", ["file", "stdin"])
def test_every_bad_line_is_reported_by_number_and_skipped(
    sandbox: Sandbox, tmp_path: Path, source: str
) -> None:
    """Non-UTF-8 bytes, JSON nested 1000 and 100,000 deep, non-objects, missing / unknown /
    empty fields, values JSON cannot send: each is one stderr line naming its line number,
    never a traceback; a leading BOM and CRLF endings are fine; every good line runs once."""
    data, good, bad = hostile_input(sandbox)
    out = tmp_path / "out.jsonl"
    if source == "file":
        jobs = tmp_path / "jobs.jsonl"
        jobs.write_bytes(data)
        proc = run_cli("bulk", str(jobs), "--out", str(out), *sandbox.args())
    else:
        proc = subprocess.run(
            [*CLI, "bulk", "-", "--out", str(out), *sandbox.args()],
            input=data, capture_output=True, timeout=120, env=ENV, check=False,
        )  # fmt: skip
    stderr = proc.stderr if isinstance(proc.stderr, str) else proc.stderr.decode()
    assert "Traceback" not in stderr, stderr
    assert proc.returncode == 1, stderr  # bad lines make the exit code 1
    reported = {
        int(x.split(":", 1)[0].removeprefix("line ")): x
        for x in stderr.splitlines()
        if x.startswith("line ")
    }
    assert set(reported) == set(bad), stderr
    for number, why in bad.items():
        assert why in reported[number], (number, reported[number])
    assert f"{len(bad)} bad line(s) skipped" in stderr
    rows = rows_of(out)
    assert {r["line"]: r["key"] for r in rows} == good
    assert len(rows) == len(good)
    assert executed(sandbox.url) == Counter(dict.fromkeys(good.values(), 1))


def test_duplicate_keys_are_named_by_line_and_run_once(sandbox: Sandbox, tmp_path: Path) -> None:
    """With a checkpoint, a key seen earlier in the run is skipped with its line number."""
    jobs = tmp_path / "jobs.jsonl"
    lines = [line(job(sandbox, n)) for n in range(5)]
    lines.insert(3, line(job(sandbox, 1)))  # line 4 repeats job-1
    jobs.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out.jsonl"
    ckpt = tmp_path / "run.journal"
    proc = run_cli("bulk", str(jobs), "--out", str(out), "--checkpoint", str(ckpt), *sandbox.args())
    assert proc.returncode == 1, proc.stderr
    assert "line 4: duplicate of an earlier job with key job-1, skipped" in proc.stderr
    assert sorted(r["line"] for r in rows_of(out)) == [1, 2, 3, 5, 6]
    assert executed(sandbox.url) == Counter({f"job-{n}": 1 for n in range(5)})


# -- refused before anything runs ----------------------------------------------------------


REFUSALS: dict[str, tuple[list[str], str]] = {
    # name: (arguments after the jobs file, what the one line must say)
    "missing jobs file": (["@missing"], "No such file"),
    "jobs file is a directory": (["@dir"], "directory"),
    "out is a directory": (["--out", "@dir"], "directory"),
    "out in a missing folder": (["--out", "@nofolder/out.jsonl"], "No such file"),
    "out is the jobs file": (["--out", "@jobs"], "jobs file"),
    "checkpoint in a missing folder": (["--checkpoint", "@nofolder/j"], "does not exist"),
    "checkpoint is a directory": (["--checkpoint", "@dir"], "directory"),
    "checkpoint is the out file": (["--checkpoint", "@out"], "--out"),
    "concurrency 0": (["--concurrency", "0"], "--concurrency"),
    "rate 0": (["--rate", "0"], "--rate"),
    "negative rate": (["--rate", "-1"], "--rate"),
    "burst 0": (["--rate", "5", "--burst", "0"], "--burst"),
    "burst without rate": (["--burst", "5"], "--burst"),
    "per-user 0": (["--per-user", "0"], "--per-user"),
    "per-connector 0": (["--per-connector", "0"], "--per-connector"),
    "negative grace": (["--grace", "-1"], "--grace"),
    "checkpoint not a journal": (["--checkpoint", "@garbage"], "journal"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_bad_options_and_files_are_one_line_and_exit_2(
    idle_sandbox: Sandbox, tmp_path: Path, case: str
) -> None:
    """Each refusal is one ``Error:`` line on stderr and exit code 2, checked before anything
    is executed (the server executed nothing) and without a traceback."""
    extra, says = REFUSALS[case]
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_bytes(b"\n".join(line(job(idle_sandbox, n)) for n in range(3)) + b"\n")
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\x00\x01 not a journal at all\n" * 10)
    (tmp_path / "dir").mkdir()
    places = {
        "@missing": str(tmp_path / "missing.jsonl"),
        "@dir": str(tmp_path / "dir"),
        "@nofolder": str(tmp_path / "nofolder"),
        "@jobs": str(jobs),
        "@out": str(tmp_path / "out.jsonl"),
        "@garbage": str(garbage),
    }

    def place(arg: str) -> str:
        for token, path in places.items():
            arg = arg.replace(token, path)
        return arg

    args = [place(a) for a in extra]
    jobs_arg = args.pop(0) if not args[0].startswith("--") else str(jobs)
    if "--out" not in args:
        args += ["--out", str(tmp_path / "out.jsonl")]
    proc = run_cli("bulk", jobs_arg, *args, *idle_sandbox.args())
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    assert says in lines[0], lines[0]
    assert executed(idle_sandbox.url) == Counter(), "a refused run executed something"


# -- bulk - streams --------------------------------------------------------------------------


def test_stdin_jobs_run_while_stdin_stays_open(sandbox: Sandbox, tmp_path: Path) -> None:
    """A job written to ``bulk -`` is executed, and its outcome line written, while stdin is
    still open; a second one too; closing stdin ends the run with exit code 0."""
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen(
        [*CLI, "bulk", "-", "--out", str(out), *sandbox.args()],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    try:
        assert proc.stdin is not None
        for n in range(2):
            proc.stdin.write(line(job(sandbox, n)) + b"\n")
            proc.stdin.flush()
            wait_for(lambda n=n: executed(sandbox.url)[f"job-{n}"] == 1, f"job-{n} executed")
            wait_for(lambda n=n: out.exists() and len(rows_of(out)) == n + 1, "its outcome line")
            assert proc.poll() is None, "bulk ended although stdin is open"
        _, stderr = proc.communicate(timeout=30)  # closes stdin
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 0, stderr.decode()
    assert [(r["line"], r["key"], r["ok"]) for r in rows_of(out)] == [
        (1, "job-0", True),
        (2, "job-1", True),
    ]
    assert executed(sandbox.url) == Counter({"job-0": 1, "job-1": 1})


def test_stdin_open_and_idle_still_stops_on_sigterm(sandbox: Sandbox, tmp_path: Path) -> None:
    """With stdin open and no input coming, SIGTERM ends the run at once (143): the reader
    thread blocked on stdin keeps nothing alive."""
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen(
        [*CLI, "bulk", "-", "--out", str(out), *sandbox.args()],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    try:
        assert proc.stdin is not None
        proc.stdin.write(line(job(sandbox, 0)) + b"\n")
        proc.stdin.flush()
        wait_for(lambda: out.exists() and len(rows_of(out)) == 1, "the first outcome line")
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)  # stdin is still open on our side
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 143, stderr.decode()
    assert "Traceback" not in stderr.decode()


# -- the reader, in process ----------------------------------------------------------------


def test_parse_line_never_raises() -> None:
    """Each kind of bad line is a BadLine with a reason; blank lines are None."""
    good = b'{"connectorId": "c", "actionId": "a", "credentialId": "k"}'
    assert isinstance(parse_line(1, b"\xef\xbb\xbf" + good), ExecuteJob)
    assert isinstance(parse_line(2, b"\xef\xbb\xbf" + good), BadLine)
    assert parse_line(3, b"  \r\n") is None
    for raw in (b"\xff", b"[" * 5000, b"1", b"{}", b'{"x": 1}', b"1" * 5000, b"{", b"nan"):
        assert isinstance(parse_line(4, raw), BadLine), raw


async def test_reader_reads_ahead_a_bounded_amount(tmp_path: Path) -> None:
    """Back-pressure: with nobody consuming, the thread reads at most queue + 1 chunks; then
    every line arrives in order with its number, and the thread ends."""
    path = tmp_path / "jobs.jsonl"
    good = b'{"connectorId": "c", "actionId": "a", "credentialId": "k%d"}'
    path.write_bytes(b"\n".join(good % n if n % 7 else b"{bad" for n in range(2000)))
    fd = os.open(path, os.O_RDONLY)
    reader = JobReader(fd, asyncio.get_running_loop(), close_fd=True, queue_batches=2,
                       chunk_bytes=1024)  # fmt: skip
    try:
        deadline = asyncio.get_running_loop().time() + 10
        while len(reader._batches) < 2:  # both queue slots filled: the thread must wait
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        assert os.lseek(fd, 0, os.SEEK_CUR) <= 3 * 1024
        seen = [item async for item in reader.items()]
    finally:
        reader.close()
    assert not reader.thread.is_alive()
    assert [x.number if isinstance(x, BadLine) else x[0] for x in seen] == list(range(1, 2001))
    assert all(isinstance(x, BadLine) == (i % 7 == 0) for i, x in enumerate(seen))


async def test_reader_skips_an_overlong_line_without_holding_it() -> None:
    """A line longer than the cap is one bad line; the lines around it are read normally."""
    r, w = os.pipe()
    reader = JobReader(r, asyncio.get_running_loop(), close_fd=True, max_line_bytes=100,
                       chunk_bytes=16)  # fmt: skip
    good = b'{"connectorId": "c", "actionId": "a", "credentialId": "k"}\n'
    try:
        with os.fdopen(w, "wb") as pipe:
            pipe.write(good + b"x" * 1000 + b"\n" + good + b"y" * 500)
        seen = [item async for item in reader.items()]
    finally:
        reader.close()
    assert [type(x).__name__ for x in seen] == ["tuple", "BadLine", "tuple", "BadLine"]
    assert isinstance(seen[1], BadLine) and "longer than 100 bytes" in seen[1].message
    assert isinstance(seen[3], BadLine) and seen[3].number == 4


async def test_reader_thread_ends_when_closed_while_the_pipe_stays_open() -> None:
    """close() wakes a thread blocked waiting for input on an open pipe: nothing leaks."""
    r, w = os.pipe()
    reader = JobReader(r, asyncio.get_running_loop(), close_fd=True)
    try:
        os.write(w, b'{"connectorId": "c", "actionId": "a", "credentialId": "k"}\n')
        items = reader.items()
        first = await anext(items)
        assert isinstance(first, tuple) and first[0] == 1
        await items.aclose()
        reader.close()
        assert not reader.thread.is_alive()
    finally:
        reader.close()
        os.close(w)


def test_an_outcome_with_an_integer_past_64_bits_is_written_exactly() -> None:
    """Answers keep big integers exact (issue 10 item 3); the outcome line must too, where
    orjson alone refuses them."""
    from alloy_async.cli._bulk_output import dumps_line

    big = 123456789012345678901234567890
    assert json.loads(dumps_line({"data": {"id": big}, "ok": True})) == {
        "data": {"id": big},
        "ok": True,
    }
