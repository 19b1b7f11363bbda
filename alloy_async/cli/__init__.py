"""The ``alloy-async`` command: a sandbox demo, bulk runs from JSON Lines, one-off calls.

Needs the ``cli`` extra (click, rich): ``pip install 'alloy-async[cli]'``.

One module per command group: :mod:`.demo`, :mod:`.bulk` (with its input, options and output
beside it), :mod:`.sandbox` and :mod:`.calls` (users, connectors, actions, credentials);
:mod:`._common` holds the shared options, client and output helpers, :mod:`._main` the group.
"""

from __future__ import annotations

try:
    from ._main import main
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    if (exc.name or "").partition(".")[0] not in {"click", "rich"}:
        raise
    raise SystemExit(
        "the alloy-async command needs the cli extra: pip install 'alloy-async[cli]'"
    ) from exc

__all__ = ["main"]
