"""A virtual clock for asyncio: sleeps, timeouts and backoff waits finish at once.

:class:`VirtualTimeLoop` is a selector event loop whose ``time()`` is virtual. Whenever the loop
has nothing ready to run and would block waiting for a timer, it jumps its clock forward to that
timer instead. Code under test keeps calling plain ``asyncio.sleep`` / ``loop.time()`` /
``asyncio.wait_for``; nothing in the SDK knows about the fake clock, so production paths pay
nothing for it.

Real I/O still works (sockets are polled without waiting), but timers then race real I/O, so use
this loop with in-process transports (``FakeTransport`` / ``FakeAlloy``) only.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

__all__ = ["VirtualTimeLoop", "run_virtual"]

T = TypeVar("T")


class _VirtualSelector(selectors.DefaultSelector):
    """Polls without blocking; reports a timeout as time to skip instead of waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.loop: VirtualTimeLoop | None = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = super().select(0)
        if events or timeout is None or timeout <= 0 or self.loop is None:
            if not events and timeout is None:
                # Nothing scheduled at all: only real I/O (or another thread) can wake us.
                return super().select(None)
            return events
        self.loop.advance(timeout)
        return events


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock only moves when every task is waiting on a timer."""

    def __init__(self) -> None:
        selector = _VirtualSelector()
        super().__init__(selector)
        selector.loop = self
        self._virtual_now = 0.0

    def time(self) -> float:
        """The virtual time, in seconds since the loop was created."""
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        """Move the clock forward (used by the selector; tests may call it too)."""
        if seconds > 0:
            self._virtual_now += seconds


def run_virtual(main: Coroutine[Any, Any, T] | Awaitable[T], *, debug: bool = True) -> T:
    """Run ``main`` to completion on a fresh :class:`VirtualTimeLoop` and close it."""
    loop = VirtualTimeLoop()
    loop.set_debug(debug)
    try:
        return loop.run_until_complete(main)
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
