"""``bulk --dry-run``: validate every line against its action's schema and send nothing."""

from __future__ import annotations

from typing import TextIO

from ..client import AlloyClient
from ..engine.rows import outcome_json
from ..errors import AlloyError, InvalidRequestError
from ..models.bulk import JobOutcome
from ..validation import refusal
from ._bulk_input import BadLine, JobReader
from ._bulk_options import BulkOptions
from ._bulk_output import write_row
from ._common import say

__all__ = ["dry_run"]


async def dry_run(opts: BulkOptions, reader: JobReader, out: TextIO, alloy: AlloyClient) -> int:
    """Check every job; write one outcome line per invalid job (with its line number).

    Each action's schema is fetched once (``actions.get``); no job is executed. Exit code 1
    when a line is bad, invalid, or could not be validated; else 0.
    """
    valid = invalid = unchecked = bad = index = 0
    where = "stdout" if opts.out_path == "-" else repr(opts.out_path)
    async for item in reader.items():
        if isinstance(item, BadLine):
            bad += 1
            say(f"line {item.number}: {item.message}", "red")
            continue
        number, job = item
        error: AlloyError | None
        try:
            problems = await alloy.actions.validate(
                job.connector_id,
                job.action_id,
                request_body=job.request_body,
                query_parameters=job.query_parameters,
                path_params=job.path_params,
            )
            error = refusal(f"{job.connector_id}.{job.action_id}", problems) if problems else None
        except AlloyError as exc:  # an unusable schema, an action that does not exist, ...
            error = exc
        index += 1
        if error is None:
            valid += 1
            continue
        if isinstance(error, InvalidRequestError):
            invalid += 1
        else:
            unchecked += 1
        say(f"line {number}: {error}", "red")
        row = outcome_json(JobOutcome(job, False, None, error, 0, 0.0, index - 1), number)
        write_row(out, row, where)
    say(
        f"dry run: {index} job(s) checked: {valid} valid, {invalid} invalid, {unchecked} could "
        f"not be validated; {bad} bad line(s); nothing was sent"
    )
    return 1 if invalid or unchecked or bad else 0
