"""The ``bulk`` command's options, and the checks of options and files before anything runs.

Every failed check is a :class:`BulkUsageError`: one line on stderr and exit code 2.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import stat
import sys
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn, TextIO

import attrs
import click

from ..errors import CoordinatorError, InvalidRequestError

__all__ = [
    "BulkOptions",
    "BulkUsageError",
    "DEFAULT_QUEUE",
    "RedisOptions",
    "check_checkpoint",
    "check_numbers",
    "check_redis",
    "check_redis_reachable",
    "check_redis_url",
    "open_input",
    "open_out",
    "run_on_files",
]


class BulkUsageError(click.ClickException):
    """A bad option or an unusable file: one line on stderr and exit code 2, like click's own
    usage errors (but without the usage block)."""

    exit_code = 2


def _usage(message: str) -> NoReturn:
    raise BulkUsageError(message)


@attrs.frozen
class BulkOptions:
    """The bulk command's arguments, as click parsed them."""

    jobs_file: str
    out_path: str
    concurrency: int
    per_user: int | None
    per_connector: int | None
    rate: float | None
    checkpoint: str | None
    grace: float
    ordered: bool
    burst: int | None = None
    validate: bool = False
    dry_run: bool = False


def check_numbers(o: BulkOptions) -> None:
    """The limits and the grace period are numbers the engine accepts."""
    if o.concurrency < 1:
        _usage(f"--concurrency must be at least 1, got {o.concurrency}")
    for name, value in (("--per-user", o.per_user), ("--per-connector", o.per_connector)):
        if value is not None and value < 1:
            _usage(f"{name} must be at least 1, got {value}")
    if o.rate is not None and not (o.rate > 0 and math.isfinite(o.rate)):
        _usage(f"--rate must be a number of requests per second above 0, got {o.rate:g}")
    if o.burst is not None and o.burst < 1:
        _usage(f"--burst must be at least 1, got {o.burst}")
    if o.burst is not None and o.rate is None:
        _usage("--burst goes with --rate (requests per second)")
    if not (o.grace >= 0 and math.isfinite(o.grace)):
        _usage(f"--grace must be a number of seconds, 0 or more, got {o.grace:g}")


#: The workers' queue unless ``--queue`` names another (``bulk --redis`` and ``worker``).
DEFAULT_QUEUE = "alloy-async"
_URL = re.compile(r"(redis|rediss|unix)://", re.IGNORECASE)
_NAMESPACE = re.compile(r"[A-Za-z0-9_.:\-]{1,100}")


@attrs.frozen
class RedisOptions:
    """``bulk``'s ``--redis``, ``--namespace``, ``--queue``, and ``--concurrency`` if given."""

    url: str
    namespace: str
    queue: str
    per_worker: int | None = None


def check_redis_url(url: str) -> None:
    """A ``redis://``, ``rediss://`` or ``unix://`` URL that redis-py can use."""
    if not _URL.match(url):
        _usage("--redis must be a redis://, rediss:// or unix:// URL")
    try:
        from ..distributed._redis import check_url
    except ImportError:
        return  # the command says which extra is missing
    try:
        check_url(url)
    except InvalidRequestError as exc:
        _usage(f"--redis: {exc}")


async def check_redis_reachable(url: str) -> None:
    """Redis answers at the start of a run, or one line and exit code 2 (a wrong password, a
    server that is down): later outages are pauses, this one is a bad option."""
    from ..distributed._redis import ping

    try:
        await ping(url, within=5.0)
    except CoordinatorError as exc:
        _usage(f"--redis: {exc}")


def check_redis(o: BulkOptions, r: RedisOptions) -> None:
    """The options of a run on workers (``--redis``) go together."""
    check_redis_url(r.url)
    if o.checkpoint is not None:
        _usage(
            "--checkpoint cannot be used with --redis: the namespace's journal on Redis is "
            "the checkpoint (rerun with the same --namespace to resume)"
        )
    if o.ordered:
        _usage("--ordered cannot be used with --redis (rows arrive a chunk at a time)")
    if not _NAMESPACE.fullmatch(r.namespace):
        _usage("--namespace must be 1 to 100 letters, digits or _ . : -")
    if not r.queue.strip():
        _usage("--queue must not be empty")


def open_input(path: str) -> tuple[int, bool]:
    """The jobs' file descriptor and whether it is ours to close."""
    if path == "-":
        try:
            fd = sys.stdin.fileno()
            os.fstat(fd)
        except (AttributeError, ValueError, OSError):
            _usage("cannot read the jobs from stdin: it is closed")
        return fd, False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        _usage(f"cannot read the jobs file {path!r}: {exc.strerror or exc}")
    if stat.S_ISDIR(os.fstat(fd).st_mode):
        os.close(fd)
        _usage(f"cannot read the jobs file {path!r}: it is a directory")
    return fd, True


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist yet
        return os.path.realpath(a) == os.path.realpath(b)


def check_checkpoint(path: str, o: BulkOptions) -> None:
    """The journal path is a writable file in an existing folder, neither input nor output."""
    if os.path.isdir(path):
        _usage(f"--checkpoint {path!r} is a directory; give a file path")
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        _usage(f"--checkpoint {path!r}: the folder {folder!r} does not exist")
    target, mode = (path, os.R_OK | os.W_OK) if os.path.exists(path) else (folder, os.W_OK)
    if not os.access(target, mode):
        _usage(f"--checkpoint {path!r} is not writable")
    for name, other in (("the jobs file", o.jobs_file), ("--out", o.out_path)):
        if other != "-" and _same_file(path, other):
            _usage(f"--checkpoint {path!r} is the same file as {name}")


def open_out(path: str, jobs_file: str) -> TextIO:
    """The outcomes' stream: stdout for ``-``, else the file opened for appending."""
    if path == "-":
        return sys.stdout
    if os.path.isdir(path):
        _usage(f"cannot write --out {path!r}: it is a directory")
    if jobs_file != "-" and _same_file(path, jobs_file):
        _usage(f"--out {path!r} is the jobs file: the outcomes would be read as jobs")
    try:
        return open(path, "a", encoding="utf-8")
    except OSError as exc:
        _usage(f"cannot write --out {path!r}: {exc.strerror or exc}")


def run_on_files(
    o: BulkOptions,
    main: Callable[[int, bool, TextIO], Coroutine[Any, Any, int]],
    *,
    check: Callable[[], None] = lambda: None,
) -> int:
    """Open the jobs (``open_input``) and ``--out``, run ``main(fd, close_fd, out)`` in a new
    event loop and return its exit code; an :class:`AlloyError` becomes one line on stderr.
    ``check`` runs once the input is open (its usage errors close it again)."""
    from ..errors import AlloyError

    fd, close_fd = open_input(o.jobs_file)
    try:
        check()
        out = open_out(o.out_path, o.jobs_file)
    except BaseException:
        if close_fd:
            os.close(fd)
        raise
    try:
        return asyncio.run(main(fd, close_fd, out))
    except AlloyError as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
    finally:
        if out is not sys.stdout:
            out.close()
