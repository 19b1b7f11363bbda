"""The SDK's logger, ``ALLOY_LOG`` and the ``User-Agent``: process-wide, computed once."""

from __future__ import annotations

import logging
import os
import platform

from ._version import __version__

__all__ = ["configure_logging_from_env", "logger", "user_agent"]

logger = logging.getLogger("alloy_async")


def _user_agent() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        aiohttp_version = version("aiohttp")
    except PackageNotFoundError:  # pragma: no cover - aiohttp is a dependency
        aiohttp_version = "unknown"
    return f"alloy-async/{__version__} python/{platform.python_version()} aiohttp/{aiohttp_version}"


_USER_AGENT: str | None = None


def user_agent() -> str:
    """The ``User-Agent`` every request carries (computed once)."""
    global _USER_AGENT
    if _USER_AGENT is None:
        _USER_AGENT = _user_agent()
    return _USER_AGENT


def configure_logging_from_env() -> None:
    """``ALLOY_LOG=debug|info`` attaches a stderr handler to the ``alloy_async`` logger."""
    level = os.environ.get("ALLOY_LOG", "").strip().lower()
    if level not in ("debug", "info") or any(
        getattr(h, "_alloy_env", False) for h in logger.handlers
    ):
        return
    handler = logging.StreamHandler()
    handler._alloy_env = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if level == "debug" else logging.INFO)
