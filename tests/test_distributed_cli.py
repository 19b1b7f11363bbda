"""Issue 12, item 2: ``alloy-async worker`` processes and the ``alloy-async bulk --redis`` driver.

Everything is real: a ``redis-server`` of our own on 127.0.0.1 (tests/redis_server.py), a
sandbox subprocess whose ``/_sandbox/executions`` is the judge of what ran, workers and the
driver as subprocesses of the CLI. Workers use a 2 s ``--idle-timeout`` so that a SIGKILLed
worker's chunks go to the other one within seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import pytest
from bounds import until
from redis_server import RedisServer, running_redis
from test_cli_bulk import API_KEY, CLI, ENV, Sandbox, running_sandbox

from alloy_async.cli._bulk_output import keys_in_out

N_JOBS = 600


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    # 50 ms a call: a run of 600 jobs on two workers lasts long enough to kill one mid-run.
    with running_sandbox(latency="50ms", users=6) as box:
        yield box


class Workers:
    """Worker subprocesses on one Redis and sandbox; each is stopped (SIGTERM) at the end."""

    def __init__(self, redis_url: str, box: Sandbox, logs: Path) -> None:
        self.redis_url, self.box, self.logs = redis_url, box, logs
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, *extra: str, concurrency: int = 8) -> subprocess.Popen[str]:
        err = (self.logs / f"worker{len(self.procs)}.err").open("w")
        with err:
            proc = subprocess.Popen(
                [
                    *CLI,
                    "worker",
                    "--redis",
                    self.redis_url,
                    *self.box.args(),
                    "--concurrency",
                    str(concurrency),
                    "--idle-timeout",
                    "2",
                    *extra,
                ],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env=ENV,
            )
        self.procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the worker listens (or exits)
        assert line.strip() == "worker ready", (line, self.log(len(self.procs) - 1))
        return proc

    def log(self, i: int) -> str:
        return (self.logs / f"worker{i}.err").read_text()

    def stop(self) -> list[int | None]:
        """SIGTERM each live worker; their exit codes (None: was killed before)."""
        codes: list[int | None] = []
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            killed = proc.returncode is not None and proc.returncode < 0
            try:
                code = proc.wait(timeout=20)
            finally:
                if proc.poll() is None:  # hung on SIGTERM: the trap this guards against
                    proc.kill()
                    proc.wait(timeout=10)
                assert proc.stdout is not None
                proc.stdout.close()
            codes.append(None if killed else code)
        return codes


@pytest.fixture
def workers(redis_server: RedisServer, sandbox: Sandbox, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(redis_server.url, sandbox, tmp_path)
    try:
        yield pool
    finally:
        pool.stop()


def write_jobs(path: Path, box: Sandbox, tag: str, n: int = N_JOBS) -> set[str]:
    with path.open("w") as f:
        for i in range(n):
            user, cred = box.seeded[i % len(box.seeded)]
            job = {
                "connectorId": "sendgrid",
                "actionId": "sendEmail",
                "credentialId": cred,
                "userId": user,
                "key": f"{tag}-{i}",
                "requestBody": {"to": f"c{i}@example.com", "subject": f"{tag}-{i}"},
            }
            f.write(json.dumps(job) + "\n")
    return {f"{tag}-{i}" for i in range(n)}


def driver(
    redis_url: str, jobs: Path, out: Path, namespace: str, *extra: str
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, "bulk", str(jobs), "--out", str(out), "--redis", redis_url,
         "--namespace", namespace, *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )  # fmt: skip


def launch(
    workers: Workers, redis_url: str, tmp_path: Path, tag: str, *extra: str, n: int = N_JOBS
) -> tuple[Path, Path, set[str], subprocess.Popen[str]]:
    """Two workers and a driver running ``n`` jobs tagged ``tag``: (jobs, out, keys, driver)."""
    workers.start()
    workers.start()
    jobs, out = tmp_path / "jobs.jsonl", tmp_path / "out.jsonl"
    keys = write_jobs(jobs, workers.box, tag, n)
    return jobs, out, keys, driver(redis_url, jobs, out, tag, *extra)


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def executed(box: Sandbox, tag: str) -> Counter[str]:
    """subject -> times the sandbox executed it (its own record), for this test's jobs."""
    with urlopen(f"{box.url}/_sandbox/executions", timeout=30) as resp:
        rows: list[dict[str, Any]] = json.loads(resp.read())
    subjects = (str(r["request_body"].get("subject")) for r in rows)
    return Counter(s for s in subjects if s.startswith(f"{tag}-"))


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in path.read_bytes().splitlines()] if path.exists() else []


