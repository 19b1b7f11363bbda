"""Preflight validation: what checking one job costs, and the JSON Schema engines compared.

``python -m benchmarks.bench_validate``

A typical action body schema (an e-mail: required fields, formats, bounds, nested arrays) and
two instances, one valid and one with six problems. Rows:

* the SDK's own path, ``ActionValidator.problems`` (jsonschema, every problem collected, the
  pointers and safe messages built), valid and invalid;
* the three engines considered, called directly, when installed: jsonschema (the one the
  ``validate`` extra installs), fastjsonschema and jsonschema-rs (install them by hand to
  compare; ``pip install fastjsonschema jsonschema-rs``).

Medians of 15 ``timeit`` repeats, microseconds per call.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import statistics
import timeit
from collections.abc import Callable
from typing import Any

from alloy_async.models.actions import Action
from alloy_async.validation import compile_action

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["to", "subject"],
    "properties": {
        "to": {"type": "string", "format": "email", "maxLength": 320},
        "subject": {"type": "string", "minLength": 1, "maxLength": 998},
        "cc": {"type": "array", "items": {"type": "string"}, "maxItems": 50},
        "priority": {"type": "integer", "minimum": 1, "maximum": 5},
        "attachments": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "size"],
                "properties": {
                    "name": {"type": "string"},
                    "size": {"type": "integer", "minimum": 0},
                },
            },
        },
    },
    "additionalProperties": False,
}
VALID = {
    "to": "alice@example.com",
    "subject": "Quarterly report",
    "cc": ["bob@example.com", "carol@example.com"],
    "priority": 3,
    "attachments": [{"name": "report.pdf", "size": 123456}, {"name": "a.png", "size": 0}],
}
INVALID = {
    "subject": "",
    "cc": ["bob@example.com", 42],
    "priority": 9,
    "attachments": [{"name": "report.pdf", "size": -1}],
    "bcc": "x",
}


def _us(fn: Callable[[], object], number: int) -> float:
    return statistics.median(t / number for t in timeit.repeat(fn, number=number, repeat=15)) * 1e6


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def run() -> list[tuple[str, float, float, float]]:
    """(name, compile us, valid us, invalid-all-errors us) per row."""
    rows: list[tuple[str, float, float, float]] = []
    action = Action(id="sendEmail", request_body=SCHEMA)
    sdk = compile_action(action, "sendgrid.sendEmail")
    rows.append((
        f"SDK ActionValidator.problems (jsonschema {_version('jsonschema')})",
        _us(lambda: compile_action(action, "x.y"), 200),
        _us(lambda: sdk.problems(VALID), 2000),
        _us(lambda: sdk.problems(INVALID), 1000),
    ))  # fmt: skip
    js = importlib.import_module("jsonschema")
    v = js.Draft202012Validator(SCHEMA, format_checker=js.Draft202012Validator.FORMAT_CHECKER)
    rows.append((
        f"jsonschema {_version('jsonschema')} (check_schema + build)",
        _us(lambda: js.Draft202012Validator.check_schema(SCHEMA), 200),
        _us(lambda: list(v.iter_errors(VALID)), 2000),
        _us(lambda: list(v.iter_errors(INVALID)), 1000),
    ))  # fmt: skip
    try:
        fj = importlib.import_module("fastjsonschema")
        f = fj.compile(SCHEMA, fast_fail=False, use_default=False)

        def fj_all(x: Any) -> None:
            with contextlib.suppress(fj.JsonSchemaValuesException):
                f(x)

        rows.append((
            f"fastjsonschema {_version('fastjsonschema')} (draft 7 code generator)",
            _us(lambda: fj.compile(SCHEMA, fast_fail=False), 20),
            _us(lambda: fj_all(VALID), 20000),
            _us(lambda: fj_all(INVALID), 20000),
        ))  # fmt: skip
    except ImportError:
        pass
    try:
        rs = importlib.import_module("jsonschema_rs")
        r = rs.validator_for(SCHEMA, validate_formats=True)
        rows.append((
            f"jsonschema-rs {_version('jsonschema-rs')}",
            _us(lambda: rs.validator_for(SCHEMA, validate_formats=True), 2000),
            _us(lambda: list(r.iter_errors(VALID)), 20000),
            _us(lambda: list(r.iter_errors(INVALID)), 20000),
        ))  # fmt: skip
    except ImportError:
        pass
    return rows


def main() -> None:
    print(f"{'engine':64} {'compile':>9} {'valid':>8} {'invalid':>8}  (us, medians)")
    for name, compile_us, valid_us, invalid_us in run():
        print(f"{name:64} {compile_us:9.1f} {valid_us:8.1f} {invalid_us:8.1f}")


if __name__ == "__main__":
    main()
