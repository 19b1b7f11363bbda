"""Import boundaries of DESIGN.md section 1, checked by reading the source."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "alloy_async"


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            found.add(base)
            found.update(f"{base}.{a.name}" if node.module else base + a.name for a in node.names)
    return found


def modules() -> list[Path]:
    return sorted(PKG.rglob("*.py"))


def test_only_the_transport_and_sandbox_import_aiohttp() -> None:
    """aiohttp appears only in transports/aiohttp.py and sandbox.py."""
    allowed = {PKG / "transports" / "aiohttp.py", PKG / "sandbox.py"}
    offenders = [
        p
        for p in modules()
        if p not in allowed and any(i == "aiohttp" or i.startswith("aiohttp.") for i in imports(p))
    ]
    assert offenders == []


def test_models_import_only_attrs_and_the_stdlib() -> None:
    """models/ has no cattrs and no I/O modules."""
    for path in (PKG / "models").glob("*.py"):
        for name in imports(path):
            assert not name.startswith(("cattrs", "aiohttp", "orjson")) or (
                path.name == "bulk.py" and name == "orjson"
            ), (path.name, name)
            assert "transports" not in name and "_core" not in name, (path.name, name)


def test_services_never_import_a_transport_or_the_client() -> None:
    """Services reach HTTP only through the requester."""
    for path in (PKG / "services").glob("*.py"):
        for name in imports(path):
            assert "transports" not in name and "client" not in name, (path.name, name)


def test_one_cattrs_converter() -> None:
    """Only _convert.py imports cattrs."""
    users = [p.name for p in modules() if any(i.startswith("cattrs") for i in imports(p))]
    assert users == ["_convert.py"]


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _graph() -> dict[str, set[str]]:
    """Every import of every module (at any depth: inside functions and TYPE_CHECKING too),
    resolved to the package's own modules."""
    names = {_module_name(p): p for p in modules()}
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        package = name if path.stem == "__init__" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                targets = [mod, *(f"{mod}.{a.name}" for a in node.names)]
            deps.update(t for t in targets if t in names and t != name)
        graph[name] = deps
    return graph


def test_no_import_cycle_and_no_module_imports_its_package_root() -> None:
    """DESIGN.md section 1: arrows point down only; an import inside a function counts."""
    graph = _graph()
    roots = [(m, d) for m, deps in graph.items() for d in deps if m.startswith(d + ".")]
    assert roots == [], "a module imports its own package root"
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append([*stack[stack.index(dep) :], dep])
            elif not state.get(dep):
                visit(dep, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if not state.get(node):
            visit(node, [])
    assert cycles == []


# What each layer may not import (DESIGN.md section 1: cli -> client -> services ->
# (pagination, engine) -> (limiters, journal, coordinator) -> pipeline -> transports/base).
_FORBIDDEN = {
    "alloy_async.errors": ("alloy_async.",),
    "alloy_async._http": ("alloy_async._core", "alloy_async.services", "alloy_async.engine"),
    "alloy_async._wire": ("alloy_async._core", "alloy_async.services", "alloy_async.engine",
                          "alloy_async.transports", "alloy_async.client"),
    "alloy_async.models": ("alloy_async._core", "alloy_async.services", "alloy_async.engine",
                           "alloy_async.client", "alloy_async.transports"),
    "alloy_async.limiters": ("alloy_async._core", "alloy_async.services", "alloy_async.engine",
                             "alloy_async.client", "alloy_async.cli"),
    "alloy_async.engine": ("alloy_async.services", "alloy_async.client", "alloy_async.cli",
                           "alloy_async.transports.aiohttp", "alloy_async.distributed"),
    "alloy_async.distributed": ("alloy_async.cli", "alloy_async.transports.aiohttp"),
    "alloy_async.transports": ("alloy_async._core", "alloy_async.services",
                               "alloy_async.engine", "alloy_async.client"),
    "alloy_async.services": ("alloy_async.client", "alloy_async.cli",
                             "alloy_async.transports", "alloy_async.distributed"),
    "alloy_async._core": ("alloy_async.services", "alloy_async.engine", "alloy_async.client",
                          "alloy_async.cli"),
}  # fmt: skip


def test_layers_import_only_downwards() -> None:
    offenders = []
    for module, deps in _graph().items():
        for layer, forbidden in _FORBIDDEN.items():
            if module == layer or module.startswith(layer + "."):
                offenders += [
                    (module, d)
                    for d in deps
                    if any(d == f or d.startswith(f.rstrip(".") + ".") for f in forbidden)
                    and d != "alloy_async.errors"
                ]
    assert offenders == []


def test_no_module_over_600_lines() -> None:
    """A module is one idea; 600 lines is the limit, and a split follows a seam a reader can
    name, never size alone (issue 23)."""
    sizes = {str(p.relative_to(PKG)): len(p.read_text().splitlines()) for p in modules()}
    assert {p: n for p, n in sizes.items() if n > 600} == {}


def _statements(node: ast.AST) -> int:
    return sum(isinstance(child, ast.stmt) for child in ast.walk(node)) - 1


def test_no_function_over_60_statements() -> None:
    """Issue 23: a function a reader can hold in their head (nested statements count)."""
    long = {
        f"{p.relative_to(PKG)}:{node.lineno} {node.name}": _statements(node)
        for p in modules()
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _statements(node) > 60
    }
    assert long == {}


def _attributes(cls: ast.ClassDef) -> set[str]:
    """What ``self.x = ...`` and class-level annotations give the class."""
    names = {
        node.attr
        for node in ast.walk(cls)
        if isinstance(node, ast.Attribute)
        and isinstance(node.ctx, ast.Store)
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
    }
    return names | {
        st.target.id
        for st in cls.body
        if isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name)
    }


