"""A whole generated package: its files, and how a folder on disk differs from them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs

from ..models.actions import Action
from ._module import MARKER, connector_module
from ._names import Names, module_name, pascal
from ._text import docstring, quote

__all__ = ["Generated", "differences", "generate", "write"]


@attrs.frozen
class Generated:
    """A generated package.

    Attributes:
        files: each file's name in the package folder (``acme_crm.py``) and its text.
        notes: what a person should know, one line each: ``renamed: ...`` (a name clash,
            resolved the same way every time) and ``warning: ...`` (a schema typed ``Any``),
            each naming the connector and action.
    """

    files: Mapping[str, str]
    notes: tuple[str, ...] = ()


def generate(catalog: Mapping[str, Sequence[Action]], *, api_version: str) -> Generated:
    """The package for these connectors' actions (``{connector_id: [Action, ...]}``, as
    :func:`fetch_catalog` returns it), fetched at ``api_version``.

    The same catalog gives the same bytes: connectors and actions are taken in id order, and
    nothing depends on the time, the machine or the folder.
    """
    notes: list[str] = []
    modules = Names({"__init__"})
    classes = Names()
    files: dict[str, str] = {}
    exported: list[tuple[str, str]] = []
    for connector_id in sorted(catalog):
        wanted = module_name(connector_id)
        module = modules.claim(wanted, separator="_")
        if module != wanted:
            notes.append(f"renamed: {connector_id}: module {module}.py ({wanted} is taken)")
        class_name = classes.claim(pascal(connector_id) + "Actions")
        text, more = connector_module(connector_id, class_name, catalog[connector_id], api_version)
        files[f"{module}.py"] = text
        notes += more
        exported.append((module, class_name))
    files["__init__.py"] = _init(sorted(catalog), exported, api_version)
    files["py.typed"] = ""
    return Generated(dict(sorted(files.items())), tuple(notes))


def _init(ids: list[str], exported: list[tuple[str, str]], api_version: str) -> str:
    listed = ", ".join(f"``{i}``" for i in ids)
    lines = [
        f"{MARKER} from the Alloy API (version {api_version}).",
        "# Do not edit: regenerate it, and run the same command with --check in CI.",
        *docstring(
            f"Typed bindings for the Alloy connectors {listed}.\n\n"
            "One module per connector, each with a TypedDict per action part and a "
            "``<Connector>Actions`` class (see ``alloy-async codegen --help``).",
            "",
        ),
        "",
        *(f"from .{module} import {name}" for module, name in exported),
        "",
        "__all__ = [",
        *(f"    {quote(name)}," for _, name in sorted(exported, key=lambda e: e[1])),
        "]",
    ]
    return "\n".join(lines) + "\n"


def _read(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _stale(folder: Path, generated: Generated) -> list[str]:
    """Modules in ``folder`` an earlier run generated that this one would not (a connector
    dropped from the command, or renamed); files without the marker are the user's."""
    if not folder.is_dir():
        return []
    return sorted(
        p.name
        for p in folder.glob("*.py")
        if p.name not in generated.files and (_read(p) or "").startswith(MARKER)
    )


def differences(folder: str | Path, generated: Generated) -> list[str]:
    """The files of ``folder`` that are not what ``generated`` holds: changed, missing, or a
    stale generated module. Empty when the folder is current."""
    folder = Path(folder)
    changed = [n for n, text in generated.files.items() if _read(folder / n) != text]
    return sorted(changed + _stale(folder, generated))


def write(folder: str | Path, generated: Generated) -> list[str]:
    """Bring ``folder`` up to date (created if missing): write the files that differ, remove
    stale generated modules; returns the names changed. Unchanged files are not touched."""
    folder = Path(folder)
    changed = differences(folder, generated)
    folder.mkdir(parents=True, exist_ok=True)
    for name in changed:
        if name in generated.files:
            (folder / name).write_bytes(generated.files[name].encode("utf-8"))
        else:
            (folder / name).unlink()
    return changed
