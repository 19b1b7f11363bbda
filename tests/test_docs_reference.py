"""The API reference and the command line page cover what the code exports, without a Sphinx
build (that runs in .ci/run): the pages' directives are read as text and checked against the
modules' ``__all__`` and the click definitions."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from typing import Any

import attrs
import click
import pytest

import alloy_async.cli

DOCS = Path(__file__).resolve().parent.parent / "docs"
REFERENCE = DOCS / "reference"

#: The modules whose every public name the reference must describe (issue 27).
PUBLIC_MODULES = (
    "alloy_async",
    "alloy_async.models",
    "alloy_async.transports",
    "alloy_async.testing",
    "alloy_async.limiters",
    "alloy_async.distributed",
)

# ``.. autoclass:: alloy_async.BulkRun()`` and ``.. py:class:: X``: the name each describes.
_DIRECTIVE = re.compile(r"^\s*\.\. (?:auto\w+|py:\w+):: +([\w.]+)", re.M)
_MODULE = re.compile(r"^\s*\.\. (?:module|automodule|py:module):: +([\w.]+)", re.M)
# A cross-reference, MyST ({py:class}`~alloy_async.X`) or reST (:class:`alloy_async.X`).
_ROLE = re.compile(r"(?:\{py:\w+\}|:(?:py:)?\w+:)`(?:[^`<]*<)?~?([\w.]+)>?`")


def _resolve(dotted: str) -> Any:
    """The object a dotted name stands for (the longest importable module, then attributes)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def _pages() -> dict[Path, str]:
    return {path: path.read_text(encoding="utf-8") for path in sorted(REFERENCE.glob("*.md"))}


def missing_from_reference(pages: dict[Path, str]) -> list[str]:
    """The ``module.name`` of every name in the public ``__all__`` lists the reference does not
    describe.

    A name is described by a directive naming it (``.. autoclass:: alloy_async.AlloyClient``),
    or, when a module re-exports an object another page describes, by a cross-reference to
    it on the module's own page (``{py:class}`alloy_async.ExecutionResult```) while a
    directive elsewhere describes that very object.
    """
    documented = {name for text in pages.values() for name in _DIRECTIVE.findall(text)}
    documented_ids = {id(_resolve(name)) for name in documented}
    page_of = {module: text for text in pages.values() for module in _MODULE.findall(text)}
    missing = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        linked = set(_ROLE.findall(page_of.get(module_name, "")))
        for name in module.__all__:
            dotted = f"{module_name}.{name}"
            if dotted in documented:
                continue
            if dotted in linked and id(getattr(module, name)) in documented_ids:
                continue
            missing.append(dotted)
    return missing


def test_every_public_name_is_in_the_reference() -> None:
    """Every name of the six public ``__all__`` lists has its entry in docs/reference.

    Deliberate bug it catches: a name added to an ``__all__`` with no directive for it on
    the module's page, or a re-export's page dropping its link. Seen failing by exporting
    ``DEFAULT_MAX_PAGES`` from ``alloy_async`` without a reference entry.
    """
    pages = _pages()
    assert set(_MODULE.findall("".join(pages.values()))) >= set(PUBLIC_MODULES)
    assert missing_from_reference(pages) == []


def test_a_name_missing_from_the_reference_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check itself: a name added to ``__all__`` with no reference entry is reported.

    Deliberate bug it catches: a check that passes whatever the pages say (e.g. one that
    matches names anywhere in the text, or skips re-exports).
    """
    import alloy_async

    monkeypatch.setattr(alloy_async, "__all__", [*alloy_async.__all__, "DEFAULT_MAX_PAGES"])
    monkeypatch.setattr(alloy_async, "DEFAULT_MAX_PAGES", 10_000, raising=False)
    assert missing_from_reference(_pages()) == ["alloy_async.DEFAULT_MAX_PAGES"]
    pages = _pages()
    models = REFERENCE / "models.md"
    pages[models] = pages[models].replace("{py:class}`alloy_async.models.JobOutcome`", "")
    monkeypatch.setattr(alloy_async, "__all__", alloy_async.__all__[:-1])
    assert missing_from_reference(pages) == ["alloy_async.models.JobOutcome"]


def _attributes_section(doc: str) -> set[str]:
    """The names an "Attributes:" section of a Google-style docstring lists."""
    section = re.search(r"^Attributes:\n((?:[ \t]+.*\n?|\n)*)", doc, re.M)
    if section is None:
        return set()
    return set(re.findall(r"^    (\w+)(?: \(.*?\))?:", section.group(1), re.M))


def test_every_field_of_a_public_attrs_class_is_described() -> None:
    """Each public field of each attrs class in the public ``__all__`` lists is named in its
    class's "Attributes:" section, so the reference shows it with its type and meaning
    (docs/conf.py lists an attrs class's fields from that section, not its constructor).

    Deliberate bug it catches: a field added to ``BulkReport``, ``JobOutcome``, a limiter's
    statistics... without a line in "Attributes:" (it would be missing from the reference).
    Seen failing by deleting ``retries:`` from ``BulkReport``'s docstring.
    """
    undocumented = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            cls = getattr(module, name)
            if not (inspect.isclass(cls) and attrs.has(cls)):
                continue
            described = _attributes_section(inspect.getdoc(cls) or "")
            for field in attrs.fields(cls):
                if not field.name.startswith("_") and field.name not in described:
                    undocumented.append(f"{module_name}.{name}.{field.name}")
    assert undocumented == []


def _click_directives() -> list[tuple[str, dict[str, str]]]:
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    found = []
    for match in re.finditer(r"^\.\. click:: +(\S+)\n((?:[ \t]+:[\w-]+:.*\n)*)", text, re.M):
        options = dict(re.findall(r":([\w-]+):[ \t]*(.*)", match.group(2)))
        found.append((match.group(1), options))
    return found


def test_the_cli_page_is_generated_from_the_root_group() -> None:
    """docs/cli.md renders the ``alloy-async`` group itself with ``:nested: full``, so every
    command and option, nested ones included, comes from the click definitions.

    Deliberate bug it catches: the page pointing at one subgroup, or at a copy of the group,
    or with ``:nested: short``/``none`` (subcommands' options missing). Seen failing with
    ``:nested: short``.
    """
    [(target, options)] = _click_directives()
    module_name, _, attr = target.partition(":")
    assert getattr(importlib.import_module(module_name), attr) is alloy_async.cli.main
    assert options.get("nested") == "full"
    assert options.get("prog") == "alloy-async"


def _commands(group: click.Command, path: str) -> list[tuple[str, click.Command]]:
    found = [(path, group)]
    if isinstance(group, click.Group):
        for name, command in sorted(group.commands.items()):
            found.extend(_commands(command, f"{path} {name}"))
    return found


def test_every_command_and_option_has_help() -> None:
    """Every command and every option of ``alloy-async`` says what it is: the page shows the
    help texts, and an option without one would be a bare name there.

    Deliberate bug it catches: a new ``@click.option`` without ``help=`` (as ``--user-id``,
    ``--category`` and ``--burst`` were). Seen failing by dropping ``--burst``'s help.
    """
    bare = []
    for path, command in _commands(alloy_async.cli.main, "alloy-async"):
        if not (command.help or "").strip():
            bare.append(path)
        for param in command.params:
            if isinstance(param, click.Option) and not (param.help or "").strip():
                bare.append(f"{path} {param.opts[0]}")
    assert bare == []
