"""Calling the application's callbacks, which may be plain functions or coroutine functions."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["call_back"]


async def call_back(fn: Callable[..., Any], *args: Any) -> None:
    """``fn(*args)``, awaited when it returns an awaitable (a sync or an async callback)."""
    result = fn(*args)
    if inspect.isawaitable(result):
        await result
