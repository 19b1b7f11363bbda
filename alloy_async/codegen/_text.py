"""Pieces of generated source: docstrings, comments and TypedDict / alias definitions, laid
out as ``ruff format`` (and black) lays them out, so a formatter leaves the files alone."""

from __future__ import annotations

import json
import keyword
import re
import textwrap

from ._schema import Alias, Key, Shape

__all__ = ["WIDTH", "comment", "define", "docstring", "quote"]

#: The line length the generated code keeps to (ruff's and black's default).
WIDTH = 88

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u2029]")


def quote(text: str) -> str:
    """A double-quoted, ASCII-only Python string literal."""
    return json.dumps(text)


def _paragraphs(text: str, width: int) -> list[str]:
    """``text`` wrapped to ``width``, blank lines between paragraphs kept."""
    text = _CONTROL.sub(" ", text.replace("\r\n", "\n").replace("\r", "\n"))
    lines: list[str] = []
    for para in re.split(r"\n\s*\n", text.strip()):
        if lines:
            lines.append("")
        lines += textwrap.wrap(" ".join(para.split()), width, break_on_hyphens=False) or [""]
    return lines


def docstring(text: str, indent: str) -> list[str]:
    """A docstring of ``text``: one line when it fits, else wrapped lines and the closing
    quotes on a line of their own."""
    text = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    # Room for both quotes: text that wraps to one line is a one-line docstring (a formatter
    # would join a lone line and its closing quotes anyway).
    lines = _paragraphs(text, WIDTH - len(indent) - 6)
    if lines[-1].endswith('"'):
        lines[-1] += " "  # as black does: four quotes in a row would end the string early
    if len(lines) == 1:
        return [f'{indent}"""{lines[0]}"""']
    rest = [f"{indent}{line}" if line else "" for line in lines[1:]]
    return [f'{indent}"""{lines[0]}', *rest, f'{indent}"""']


def comment(text: str | None, indent: str) -> list[str]:
    """``#:`` lines documenting the key below them."""
    if not text:
        return []
    return [f"{indent}#: {line}".rstrip() for line in _paragraphs(text, WIDTH - len(indent) - 3)]


def _plain(key: str, taken: set[str]) -> bool:
    """Whether a key can be a class-syntax field: an ASCII identifier, no keyword, no name
    mangling (``__x``), and no name the module binds (a field may not shadow a type)."""
    return (
        key.isascii()
        and key.isidentifier()
        and not keyword.iskeyword(key)
        and not key.startswith("__")
        and key not in taken
    )


def _field_type(key: Key) -> str:
    return key.type if key.required else f"NotRequired[{key.type}]"


def _extra_note(shape: Shape) -> str:
    if shape.extra is None:
        return ""
    return (
        f"Extra keys are allowed (values: {shape.extra}). mypy accepts only the keys below: "
        f"add others with ``alloy_async.codegen.with_extra({shape.name}({{...}}), {{...}})``."
    )


def define(item: Shape | Alias, taken: set[str]) -> list[str]:
    """The source of one definition (without the blank lines around it)."""
    if isinstance(item, Alias):
        return _alias(item)
    doc = "\n\n".join(filter(None, [item.doc, _extra_note(item)]))
    if all(_plain(k.name, taken) for k in item.keys):
        lines = [f"class {item.name}(TypedDict):"]
        if doc:
            lines += [*docstring(doc, "    "), ""]
        for key in item.keys:
            lines += [*comment(key.doc, "    "), f"    {key.name}: {_field_type(key)}"]
        return lines
    # Keys Python cannot spell as fields: the functional syntax, documented by comments.
    lines = [line.replace("#:", "#", 1) for line in comment(doc, "")]
    lines += [f"{item.name} = TypedDict(", f"    {quote(item.name)},", "    {"]
    for key in item.keys:
        lines += [*comment(key.doc, "        "), f"        {quote(key.name)}: {_field_type(key)},"]
    return [*lines, "    },", ")"]


def _alias(alias: Alias) -> list[str]:
    if not alias.items:
        return [f"{alias.name} = {alias.value}"]
    one = f"{alias.name} = Literal[{', '.join(alias.items)}]"
    if len(one) <= WIDTH:
        return [one]
    return [f"{alias.name} = Literal[", *(f"    {item}," for item in alias.items), "]"]
