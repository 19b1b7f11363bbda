"""``alloy-async codegen``: typed bindings for connectors, from the live action catalog."""

from __future__ import annotations

import keyword
from pathlib import Path
from typing import Any

import click

from ..client import DEFAULT_API_VERSION
from ..codegen import Generated, differences, fetch_catalog, generate, write
from ._common import common, emit, open_client, run_async, say

__all__ = ["codegen"]


@click.command("codegen")
@common
@click.argument("connector_ids", nargs=-1, required=True, metavar="CONNECTOR_ID...")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The package folder to write (its name is the package's name).",
)
@click.option(
    "--check",
    is_flag=True,
    help="Write nothing; exit 1 naming the files when --out is not what the catalog gives.",
)
@click.option(
    "--api-version",
    default=DEFAULT_API_VERSION,
    show_default=True,
    help="The API version whose schemas are fetched (named in every file's header).",
)
def codegen(
    connector_ids: tuple[str, ...], out: Path, check: bool, api_version: str, **kw: Any
) -> None:
    """Generate a typed package for CONNECTOR_ID... from their action schemas.

    One module per connector (acme-crm -> acme_crm.py) holding a TypedDict per action part
    (CreateContactBody, ListContactsQuery, GetContactPath) and an AcmeCrmActions(alloy) class
    with one typed async method per action, plus __init__.py and py.typed. The same catalog
    always gives the same bytes: commit the package, type-check your code with mypy, and run
    the command again with --check in CI to learn when Alloy changes a schema. Exit codes: 0
    written or current; 1 --check found differences, or the API refused; 2 bad options.
    """
    name = out.resolve().name
    if not name.isidentifier() or keyword.iskeyword(name):
        raise click.BadParameter(
            f"{name!r} cannot be imported: the folder's name is the package's name",
            param_hint="--out",
        )

    async def fetch() -> Any:
        async with open_client(
            kw["api_key"], kw["base_url"], kw["sandbox"], api_version=api_version
        ) as alloy:
            return await fetch_catalog(alloy, connector_ids)

    generated = generate(run_async(fetch()), api_version=api_version)
    for note in generated.notes:
        say(note, "yellow" if note.startswith("warning:") else None)
    if check:
        changed = differences(out, generated)
        for file in changed:
            say(f"out of date: {out / file}", "red")
        say(f"{out}: {'out of date' if changed else 'up to date'}")
    else:
        try:
            changed = write(out, generated)
        except OSError as exc:
            raise click.ClickException(f"cannot write {out}: {exc.strerror or exc}") from None
        say(
            f"{out}: {len(changed)} file(s) written or removed" if changed else f"{out}: up to date"
        )
    if kw["as_json"]:
        emit(_summary(out, generated, changed), True)
    if check and changed:
        raise SystemExit(1)


def _summary(out: Path, generated: Generated, changed: list[str]) -> dict[str, Any]:
    return {
        "package": str(out),
        "files": sorted(generated.files),
        "changed": changed,
        "notes": list(generated.notes),
    }
