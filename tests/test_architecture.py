"""Import boundaries of DESIGN.md section 1, checked by reading the source."""

from __future__ import annotations

import ast
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