def test_no_class_over_16_attributes() -> None:
    """Issue 23: a class with more state than that is two ideas."""
    big = {
        f"{p.relative_to(PKG)}:{node.lineno} {node.name}": len(_attributes(node))
        for p in modules()
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.ClassDef) and len(_attributes(node)) > 16
    }
    assert big == {}


def test_no_formatting_opt_outs() -> None:
    """Issue 23: no ``# fmt: skip`` packings (they bought well under 1 % of speed)."""
    marker = "# fmt: " + "skip"
    assert [str(p.relative_to(PKG)) for p in modules() if marker in p.read_text()] == []


def test_only_distributed_imports_redis_and_taskiq() -> None:
    """DESIGN.md section 1: redis and taskiq are optional extras, imported by one package."""
    heavy = ("redis", "taskiq", "taskiq_redis")
    users = sorted(
        str(p.relative_to(PKG))
        for p in modules()
        if any(i.split(".")[0] in heavy for i in imports(p))
    )
    assert users and all(u.startswith("distributed/") for u in users), users


def test_only_observability_imports_opentelemetry() -> None:
    """DESIGN.md section 1: OpenTelemetry is the optional extra ``otel``, imported by one
    module, and only once a client asks for telemetry (importing the SDK never loads it)."""
    users = sorted(
        str(p.relative_to(PKG))
        for p in modules()
        if any(i.split(".")[0] == "opentelemetry" for i in imports(p))
    )
    assert users == ["observability/otel.py"], users
    code = (
        "import sys, alloy_async, alloy_async.observability, alloy_async.engine; "
        "alloy_async.AlloyClient(api_key='k', base_url='http://127.0.0.1:9', telemetry=False); "
        "print(any(m.split('.')[0] == 'opentelemetry' for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# What each layer of docs/architecture.md's diagram MAY import (an allow-list: a new import
# across layers, or a new top-level module, needs a rule here). Keys and values are the
# package's top-level units (``alloy_async.<unit>``); a unit may always import its own modules.
# The diagram, top to bottom: cli -> distributed -> client -> services -> (pagination, engine
# -> limiters) -> _core -> (_wire, _http, _convert + models) -> (transports, errors); testing/
# and sandbox.py beside it. Units the diagram does not draw are placed by what they are:
# retry (RetryPolicy and its sans-I/O decision) and observability (hooks, telemetry) are what
# _core drives, so they sit under it, beside _wire; validation checks action inputs
# over models; journal.py and bulk.py re-export engine/; the leaf helpers import only errors.
_LEAVES = {"errors", "_version", "_coerce", "_checks", "_env", "_aio"}
_VALUES = _LEAVES | {"_http", "models", "_shapes", "_convert", "validation"}
_UNDER_CORE = _VALUES | {"_wire", "transports", "retry", "observability"}
_CORE = _UNDER_CORE | {"_core"}
_ENGINE = _CORE | {"engine", "limiters", "journal", "bulk"}
_SERVICES = (_ENGINE | {"services", "pagination", "_page_guards"}) - {"transports"}
_CLIENT = _SERVICES | {"client", "transports"}
_MAY_IMPORT: dict[str, set[str]] = {
    "errors": set(),
    "_version": set(),
    "_coerce": set(),
    "_checks": {"errors"},
    "_env": {"_version"},
    "_aio": set(),
    "_http": _LEAVES,
    # The diagram draws transports/ under _http.py, but the Transport protocol is defined over
    # _http's Request and Response: transports import those values (and nothing else).
    "transports": _LEAVES | {"_http"},
    "models": _LEAVES,
    "_shapes": _LEAVES | {"models"},
    "_convert": _LEAVES | {"models", "_shapes"},
    "validation": _LEAVES | {"models"},
    "_wire": _VALUES | {"transports"},
    "retry": _VALUES | {"_wire"},
    "observability": _VALUES | {"_wire", "transports"},
    "_core": _CORE,
    "limiters": _LEAVES,
    "pagination": _CORE | {"_page_guards"},
    "_page_guards": _LEAVES,
    "engine": _ENGINE,
    "journal": {"engine"},
    "bulk": {"engine"},
    "services": _SERVICES,
    "client": _CLIENT,
    "distributed": _CLIENT,
    # The fake API: it hands out real clients (FakeAlloy.client) over a FakeTransport and
    # checks inputs as the API would; it never reaches into the SDK's engine or services.
    "testing": _VALUES | {"client", "transports"},
    "sandbox": _VALUES | {"testing"},
    # Typed bindings generated from the catalog (issue 25): action details (models/) fetched
    # through the client's public API; the generated code imports only the package root.
    "codegen": _LEAVES | {"models", "client"},
    "cli": _CLIENT | {"distributed", "testing", "sandbox", "codegen"},
    "": _CLIENT - {"services"},  # the package root re-exports the public names
}


def _unit(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def test_every_layer_imports_only_what_the_diagram_puts_below_it() -> None:
    """Catches: an upward or sideways import in any layer (e.g. pagination importing engine/,
    observability importing _core, testing/ imported by the SDK itself), or a new top-level
    module with no rule."""
    graph = _graph()
    units = {_unit(m) for m in graph}
    assert units - set(_MAY_IMPORT) == set(), "top-level units without a rule in _MAY_IMPORT"
    offenders = sorted(
        (module, dep)
        for module, deps in graph.items()
        for dep in deps
        if _unit(dep) != _unit(module) and _unit(dep) not in _MAY_IMPORT[_unit(module)]
    )
    assert offenders == [], offenders
