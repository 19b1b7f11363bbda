"""JSON Schema -> Python type expressions, with the TypedDicts and Literal aliases they need.

What each schema feature becomes: an object with properties, a ``TypedDict`` (required
properties required, the others ``NotRequired``); an object without properties,
``dict[str, V]`` (V from ``additionalProperties``, else ``Any``); ``enum`` / ``const``,
``Literal`` (floats, objects and arrays cannot be literals: their JSON types instead);
arrays, ``list[...]``; ``anyOf`` / ``oneOf`` / a list of types, a union; ``allOf``, its members
merged; a local ``$ref``, what it points to; ``nullable``, ``| None``. Anything the schema
leaves open is ``Any``. A schema the generator cannot express (a ``$ref`` it cannot follow, an
unknown type, ``allOf`` members of conflicting types) is ``Any`` too, with a warning.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ._names import Names, words

__all__ = ["Alias", "Key", "Shape", "Translator", "literal"]

_SCALARS = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "null": "None"}
_MAX_DEPTH = 32  # deeper than any real body; past it a value is Any (no recursion error)


@attrs.frozen
class Key:
    """One key of a TypedDict: its JSON name, its type, whether it is required, its doc."""

    name: str
    type: str
    required: bool
    doc: str | None = None


@attrs.frozen
class Shape:
    """A TypedDict. ``extra``: the type of extra keys the schema allows (``additionalProperties``
    true or a schema), None when it says nothing or forbids them."""

    name: str
    keys: tuple[Key, ...]
    doc: str | None = None
    extra: str | None = None


@attrs.frozen
class Alias:
    """``name = value`` (a part that is not a TypedDict), or ``name = Literal[items]``."""

    name: str
    value: str = ""
    items: tuple[str, ...] = ()


def literal(value: Any) -> str | None:
    """``value`` as a ``Literal`` argument, or None when Literal cannot hold it."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # ASCII-only, double-quoted, valid Python
    return None


def _value_type(value: Any) -> str:
    for kind, name in _VALUE_TYPES:
        if isinstance(value, kind):
            return name
    return "Any"


_VALUE_TYPES: tuple[tuple[type, str], ...] = (
    (type(None), "None"),
    (bool, "bool"),
    (int, "int"),
    (float, "float"),
    (str, "str"),
    (list, "list[Any]"),
    (dict, "dict[str, Any]"),
)


def union(types: list[str]) -> str:
    """``A | B``: duplicates dropped, ``None`` last, ``Any`` absorbing everything."""
    seen = list(dict.fromkeys(types))
    if not seen or "Any" in seen:
        return "Any"
    return " | ".join([t for t in seen if t != "None"] + (["None"] if "None" in seen else []))


def _hint(key: str) -> str:
    return "".join(w[0].upper() + w[1:].lower() for w in words(key)) or "Key"


def doc_of(schema: Any) -> str | None:
    """A schema's description (or its title)."""
    if not isinstance(schema, Mapping):
        return None
    text = schema.get("description") or schema.get("title")
    return text.strip() or None if isinstance(text, str) else None


