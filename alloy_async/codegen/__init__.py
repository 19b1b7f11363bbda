"""Typed bindings generated from the live action catalog (``alloy-async codegen``).

``generate(await fetch_catalog(alloy, ["acme-crm"]), api_version=...)`` returns a package:
one module per connector with a ``TypedDict`` per action part (``<Action>Body``,
``<Action>Query``, ``<Action>Path``) and a ``<Connector>Actions`` class whose async methods call
``alloy.actions.execute`` with typed arguments. :func:`write` brings a folder up to date,
:func:`differences` tells whether it is (the command's ``--check``). The generator is this
package's own (no dependency; ``benchmarks/RESULTS.md`` compares it with
datamodel-code-generator).
"""

from __future__ import annotations

from ._extra import with_extra
from ._fetch import fetch_catalog
from ._package import Generated, differences, generate, write

__all__ = ["Generated", "differences", "fetch_catalog", "generate", "with_extra", "write"]