def written(path: Path) -> int:
    """Complete lines in ``path`` so far (the driver may be writing the next ones)."""
    return path.read_bytes().count(b"\n") if path.exists() else 0


def wait_for(what: str, condition: Callable[[], bool], timeout: float = 60) -> None:
    """Poll ``condition`` until it holds (a file or a server another process writes: there is
    no event to wait on), failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def one_line_per_job(rows: list[dict[str, Any]], keys: set[str]) -> None:
    per_key = Counter(r["key"] for r in rows)
    assert set(per_key) == keys, "a job has no outcome line"
    assert max(per_key.values()) == 1, "a job has two outcome lines"


def test_two_workers_run_every_job_once(
    workers: Workers, sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    _, out, keys, run = launch(workers, redis_server.url, tmp_path, "two")
    code, err = finish(run)
    assert code == 0, err
    rows = lines(out)
    one_line_per_job(rows, keys)
    assert all(r["ok"] for r in rows), [r for r in rows if not r["ok"]][:3]
    assert sorted(r["line"] for r in rows) == list(range(1, N_JOBS + 1))
    done = executed(sandbox, "two")
    assert set(done) == keys and max(done.values()) == 1
    assert workers.stop() == [0, 0]  # SIGTERM: both exit promptly and cleanly
    both = workers.log(0) + workers.log(1)
    assert API_KEY not in both and redis_server.url not in both


def test_sigkill_a_worker_mid_run_loses_nothing_and_sends_nothing_twice(
    workers: Workers, sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Catches: a victim killed idle (before the run, after its chunks): then nothing is proved.

    The kill must find jobs in the victim's hands: they come back outcome-unknown."""
    victim = workers.start()
    workers.start()
    jobs, out = tmp_path / "jobs.jsonl", tmp_path / "out.jsonl"
    keys = write_jobs(jobs, sandbox, "kill")
    run = driver(redis_server.url, jobs, out, "kill")
    try:
        wait_for("30 % of the lines", lambda: written(out) >= N_JOBS * 0.3)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        assert written(out) < N_JOBS, "the run finished before the kill"
        code, err = finish(run)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert code in (0, 1), err  # 1: jobs in flight at the kill are outcome-unknown
    rows = lines(out)
    one_line_per_job(rows, keys)
    done = executed(sandbox, "kill")
    assert max(done.values()) == 1, [k for k, n in done.items() if n > 1][:10]
    for row in rows:
        if row["ok"]:
            assert done[row["key"]] == 1, row
        else:  # never a failure: only outcome-unknown (what the dead worker had in flight)
            assert row["error"]["type"] == "OutcomeUnknownError", row
    # Outcome-unknown only in the chunks the victim held (two at a time, 50 jobs each): its
    # calls in flight, and outcomes it had not yet written to the journal when it died.
    unknown = [r for r in rows if not r["ok"]]
    assert unknown, "the victim had nothing in flight when it was killed"
    assert len({(r["line"] - 1) // 50 for r in unknown}) <= 2, unknown
    assert code == 1, err


def test_redis_killed_and_restarted_mid_run_is_a_pause_and_nothing_runs_twice(
    workers: Workers, sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    _, out, keys, run = launch(workers, redis_server.url, tmp_path, "restart")
    try:
        wait_for("30 % of the lines", lambda: written(out) >= N_JOBS * 0.3)
        redis_server.kill()  # SIGKILL: no clean shutdown; the AOF keeps what was acked
        assert written(out) < N_JOBS, "the run finished before the restart"
        redis_server.start()  # the same port: every client reconnects on its own
        code, err = finish(run)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    rows = lines(out)
    one_line_per_job(rows, keys)
    done = executed(sandbox, "restart")
    assert max(done.values()) == 1, [k for k, n in done.items() if n > 1][:10]
    for row in rows:  # sent once and succeeded, or in flight at the kill: outcome unknown
        if row["ok"]:
            assert done[row["key"]] == 1, row
        else:
            assert row["error"]["type"] == "OutcomeUnknownError", row
    assert (code == 1) == any(not r["ok"] for r in rows), err
    assert workers.stop() == [0, 0]  # both workers lived through it


def test_a_chunk_lost_while_other_chunks_keep_the_queue_busy_is_sent_again(
    workers: Workers, sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    """A chunk whose stream entry left the queue without a result (acked, or trimmed) is sent
    again even while the queue is busy with other chunks (here: this run's other chunk, with
    no worker yet), instead of the driver waiting for ever."""
    jobs, out = tmp_path / "jobs.jsonl", tmp_path / "out.jsonl"
    keys = write_jobs(jobs, sandbox, "lost", n=100)  # two chunks of 50
    run = driver(redis_server.url, jobs, out, "lost")
    with redis_server.client() as raw:
        try:
            wait_for("both chunks queued", lambda: raw.xlen("alloy-async") == 2)
            first = raw.xrange("alloy-async")[0][0]
            raw.xdel("alloy-async", first)  # lost: gone from the queue, no result
            # The driver looks after 15 s without a row; the other chunk keeps it "busy".
            wait_for(
                "the lost chunk sent again",
                lambda: raw.xlen("alloy-async") == 2 and raw.xrange("alloy-async")[0][0] != first,
            )
            workers.start()
            code, err = finish(run)
        finally:
            if run.poll() is None:
                run.kill()
                run.communicate()
    assert code == 0, err
    assert "sending them again" in err
    one_line_per_job(lines(out), keys)
    done = executed(sandbox, "lost")
    assert set(done) == keys and max(done.values()) == 1


def test_limits_hold_across_workers(
    workers: Workers, sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    _, out, keys, run = launch(
        workers, redis_server.url, tmp_path, "caps", "--per-user", "1", "--concurrency", "2", n=200
    )
    code, err = finish(run)
    assert code == 0, err
    one_line_per_job(lines(out), keys)
    with urlopen(f"{sandbox.url}/_sandbox/stats", timeout=30) as resp:
        stats = json.loads(resp.read())
    assert stats["peak_in_flight_per_user"] == 1, stats  # one call per user across both workers
    assert 2 <= stats["peak_in_flight"] <= 4, stats  # this run's 2 calls in each of the 2 workers


def test_rerun_of_a_finished_namespace_sends_nothing(
    workers: Workers, sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    jobs, out, keys, run = launch(workers, redis_server.url, tmp_path, "again")
    code, err = finish(run)
    assert code == 0, err
    first = out.read_bytes()
    before = executed(sandbox, "again")
    assert sum(before.values()) == N_JOBS

    # Same --out: every key already has its line; nothing is sent, nothing written.
    code, err = finish(driver(redis_server.url, jobs, out, "again"))
    assert code == 0, err
    assert f"{N_JOBS} already in --out" in err
    assert out.read_bytes() == first

    # A new --out: the journal answers each job with its stored row; nothing runs again.
    fresh = tmp_path / "fresh.jsonl"
    code, err = finish(driver(redis_server.url, jobs, fresh, "again"))
    assert code == 0, err
    rows = lines(fresh)
    one_line_per_job(rows, keys)
    by_key = {r["key"]: r for r in lines(out)}
    for row in rows:
        assert row["ok"] and row["requestId"] == by_key[row["key"]]["requestId"], row
        assert row["line"] == by_key[row["key"]]["line"]
    assert executed(sandbox, "again") == before


def test_driver_resumes_after_sigint_and_skips_bad_and_duplicate_lines(
    workers: Workers, sandbox: Sandbox, redis_server: RedisServer, tmp_path: Path
) -> None:
    workers.start(concurrency=2)
    jobs, out = tmp_path / "jobs.jsonl", tmp_path / "out.jsonl"
    keys = write_jobs(jobs, sandbox, "int", n=300)
    text = jobs.read_text().splitlines(keepends=True)
    jobs.write_text("".join([text[0], text[0], *text[1:], "not json\n"]))  # line 2: a duplicate
    # Every chunk is sent at once (the window is larger); a short grace leaves most unwritten.
    run = driver(redis_server.url, jobs, out, "int", "--grace", "0.5")
    try:
        wait_for("some lines", lambda: written(out) >= 50)
        run.send_signal(signal.SIGINT)
        code, err = finish(run)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert code == 130, err
    assert "line 2: duplicate of an earlier job with key int-0, skipped" in err
    partial = lines(out)
    assert 50 <= len(partial) < 300
    assert len({r["key"] for r in partial}) == len(partial)

    # Lines 1 and 2 (its duplicate) both count as already in --out when int-0's line was
    # written before the stop; whether it was depends on which chunk finished first.
    done, _ = keys_in_out(str(out))
    already = len(done) + ("int-0" in done)
    code, err = finish(driver(redis_server.url, jobs, out, "int"))
    assert code == 1, err  # the bad line
    assert "line 302: not JSON" in err and f"{already} already in --out" in err
    one_line_per_job(lines(out), keys)
    done = executed(sandbox, "int")
    assert set(done) == keys and max(done.values()) == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--redis", "redis://127.0.0.1:1/0"], "--redis and --namespace go together"),
        (["--namespace", "x"], "--redis and --namespace go together"),
        (["--redis", "http://x", "--namespace", "x"], "redis://, rediss:// or unix://"),
        (["--redis", "redis://127.0.0.1:1/0", "--namespace", "a b"], "--namespace must be"),
        (
            ["--redis", "redis://127.0.0.1:1/0", "--namespace", "x", "--checkpoint", "c.db"],
            "--checkpoint cannot be used with --redis",
        ),
    ],
)
def test_driver_usage_errors_exit_2(tmp_path: Path, extra: list[str], message: str) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("")
    done = subprocess.run(
        [*CLI, "bulk", str(jobs), "--out", str(tmp_path / "out.jsonl"), *extra],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert not (tmp_path / "c.db").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--redis", "http://x"], "redis://, rediss:// or unix://"),
        (["--redis", "redis://127.0.0.1:1/0", "--concurrency", "0"], "--concurrency must be"),
        (["--redis", "redis://127.0.0.1:1/0", "--idle-timeout", "0.5"], "--idle-timeout must"),
    ],
)
def test_worker_usage_errors_exit_2(extra: list[str], message: str) -> None:
    done = subprocess.run(
        [*CLI, "worker", "--api-key", API_KEY, *extra],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "worker ready" not in done.stdout


def test_unreachable_redis_is_one_clear_error(tmp_path: Path) -> None:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connections are refused
        jobs = tmp_path / "jobs.jsonl"
        jobs.write_text("")
        done = subprocess.run(
            [*CLI, "bulk", str(jobs), "--out", str(tmp_path / "o.jsonl"),
             "--redis", f"redis://:hunter2@127.0.0.1:{port}/0", "--namespace", "x"],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=60,
        )  # fmt: skip
    # A Redis unusable at the start is a bad option: exit 2 (issue 22, item 8)
    assert done.returncode == 2, done.stderr
    assert "--redis" in done.stderr and "cannot be used" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert "hunter2" not in done.stderr


# -- the broker's two fixes, in-process on a real Redis ----------------------------------------


async def test_a_dead_consumers_chunk_is_reclaimed_without_new_traffic(
    redis_server: RedisServer,
) -> None:
    """The stock listen() reclaims only after new messages arrive; ours on every pass."""
    import redis.asyncio as aioredis

    from alloy_async.distributed.taskiq import make_broker

    raw = aioredis.Redis.from_url(redis_server.url)
    survivor = make_broker(redis_server.url, queue="q1", idle_timeout=0.3)
    await survivor.startup()
    stream = survivor.listen()
    try:
        await raw.xadd("q1", {b"data": b"chunk"})
        assert await raw.xreadgroup("q1", "dead", {"q1": ">"}, count=1)  # taken, never acked
        loop = asyncio.get_running_loop()
        start = loop.time()
        message = await asyncio.wait_for(anext(stream), 10)  # no new message is ever sent
        assert message.data == b"chunk"
        assert loop.time() - start >= 0.3  # not before idle_timeout (wait_for bounds the rest)
        await message.ack()
        assert await raw.xlen("q1") == 0  # an ack deletes the entry: the stream never grows
    finally:
        await stream.aclose()
        await survivor.shutdown()
        await raw.aclose()


async def test_a_long_chunk_stays_with_its_live_worker(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Catches: a heartbeat that does not renew what its worker holds (the chunk moves).

    A chunk held far longer than idle_timeout is renewed by its worker's heartbeat: another
    broker reclaiming all along never gets it; once the worker is gone (no ack, no
    heartbeat), that broker does."""
    import redis.asyncio as aioredis

    from alloy_async.distributed.taskiq import make_broker

    idle = 1.0  # seconds: the heartbeat renews every idle / 3
    bound = 30 * idle  # generous: only a broken run waits this long
    loop = asyncio.get_running_loop()
    raw = aioredis.Redis.from_url(redis_server.url)
    holder = make_broker(redis_server.url, queue="q2", idle_timeout=idle)
    holder.is_worker_process = True  # its startup starts the heartbeat
    other = make_broker(redis_server.url, queue="q2", idle_timeout=idle)
    other.block = 100  # ms per empty read: a reclaim pass every ~0.1 s (taskiq's default: 2 s)
    passes: list[float] = []  # when each of other's reclaim passes began (loop clock)
    read_batch = other._read_batch

    async def counted(conn: Any) -> list[tuple[bytes, dict[bytes, bytes]]]:
        began = loop.time()
        batch = await read_batch(conn)
        passes.append(began)
        return batch

    monkeypatch.setattr(other, "_read_batch", counted)
    await holder.startup()
    await other.startup()
    held, stream = holder.listen(), other.listen()
    grab: asyncio.Task[Any] | None = None
    try:
        await raw.xadd("q2", {b"data": b"long"})
        assert (await asyncio.wait_for(anext(held), bound)).data == b"long"
        delivered = loop.time()
        grab = asyncio.create_task(anext(stream))
        # Passes that began over two idle timeouts after the delivery: without renewals the
        # chunk is idle past idle_timeout by then, and the first such pass takes it.
        await until(
            lambda: grab.done() or sum(t - delivered > 2 * idle for t in passes) >= 3,
            "three late reclaim passes",
            bound,
        )
        assert not grab.done(), "a live worker's chunk went to another broker"
        # The server's record: still the holder's, delivered once, renewed within idle_timeout.
        (entry,) = await raw.xpending_range("q2", "q2", "-", "+", 10)
        assert entry["consumer"].decode() == holder.consumer_name
        assert entry["times_delivered"] == 1
        assert entry["time_since_delivered"] < idle * 1000
        await held.aclose()
        await holder.shutdown()  # stops the heartbeat, keeps its unacked chunk pending
        assert (await asyncio.wait_for(grab, bound)).data == b"long"
    finally:
        if grab is not None and not grab.done():
            grab.cancel()
            await asyncio.gather(grab, return_exceptions=True)
        await stream.aclose()
        await held.aclose()
        await holder.shutdown()
        await other.shutdown()
        await raw.aclose()


async def test_a_chunk_whose_result_cannot_be_stored_is_not_acked_and_goes_elsewhere(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """taskiq acks a message even when storing its result failed; ours then leaves it
    pending and stops renewing it, so another worker runs it again (the journal answers)
    instead of the driver waiting for a result that will never come."""
    import redis.asyncio as aioredis
    from taskiq.result import TaskiqResult

    from alloy_async import CoordinatorError
    from alloy_async.distributed import taskiq as tq

    monkeypatch.setattr(tq, "UNAVAILABLE", 0.3)  # give up storing after 0.3 s, not 30 s
    holder = tq.make_broker(redis_server.url, queue="q3", idle_timeout=0.3)
    await holder.startup()
    raw = aioredis.Redis.from_url(redis_server.url)
    held = holder.listen()
    try:
        await raw.xadd("q3", {b"data": b"chunk"})
        message = await asyncio.wait_for(anext(held), 10)
        assert holder.held
        redis_server.kill()  # the result cannot be stored
        result: TaskiqResult[Any] = TaskiqResult(is_err=False, return_value=[], execution_time=0.0)

        async def callback() -> None:  # as taskiq's receiver runs one: its own task
            with pytest.raises(CoordinatorError):
                await holder.result_backend.set_result("t1", result)
            await asyncio.to_thread(redis_server.start)
            await message.ack()  # Redis is back: acking now would lose the chunk

        await asyncio.create_task(callback())
        assert not holder.held  # no longer renewed
        async with aioredis.Redis.from_url(redis_server.url) as fresh:  # raw's socket died
            assert await fresh.xlen("q3") == 1  # not acked (an ack deletes the entry)
        other = tq.make_broker(redis_server.url, queue="q3", idle_timeout=0.3)
        await other.startup()
        taken = other.listen()
        try:
            assert (await asyncio.wait_for(anext(taken), 10)).data == b"chunk"
        finally:
            await taken.aclose()
            await other.shutdown()
    finally:
        await held.aclose()
        await holder.shutdown()
        await raw.aclose()


async def test_a_long_lived_worker_closes_the_coordinators_of_runs_gone_idle(
    redis_server: RedisServer,
) -> None:
    """One coordinator (a Redis client, a subscriber, a writer, a renewer) per run a worker
    has served would pile up in a worker that lives for weeks: idle ones beyond KEEP_IDLE are
    closed, least recently used first, and a run that comes back gets a new one."""
    from test_redis_coordinator import _fake

    from alloy_async.distributed._runner import KEEP_IDLE, ChunkRunner

    fake, user, cred = _fake()
    runner = ChunkRunner(redis_server.url, fake.client, concurrency=4)
    try:
        namespaces = [f"run{i}" for i in range(KEEP_IDLE + 3)]
        for ns in namespaces:
            job = {
                "connectorId": "slack",
                "actionId": "chat_postMessage",
                "credentialId": cred,
                "userId": user,
                "key": f"{ns}-k",
                "requestBody": {"channel": "C", "text": ns},
            }
            rows = await runner.run(ns, [job], {})
            assert rows[0]["ok"], rows
        open_now = [ns for ns, _ in runner._coords]
        assert open_now == namespaces[-KEEP_IDLE:]  # the most recent ones, in use order
        rows = await runner.run(namespaces[0], [job | {"key": "again"}], {})  # comes back
        assert rows[0]["ok"] and len(runner._coords) == KEEP_IDLE
        assert [ns for ns, _ in runner._coords][-1] == namespaces[0]
    finally:
        await runner.aclose()
    assert len(fake.executions) == len(namespaces) + 1