def _token(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


class Translator:
    """Translates the parts of one module's actions; :attr:`defs` collects the TypedDicts and
    aliases in an order where each is defined before it is used."""

    def __init__(self, names: Names, warn: Callable[[str], None]) -> None:
        self.names = names
        self.defs: list[Shape | Alias] = []
        self._warn = warn
        self._label = ""
        self._root: Any = None
        self._refs: list[str] = []

    def part(self, schema: Any, name: str, label: str) -> Shape | Alias:
        """Translate one action part (``label`` names it in warnings) under ``name``, which the
        caller claimed; returns its definition."""
        self._label, self._root, self._refs = label, schema, []
        self.names.taken.discard(name)  # its TypedDict or Literal claims it back first
        expr = self._type(_not_null(schema), name, "", 0)
        if expr == "None":  # nothing to send but null: no type to give the part
            expr = self._give_up("", "a part that can only be null")
        if expr != name:
            self.defs.append(Alias(self.names.claim(name), expr))
        return self.defs[-1]

    def _give_up(self, pointer: str, why: str) -> str:
        self._warn(f"{self._label} {pointer or '/'}: {why}; typed Any")
        return "Any"

    def _type(self, schema: Any, hint: str, pointer: str, depth: int) -> str:
        if schema is True or schema is None:
            return "Any"
        if not isinstance(schema, Mapping):
            return self._give_up(pointer, f"not a schema ({type(schema).__name__})")
        if depth > _MAX_DEPTH:
            return self._give_up(pointer, f"nested deeper than {_MAX_DEPTH}")
        if "$ref" in schema:
            return self._ref(schema["$ref"], hint, pointer, depth)
        expr = self._shape(schema, hint, pointer, depth)
        return union([expr, "None"]) if schema.get("nullable") is True else expr

    def _shape(self, schema: Mapping[str, Any], hint: str, pointer: str, depth: int) -> str:
        if "enum" in schema or "const" in schema:
            values = schema["enum"] if "enum" in schema else [schema["const"]]
            return self._enum(values, hint, pointer)
        for word in ("anyOf", "oneOf"):
            if isinstance(schema.get(word), list) and schema[word]:
                return union(
                    [
                        self._type(m, f"{hint}Option{i}", f"{pointer}/{word}/{i - 1}", depth + 1)
                        for i, m in enumerate(schema[word], 1)
                    ]
                )
        if isinstance(schema.get("allOf"), list) and schema["allOf"]:
            merged = self._merge(schema, pointer)
            return "Any" if merged is None else self._type(merged, hint, pointer, depth + 1)
        kinds = schema.get("type")
        if kinds is None:
            kinds = _implied_type(schema)
        if isinstance(kinds, str):
            kinds = [kinds]
        if not isinstance(kinds, list) or not kinds:
            return "Any"  # no type: the schema leaves the value open
        return union([self._of_type(k, schema, hint, pointer, depth) for k in kinds])

    def _of_type(
        self, kind: Any, schema: Mapping[str, Any], hint: str, pointer: str, depth: int
    ) -> str:
        if kind in _SCALARS:
            return _SCALARS[kind]
        if kind == "array":
            items = schema.get("items")
            if isinstance(items, list):  # a tuple schema: positions differ, no one item type
                return "list[Any]"
            item = (
                "Any"
                if items is None
                else self._type(items, hint + "Item", pointer + "/items", depth + 1)
            )
            return f"list[{item}]"
        if kind == "object":
            return self._object(schema, hint, pointer, depth)
        return self._give_up(pointer, f"unknown type {kind!r}")

    def _enum(self, values: Any, hint: str, pointer: str) -> str:
        if not isinstance(values, list) or not values:
            return self._give_up(pointer, "an enum without values")
        items = [literal(v) for v in values]
        if any(i is None for i in items):  # a float, object or array: their JSON types
            return union([_value_type(v) for v in values])
        kept = tuple(dict.fromkeys(i for i in items if i is not None and i != "None"))
        if not kept:
            return "None"
        if len(kept) == 1:
            expr = f"Literal[{kept[0]}]"
        else:
            expr = self.names.claim(hint)
            self.defs.append(Alias(expr, items=kept))
        return union([expr, "None"]) if "None" in items else expr

    def _object(self, schema: Mapping[str, Any], hint: str, pointer: str, depth: int) -> str:
        props = schema.get("properties")
        props = props if isinstance(props, Mapping) else {}
        more = schema.get("additionalProperties")
        if not props:
            if isinstance(more, Mapping) and more:
                value = self._type(more, hint + "Value", pointer + "/additionalProperties", depth)
                return f"dict[str, {value}]"
            return "dict[str, Any]"
        name = self.names.claim(hint)
        required = schema.get("required")
        required = [r for r in required if isinstance(r, str)] if isinstance(required, list) else []
        keys = [
            Key(
                key,
                self._type(sub, name + _hint(key), f"{pointer}/{_token(key)}", depth + 1),
                key in required,
                doc_of(sub),
            )
            for key, sub in props.items()
            if isinstance(key, str)
        ]
        keys += [Key(key, "Any", True) for key in dict.fromkeys(required) if key not in props]
        extra = None
        if more is True or (isinstance(more, Mapping) and not more):
            extra = "Any"
        elif isinstance(more, Mapping):
            extra = self._type(more, name + "Value", pointer + "/additionalProperties", depth)
        self.defs.append(Shape(name, tuple(keys), doc_of(schema), extra))
        return name

    def _ref(self, ref: Any, hint: str, pointer: str, depth: int) -> str:
        target, problem = self._follow(ref)
        if problem:
            return self._give_up(pointer, problem)
        self._refs.append(ref)
        try:
            return self._type(target, hint, pointer, depth + 1)
        finally:
            self._refs.pop()

    def _follow(self, ref: Any) -> tuple[Any, str]:
        """What a local ``$ref`` points to in the part's schema, or why it cannot be followed."""
        if not isinstance(ref, str) or not ref.startswith("#"):
            return None, f"$ref {ref!r} is not in this schema"
        if ref in self._refs:
            return None, f"$ref {ref!r} refers to itself"
        target: Any = self._root
        for token in filter(None, ref[1:].split("/")):
            token = token.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, Mapping) or token not in target:
                return None, f"$ref {ref!r} points nowhere"
            target = target[token]
        return target, ""

    def _merge(self, schema: Mapping[str, Any], pointer: str) -> dict[str, Any] | None:
        """``allOf``'s members (and the schema beside them) as one schema: properties and
        required lists joined, a property in two members an ``allOf`` of both; None (and a
        warning) when members disagree on the type or one is not an object schema."""
        merged: dict[str, Any] = {}
        members = [{k: v for k, v in schema.items() if k != "allOf"}, *schema["allOf"]]
        for member in members:
            if isinstance(member, Mapping) and "$ref" in member:
                member, problem = self._follow(member["$ref"])
                if problem:
                    self._give_up(pointer, problem)
                    return None
            if not isinstance(member, Mapping):
                self._give_up(pointer, "an allOf member that is not a schema")
                return None
            for key, value in member.items():
                if key == "properties":
                    if isinstance(value, Mapping):
                        props = merged.setdefault("properties", {})
                        for name, sub in value.items():
                            props[name] = {"allOf": [props[name], sub]} if name in props else sub
                elif key == "required":
                    if isinstance(value, list):
                        merged["required"] = [*merged.get("required", []), *value]
                elif key == "type" and merged.get("type", value) != value:
                    self._give_up(pointer, "allOf members of different types")
                    return None
                else:
                    merged.setdefault(key, value)
        return merged


def _implied_type(schema: Mapping[str, Any]) -> str | None:
    if "properties" in schema or "additionalProperties" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return None


def _not_null(schema: Any) -> Any:
    """A part's schema without its ``null`` alternative: a part that is None is not sent."""
    if not isinstance(schema, Mapping):
        return schema
    kinds = schema.get("type")
    out = {k: v for k, v in schema.items() if k != "nullable"}
    if isinstance(kinds, list) and "null" in kinds:
        rest = [k for k in kinds if k != "null"]
        out["type"] = rest[0] if len(rest) == 1 else rest
    return out
