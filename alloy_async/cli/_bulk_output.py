"""The ``bulk`` command's output: one JSON line per outcome, and settling a killed run.

Each line is written and flushed before the next outcome is asked for, so an outcome's line
always exists before the engine journals it (see :func:`write_outcomes`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from typing import Any, TextIO

import attrs
import click
import orjson
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..engine import BulkRun
from ..engine.journal import SqliteJournal, State
from ..engine.rows import dumps_line, outcome_json
from ..errors import JournalError
from ..models import ExecuteJob
from ._bulk_input import BadLine
from ._bulk_options import BulkOptions, BulkUsageError
from ._common import err_console, say

__all__ = [
    "Tally",
    "dumps_line",
    "keys_in_out",
    "outcome_json",
    "say_quarantined",
    "write_outcomes",
    "write_row",
]


@attrs.define
class Tally:
    """What a bulk run counts and says on stderr besides the engine's report: bad lines and
    duplicates (both drivers); the rows written, by kind (``bulk --redis``, whose rows come
    from the workers)."""

    ok: int = 0
    failed: int = 0
    unknown: int = 0
    already: int = 0  # keys --out already has a line for: skipped
    duplicates: int = 0
    bad: int = 0
    lost_jobs: int = 0  # in chunks whose task failed: no line written
    quarantined: int = 0  # failed without being sent: their credential is quarantined
    quarantined_credentials: dict[str, None] = attrs.Factory(dict)

    @property
    def written(self) -> int:
        """Rows written to --out."""
        return self.ok + self.failed + self.unknown

    def bad_line(self, item: BadLine) -> None:
        """Count an input line that is not a job, and say which and why."""
        self.bad += 1
        say(f"line {item.number}: {item.message}", "red")

    def duplicate(self, where: str, key: str) -> None:
        """Count a job whose key an earlier job of the run had (``where``: its line)."""
        self.duplicates += 1
        say(f"{where}: duplicate of an earlier job with key {key}, skipped", "red")


def say_quarantined(jobs: int, credentials: Iterable[str], rerun: str) -> None:
    """Say apart which jobs a quarantine held back, and how to send them (``rerun``: the
    options a rerun needs)."""
    say(
        f"{jobs} job(s) not sent: their credential was refused by the third party (401/403) "
        f"earlier in the run ({', '.join(credentials)}); ask those users to reconnect, then "
        f"rerun{rerun}",
        "yellow",
    )


async def write_outcomes(
    run: BulkRun,
    out: TextIO,
    lines_of: dict[int, tuple[int, ExecuteJob]],
    opts: BulkOptions,
) -> None:
    """Write one line per outcome, flushed before the next outcome is asked for: the engine
    journals an outcome when the next one is asked for, so its line always exists first."""
    progress = (
        Progress(
            TextColumn("[bold]bulk"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
        )
        if err_console.is_terminal
        else None
    )
    where = "stdout" if opts.out_path == "-" else repr(opts.out_path)
    with progress if progress is not None else contextlib.nullcontext():
        task = progress.add_task("jobs", total=None) if progress is not None else None
        opened = False
        try:
            async with run:  # opens and locks the journal before anything is sent
                opened = True
                # No await between opening and this: no job has been looked up yet.
                settled = _settle(run, opts.out_path)
                if settled:
                    say(
                        f"{len(settled)} job(s) an earlier run wrote to --out but did not "
                        "journal before it stopped: taken as done, not reported again"
                    )
                async for outcome in run:
                    entry = lines_of.pop(id(outcome.job), None)
                    row = outcome_json(outcome, entry[0] if entry is not None else None)
                    write_row(out, row, where, "; stopped (jobs in flight were given up)")
                    if progress is not None and task is not None:
                        progress.advance(task)
        except JournalError as exc:
            if opened:  # failed mid-run: the engine stopped; not a usage error
                raise
            await run.aclose()
            # In use by another run (the message names it), or a file that is not a journal.
            raise BulkUsageError(str(exc)) from None


def write_row(out: TextIO, row: dict[str, Any], where: str, then: str = "") -> None:
    """Write and flush one outcome line; a failed write is one clear error (``then``: what
    that means for the run)."""
    try:
        out.write(dumps_line(row) + "\n")
        out.flush()
    except OSError as exc:
        raise click.ClickException(
            f"writing the outcomes to {where} failed: {exc.strerror or exc}{then}"
        ) from None


def _settle(run: BulkRun, out_path: str) -> set[str]:
    """Journal the outcomes an earlier, killed run wrote to ``--out`` but did not journal.

    The line is written before the journal entry (so no outcome is ever lost); a process
    killed between the two leaves an intent without an outcome, which the engine would report
    a second time, as outcome-unknown. The journal lists those keys (few: the calls in flight
    and the last outcomes at the kill); the ``--out`` file settles the ones it has a line for.
    Jobs whose line says the server did not act (429, 503, no connection) are forgotten, so
    the rerun sends them, as it would had the journal caught up.
    """
    journal = run.journal
    if out_path == "-" or not isinstance(journal, SqliteJournal):
        return set()
    dangling = set(journal.dangling())
    if not dangling:
        return set()
    found: dict[str, State | None] = {}
    with contextlib.suppress(FileNotFoundError), open(out_path, "rb") as lines:
        for raw in lines:
            try:
                row = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue  # a torn last line
            key = row.get("key") if isinstance(row, dict) else None
            if isinstance(key, str) and key in dangling:
                found[key] = _settled_state(row)  # the last line of a key wins
    for key, state in found.items():
        if state is None:
            journal.forget(key)
        else:
            journal.settle(key, state)
    return set(found)


#: Error types of a job the server never acted on (a rerun sends it again).
_NOT_HANDLED = frozenset(
    {
        "RateLimitError",
        "APIConnectionError",
        "APITimeoutError",
        "CredentialQuarantinedError",
        "UnusableSchemaError",
    }
)


def _settled_state(row: dict[str, Any]) -> State | None:
    if row.get("ok") is True:
        return "succeeded"
    error = row.get("error")
    if not isinstance(error, dict):
        return None
    if error.get("type") == "OutcomeUnknownError":
        return "outcome_unknown"
    if error.get("type") in _NOT_HANDLED or error.get("status") == 503:
        return None
    if error.get("status") in (401, 403) and str(error.get("source")).upper() == "THIRD_PARTY":
        return None  # the third party refused the credential: nothing ran
    return "failed"


def keys_in_out(path: str) -> tuple[set[str], bool]:
    """The keys ``--out`` already has a line for (the last line of a key wins: one saying the
    server never acted, a 429 or a quarantined credential, does not count, so a rerun sends
    it), and whether its last line is torn (a run killed mid-write): the first new line then
    starts on a line of its own."""
    keys: set[str] = set()
    if path == "-" or not os.path.isfile(path):
        return keys, False
    last = b"\n"
    try:
        with open(path, "rb") as lines:
            for raw in lines:
                last = raw
                try:
                    row = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    continue  # a torn line is no outcome
                key = row.get("key") if isinstance(row, dict) else None
                if not isinstance(key, str):
                    continue
                if _settled_state(row) is None and row.get("ok") is not True:
                    keys.discard(key)  # never acted on (429, quarantined, ...): sent again
                else:
                    keys.add(key)
    except OSError as exc:
        raise BulkUsageError(f"cannot read --out {path!r}: {exc.strerror or exc}") from None
    return keys, not last.endswith(b"\n")
