"""Preflight: an execute call's arguments checked against the action's published JSON Schema.

Sans-I/O: :func:`compile_action` turns an :class:`~alloy_async.models.Action` (from
``actions.get``) into an :class:`ActionValidator`, whose :meth:`~ActionValidator.problems` lists
what the API would refuse, before anything is sent. The JSON Schema engine is ``jsonschema``
(extra ``validate``; see ``benchmarks/RESULTS.md`` for why this one), imported only when a
schema is first compiled.

Problems name the argument they are in, as a JSON pointer rooted at the call's keyword
arguments (``/request_body/to``, ``/query_parameters/limit``, ``/path_params/id``), and never
quote the value that failed (a body may hold a third party's secrets).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import attrs

from .errors import ConfigurationError, InvalidRequestError, UnusableSchemaError
from .models.actions import Action

__all__ = [
    "ActionValidator",
    "Problem",
    "action_schemas",
    "compile_action",
    "jsonschema_module",
    "refusal",
]

#: Keywords whose jsonschema message names only schema data (property names), never a value.
_SAFE_MESSAGES = frozenset({"required", "dependentRequired"})
_ARGUMENTS = ("request_body", "query_parameters", "path_params")


@attrs.frozen
class Problem:
    """One reason the API would refuse a call.

    Attributes:
        pointer: where, as a JSON pointer into the call's arguments (``/request_body/to``).
        message: what is wrong (the value itself is never quoted).
        keyword: the JSON Schema keyword that failed (``required``, ``type``, ``maxLength``).
    """

    pointer: str
    message: str
    keyword: str

    def __str__(self) -> str:
        return f"{self.pointer or '/'}: {self.message}"


def _parameters_schema(action: Action, location: str) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    required: list[str] = []
    for p in action.parameters_in(location):
        name = p.get("name")
        if not isinstance(name, str):
            continue
        schema = p.get("schema")
        properties[name] = schema if isinstance(schema, Mapping) else {}
        if p.get("required") is True:
            required.append(name)
    return {"type": "object", "properties": properties, "required": required}


def action_schemas(action: Action) -> dict[str, dict[str, Any]]:
    """The schema of each part of an execute call, checked apart: ``request_body`` (the
    action's own body schema, in its own dialect, its ``$ref`` resolving within it),
    ``query_parameters`` and ``path_params`` (from its parameters)."""
    body = action.request_body if isinstance(action.request_body, Mapping) else {}
    return {
        "request_body": dict(body),
        "query_parameters": _parameters_schema(action, "query"),
        "path_params": _parameters_schema(action, "path"),
    }


def jsonschema_module() -> Any:
    """The ``jsonschema`` module, or :class:`ConfigurationError` saying how to install it."""
    try:
        return importlib.import_module("jsonschema")  # Any: its stubs are a separate package
    except ImportError:
        raise ConfigurationError(
            "validation needs the jsonschema package: pip install 'alloy-async[validate]'"
        ) from None


def _pointer(path: Any) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def _message(error: Any) -> str:
    keyword = str(error.validator)
    if keyword in _SAFE_MESSAGES:
        return str(error.message)
    if keyword == "type":
        return f"must be of type {error.validator_value!r}"
    if keyword in ("additionalProperties", "unevaluatedProperties"):
        # The unexpected key comes from the caller's data (it can be a secret): never quoted.
        return f"has a property the schema does not allow ({keyword})"
    if keyword in ("enum", "const"):
        return f"must be one of the values the schema allows ({keyword})"
    value = error.validator_value
    if isinstance(value, (int, float, str, bool)) and len(repr(value)) <= 80:
        return f"does not satisfy {keyword}={value!r}"
    return f"does not satisfy {keyword}"


class ActionValidator:
    """A compiled action schema. Build it with :func:`compile_action`."""

    def __init__(self, name: str, validators: Mapping[str, Any]) -> None:
        self.name = name
        self._validators = dict(validators)  # part (request_body, ...) -> its validator

    def problems(
        self,
        request_body: Any = None,
        query_parameters: Mapping[str, Any] | None = None,
        path_params: Mapping[str, Any] | None = None,
    ) -> list[Problem]:
        """What the action's schema refuses in these arguments, by pointer; empty when valid.

        Raises:
            UnusableSchemaError: the schema could not be applied (an unresolvable ``$ref``,
                an unknown type).
        """
        parts = {
            "request_body": {} if request_body is None else request_body,
            "query_parameters": dict(query_parameters or {}),
            "path_params": dict(path_params or {}),
        }
        errors: list[tuple[str, Any]] = []
        for part, validator in self._validators.items():
            try:
                errors += [(part, e) for e in validator.iter_errors(parts[part])]
            except Exception as exc:  # jsonschema raises many kinds for a schema it cannot apply
                why = f"{part}: {type(exc).__name__}: {exc}"
                raise UnusableSchemaError(self.name, why) from None
        found: list[Problem] = []
        named: set[tuple[str, str]] = set()
        for part, e in errors:
            pointer = _pointer([part, *e.absolute_path])
            if e.validator == "required" and isinstance(e.instance, Mapping):
                # Point at the missing field itself (one error per missing field).
                missing = [
                    r
                    for r in e.validator_value
                    if isinstance(r, str) and r not in e.instance and (pointer, r) not in named
                ]
                if missing:
                    named.add((pointer, missing[0]))
                    pointer += _pointer([missing[0]])
            found.append(Problem(pointer, _message(e), str(e.validator)))
        return sorted(found, key=lambda p: (p.pointer, p.keyword))


def refusal(name: str, problems: list[Problem]) -> InvalidRequestError:
    """The error a call refused by preflight raises (its problems listed, the first named)."""
    shown = "; ".join(str(p) for p in problems[:5])
    more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
    return InvalidRequestError(
        f"{name}: the action's schema refuses {len(problems)} thing(s): {shown}{more}; "
        "nothing was sent",
        field=problems[0].pointer.lstrip("/").split("/")[0] or None,
        problems=tuple(problems),
    )


def compile_action(action: Action, name: str) -> ActionValidator:
    """Compile ``action``'s schema (``name``: ``connector.action``, for messages).

    Remote ``$ref`` are never fetched (an empty registry: only the schema's own definitions
    resolve). Formats (``email``, ...) are checked where jsonschema can.

    Raises:
        UnusableSchemaError: the schema is not valid JSON Schema.
        ConfigurationError: jsonschema is not installed.
    """
    jsonschema = jsonschema_module()
    import referencing

    validators = {}
    for part, schema in action_schemas(action).items():
        # The body in the dialect it declares ($schema); the parameters' wrappers are ours.
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        try:
            cls.check_schema(schema)
        except jsonschema.exceptions.SchemaError as exc:
            why = f"{part} is not valid JSON Schema: {exc.message}"
            raise UnusableSchemaError(name, why) from None
        validators[part] = cls(
            schema, registry=referencing.Registry(), format_checker=cls.FORMAT_CHECKER
        )
    return ActionValidator(name, validators)
