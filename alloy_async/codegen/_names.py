"""Identifiers from API ids: module, class, method and type names, and deterministic clash
resolution (the first claimant keeps a name; later ones get a numbered one, reported)."""

from __future__ import annotations

import keyword
import re

__all__ = ["Names", "module_name", "pascal", "snake", "words"]

# A lower-case letter or digit followed by an upper-case one starts a word (``listContacts``),
# and so does the last capital of a run followed by lower case (``HTTPRequest``).
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]+")


def words(text: str) -> list[str]:
    """The words of an id: split at camelCase boundaries and at anything not an ASCII letter
    or digit (``chat_postMessage`` -> chat, post, Message)."""
    return [w for w in _NOT_ALNUM.split(_CAMEL.sub("_", text)) if w]


def _safe(name: str, empty: str) -> str:
    if not name:
        name = empty
    if name[0].isdigit():
        name = "_" + name
    if keyword.iskeyword(name):
        name += "_"
    return name


def snake(text: str) -> str:
    """``create-contact`` / ``listContacts`` -> ``create_contact`` / ``list_contacts``."""
    return _safe("_".join(w.lower() for w in words(text)), "action")


def pascal(text: str) -> str:
    """``create-contact`` / ``listContacts`` -> ``CreateContact`` / ``ListContacts``."""
    return _safe("".join(w[0].upper() + w[1:].lower() for w in words(text)), "Key")


def module_name(connector_id: str) -> str:
    """The issue's rule: lower case, any other character ``_``, a leading digit gets ``_``
    (``acme-crm`` -> ``acme_crm``); a keyword gets a trailing ``_`` so it can be imported."""
    return _safe(re.sub(r"[^a-z0-9_]", "_", connector_id.lower()), "connector")


class Names:
    """The names taken in one scope (a module, a class); :meth:`claim` hands out free ones."""

    def __init__(self, reserved: set[str] | frozenset[str] = frozenset()) -> None:
        self.taken = set(reserved)

    def free(self, *names: str) -> bool:
        """Whether every name is still free."""
        return not any(n in self.taken for n in names)

    def claim(self, base: str, *, separator: str = "", companions: tuple[str, ...] = ()) -> str:
        """``base``, or ``base<separator>2``, ``3``... the first free one; each of
        ``companions`` (suffixes such as ``_job``) must be free beside it and is taken too."""
        number = 1
        name = base
        while not self.free(name, *(name + c for c in companions)):
            number += 1
            name = f"{base}{separator}{number}"
        self.taken.update([name, *(name + c for c in companions)])
        return name
