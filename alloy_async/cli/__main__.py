"""``python -m alloy_async.cli``: the ``alloy-async`` command."""

from __future__ import annotations

import os

from ._main import main

if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
