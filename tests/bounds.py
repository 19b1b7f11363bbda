"""Bounds the tests judge time by without asserting on speed (shared by several test files)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


async def within(limit: float, what: str, aw: Awaitable[T]) -> T:
    """``aw``'s result, or a test failure (never a hang) if it still runs after ``limit`` s."""
    task = asyncio.ensure_future(aw)
    done, _ = await asyncio.wait({task}, timeout=limit)
    if not done:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        pytest.fail(f"{what}: still running after {limit:g} s")
    return task.result()


def max_in_window(times: list[float], window: float) -> int:
    """The most of ``times`` that fall in any ``window`` seconds (a sliding window)."""
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


async def until(condition: Callable[[], bool], what: str, within: float) -> None:
    """Poll ``condition`` on the loop until it holds, failing after ``within`` seconds (for
    what another process changes: there is no event of ours to wait on)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
