"""Sphinx configuration for the alloy-async documentation site (build: see README)."""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import re
import typing
from typing import Any

import attrs
from sphinx.util.typing import stringify_annotation

import alloy_async

project = "alloy-async"
author = "alloy-async developers"
copyright = "2026, alloy-async developers"  # Sphinx's own setting name
release = alloy_async.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx_click",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build"]

# Headings up to ### get anchors, so pages link into each other's sections and a broken anchor
# is a warning (the build runs with -W).
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "deflist"]

# The reference (docs/reference/) lists names one by one, grouped for reading; types go in the
# description (one line per parameter) and are shown without their module.
autodoc_member_order = "bysource"
autodoc_typehints = "description"
add_module_names = False
python_use_unqualified_type_names = True

# The docstrings are Google style; an "Attributes:" section becomes one entry per field, its
# type read from the class's annotations.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = False
napoleon_attr_annotations = True

# -n: every cross-reference must resolve. The build needs no network, so there is no
# intersphinx: references into the standard library and the dependencies cannot resolve and
# are ignored here, by module. A name of alloy_async's own is never ignored.
nitpick_ignore_regex = [
    ("py:.*", r"(collections(\.abc)?|typing|os|ssl|datetime|asyncio|pathlib|types)\..+"),
    ("py:.*", r"(aiohttp|redis|taskiq|opentelemetry|click|attrs)(\..+)?"),
]

html_theme = "furo"
html_title = f"alloy-async {release}"


def _resolve(app: Any, env: Any, node: Any, contnode: Any) -> Any:
    """Resolve what the Python domain could not, when it names a documented object.

    A name exported by two modules (``alloy_async.models.ExecuteJob``) goes to where that very
    object is documented (``alloy_async.ExecuteJob``): autodoc registers each documented class
    under its defining path too, so the object's ``__module__.__qualname__`` finds it. A type
    variable (``T`` in ``Page[T]``) is a placeholder, not a name to document: plain text. Any
    other alloy_async name that is documented nowhere still fails the build.
    """
    if node.get("refdomain") != "py" or not node["reftarget"].startswith("alloy_async."):
        return None
    module_name, _, attr = node["reftarget"].rpartition(".")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError):
        return None
    if isinstance(obj, typing.TypeVar):
        return contnode
    domain = env.get_domain("py")
    canonical = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"
    if canonical == node["reftarget"] or canonical not in domain.objects:
        return None
    return domain.resolve_xref(
        env, node["refdoc"], app.builder, node["reftype"], canonical, node, contnode
    )


@functools.cache
def _type_checking_names(module_name: str) -> dict[str, Any]:
    """The names ``module_name`` imports under ``if TYPE_CHECKING:`` (to break import cycles),
    imported here: every module is loaded by now, so there is no cycle left."""
    module = importlib.import_module(module_name)
    tree = ast.parse(inspect.getsource(module))
    imports: list[ast.stmt] = [
        statement
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING")
        for statement in node.body
        if isinstance(statement, (ast.Import, ast.ImportFrom))
    ]
    names: dict[str, Any] = {"__name__": module_name, "__package__": module.__package__}
    exec(compile(ast.Module(body=imports, type_ignores=[]), module_name, "exec"), names)
    return {k: v for k, v in names.items() if not k.startswith("__")}


def _record_types(
    app: Any, what: str, name: str, obj: Any, _options: Any, args: str | None, ret: str
) -> tuple[str, str] | None:
    """The parameter and return types an entry lists, from the evaluated annotations.

    autodoc evaluates annotations (strings, under ``from __future__ import annotations``) in
    the module's globals only: a name imported under ``TYPE_CHECKING`` stays a bare string,
    and a class's parameters are never evaluated (sphinx-doc/sphinx #11674, #13838). A bare
    name may resolve to the wrong object or not at all, so they are evaluated again here, with
    the module's ``TYPE_CHECKING`` imports. A class documented with an explicit empty
    signature (``BulkRun()``) is built by the library, not by you: its constructor's
    parameters are left out. So are an attrs class's: they are its fields, listed with their
    types and meaning (its "Attributes:"); a field whose default is a factory reads
    ``<factory>`` in the signature, as for a dataclass, not attrs' ``NOTHING``.
    """
    annotations = app.env.current_document.autodoc_annotations
    is_class = what in {"class", "exception"}
    if is_class and (args == "()" or attrs.has(obj)):
        annotations.pop(name, None)
        if args and "=NOTHING" in args:
            return args.replace("=NOTHING", "=<factory>"), ret
        return None
    target = getattr(obj, "__init__", None) if is_class else obj
    target = getattr(target, "__func__", target)
    if not inspect.isfunction(target):
        return None
    try:
        hints = typing.get_type_hints(target, localns=_type_checking_names(target.__module__))
    except Exception:  # whatever fails, autodoc's own reading stays
        return None
    recorded = annotations.setdefault(name, {})
    for param, hint in hints.items():
        if param != "return" or not is_class:
            recorded[param] = stringify_annotation(hint, "smart")
    return None


_FIELD = re.compile(r":[^:\s][^:]*:(\s|$)")


def _one_field_list(
    _app: Any, _what: str, _name: str, _obj: Any, _options: Any, lines: list[str]
) -> None:
    """Gather an entry's fields (``:param:``, ``:raises:``... as napoleon writes its "Args:"
    and "Raises:" sections) into one list at its end.

    A docstring with text between its "Args:" and its "Raises:" makes two field lists, and
    autodoc then adds every parameter's type to both: each parameter would be listed twice.
    """
    fields: list[str] = []
    rest: list[str] = []
    in_field = False
    for line in lines:
        if _FIELD.match(line):
            in_field = True
        elif line and not line[0].isspace():
            in_field = False
        (fields if in_field else rest).append(line)
    if fields:
        lines[:] = [*rest, "", *fields]


def _no_type_docstring(
    _app: Any, what: str, _name: str, obj: Any, _options: Any, lines: list[str]
) -> None:
    """A constant re-exported by a package (``GLOBAL_KEY``, ``EventHooks``) has no ``#:``
    comment where the package imports it, so autodoc falls back to the docstring of its type
    ("Built-in immutable sequence...") or of its alias's origin (``Mapping``): drop that; the
    reference page says what the constant is."""
    borrowed = {inspect.getdoc(type(obj)), inspect.getdoc(typing.get_origin(obj))}
    if what == "data" and "\n".join(lines).strip() in borrowed - {None}:
        lines[:] = []


def setup(app: Any) -> dict[str, Any]:
    app.connect("missing-reference", _resolve)
    app.connect("autodoc-process-signature", _record_types)
    # After napoleon's own handler, which writes the fields.
    app.connect("autodoc-process-docstring", _one_field_list, priority=600)
    # Before napoleon's, which rewrites the lines this one compares.
    app.connect("autodoc-process-docstring", _no_type_docstring, priority=400)
    return {"parallel_read_safe": True}
