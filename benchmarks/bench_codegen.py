"""Issue 25: the codegen engine, measured. Our generator (``alloy_async.codegen``) against
datamodel-code-generator, on every action part of the sandbox's catalog, the crafted catalog
of ``tests/codegen_catalog.py`` (every schema feature the issue names) and the action-details
example of the API reference.

    .venv/bin/python -m benchmarks.bench_codegen
    .venv/bin/python -m benchmarks.bench_codegen --dmcg /tmp/dmcg-venv/bin/python

datamodel-code-generator is not in the lock (it is heavy): give ``--dmcg`` the Python of a
throwaway venv that has it (``python -m venv /tmp/dmcg-venv && /tmp/dmcg-venv/bin/pip install
datamodel-code-generator``). Each engine's output is checked with this venv's
``mypy --strict``; prints a markdown table (times are medians of 5 runs, in ms).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from alloy_async._convert import structure
from alloy_async.codegen import generate, write
from alloy_async.models.actions import Action
from alloy_async.testing.catalog import CONNECTORS

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from codegen_catalog import ACME  # noqa: E402

# The child run under datamodel-code-generator's venv: one generate() per part, timed.
_DMCG = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
from datamodel_code_generator import DataModelType, InputFileType, PythonVersion, generate
from datamodel_code_generator.format import Formatter
parts = json.load(sys.stdin)
def run():
    outs, fails = {}, {}
    for name, schema in parts.items():
        try:
            outs[name] = generate(
                json.dumps(schema), input_file_type=InputFileType.JsonSchema,
                output_model_type=DataModelType.TypingTypedDict, class_name=name,
                disable_timestamp=True, target_python_version=PythonVersion.PY_311,
                formatters=[Formatter.BUILTIN], allow_remote_refs=False,
            )
        except Exception as exc:
            fails[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
    return outs, fails
first = time.perf_counter(); outs, fails = run(); first = time.perf_counter() - first
times = []
for _ in range(5):
    t = time.perf_counter(); run(); times.append(time.perf_counter() - t)
json.dump({"first": first, "times": times, "outs": outs, "fails": fails}, sys.stdout)
"""


def catalog() -> dict[str, list[Action]]:
    """Every connector's actions: the sandbox's, the crafted one, the reference example."""
    example = json.loads(
        (ROOT / "tests/fixtures/connector_action_details_examples.json").read_text()
    )
    found: dict[str, list[Action]] = {}
    for connector in [*CONNECTORS, ACME]:
        found[connector["id"]] = [
            structure({k: v for k, v in a.items() if not k.startswith("_")}, Action)
            for r in connector["resources"]
            for a in r["actions"]
        ]
    found["reference"] = [structure(example["get-connector-action-details"]["action"], Action)]
    return found


def parts(actions: dict[str, list[Action]]) -> dict[str, Any]:
    """Each action's body schema, and its query and path parameters as object schemas."""
    out: dict[str, Any] = {}
    for connector, items in actions.items():
        for a in items:
            stem = "".join(
                w.capitalize() for w in f"{connector}-{a.id}".replace("_", "-").split("-")
            )
            if a.request_body:
                out[stem + "Body"] = a.request_body
            for where in ("query", "path"):
                params = a.parameters_in(where)
                if params:
                    out[stem + where.capitalize()] = {
                        "type": "object",
                        "properties": {p["name"]: p.get("schema", {}) for p in params},
                        "required": [p["name"] for p in params if p.get("required")],
                    }
    return out


def mypy_errors(folder: Path) -> int:
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    return sum(": error:" in line for line in run.stdout.splitlines())


def ours(actions: dict[str, list[Action]]) -> dict[str, Any]:
    times = []
    for _ in range(5):
        start = time.perf_counter()
        generated = generate(actions, api_version="2025-09")
        times.append(time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as tmp:
        write(Path(tmp) / "ours", generated)
        errors = mypy_errors(Path(tmp) / "ours")
    return {"ms": statistics.median(times) * 1000, "mypy": errors, "notes": generated.notes}


def dmcg(python: str, schemas: dict[str, Any]) -> dict[str, Any]:
    child = subprocess.run(
        [python, "-c", _DMCG], input=json.dumps(schemas), capture_output=True, text=True, check=True
    )
    result = json.loads(child.stdout)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "dmcg"
        folder.mkdir()
        for name, text in result["outs"].items():
            (folder / f"{name.lower()}.py").write_text(text)
        errors = mypy_errors(folder)
    return {
        "ms": statistics.median(result["times"]) * 1000,
        "first_ms": result["first"] * 1000,
        "mypy": errors,
        "fails": result["fails"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dmcg", help="the Python of a venv with datamodel-code-generator")
    args = parser.parse_args()
    actions = catalog()
    schemas = parts(actions)
    mine = ours(actions)
    print(f"{len(schemas)} parts of {sum(map(len, actions.values()))} actions\n")
    print(
        "| engine | all parts (ms, median of 5) | mypy --strict errors in the output | failures |"
    )
    print("|---|---|---|---|")
    print(f"| alloy_async.codegen | {mine['ms']:.1f} | {mine['mypy']} | 0 |")
    if args.dmcg:
        theirs = dmcg(args.dmcg, schemas)
        print(
            f"| datamodel-code-generator (first run {theirs['first_ms']:.0f}) | "
            f"{theirs['ms']:.1f} | {theirs['mypy']} | {len(theirs['fails'])} |"
        )
        for name, why in theirs["fails"].items():
            print(f"\n- dmcg failed on {name}: {why}")
    for note in mine["notes"]:
        print(f"\n- ours: {note}")


if __name__ == "__main__":
    main()
