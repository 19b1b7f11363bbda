"""SIGINT and SIGTERM, the same way for every command: the first asks it to stop, the next to
give up now.

What stopping means is each command's (``bulk`` stops dispatch and gives the calls in flight
``--grace`` seconds, ``bulk --redis`` stops sending and waits for its chunks, ``worker`` takes
no new chunk, ``sandbox`` stops serving); which signal counts, what a later one does, and the
exit code a signal leaves (128 + its number) are here.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from types import TracebackType

__all__ = ["SIGNALS", "Signals", "wait_for_stop"]

#: The signals a command handles (Ctrl-C, and what ``kill``, systemd and Kubernetes send).
SIGNALS = (signal.SIGINT, signal.SIGTERM)

Handler = Callable[[signal.Signals], None]


class Signals:
    """SIGINT / SIGTERM handlers on the running loop while a command runs.

    The first signal is :attr:`received` and calls ``on_stop(sig)``; each later one calls
    ``on_give_up(sig)``; after :meth:`ignore`, a signal does nothing. A context manager
    (:meth:`install` on entry, :meth:`remove` on exit); where the loop cannot take signal
    handlers (Windows, not the main thread) none is installed, and Ctrl-C interrupts as
    Python's default does.
    """

    def __init__(self, on_stop: Handler, on_give_up: Handler | None = None) -> None:
        self.received: signal.Signals | None = None
        #: A later signal came: give up now.
        self.gave_up = False
        self._on_stop = on_stop
        self._on_give_up = on_give_up
        self._loop: asyncio.AbstractEventLoop | None = None
        self._installed: list[signal.Signals] = []
        self._ignoring = False

    @property
    def exit_code(self) -> int:
        """128 + the first signal's number (the shell's convention), or 0 when none came."""
        return 0 if self.received is None else 128 + int(self.received)

    def install(self) -> None:
        """Handle the signals on the running loop."""
        self._loop = asyncio.get_running_loop()
        for sig in SIGNALS:
            try:
                self._loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError, ValueError):  # pragma: no cover
                continue  # Windows, or not the main thread: Ctrl-C cancels instead
            self._installed.append(sig)

    def remove(self) -> None:
        """Give the signals back to Python's defaults."""
        for sig in self._installed:
            if self._loop is not None:
                with contextlib.suppress(RuntimeError, ValueError):
                    self._loop.remove_signal_handler(sig)
        self._installed.clear()

    def ignore(self) -> None:
        """From now on a signal does nothing: the command is done and about to exit."""
        self._ignoring = True

    def __enter__(self) -> Signals:
        self.install()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()

    def _on_signal(self, sig: signal.Signals) -> None:
        if self._ignoring:
            return
        if self.received is None:
            self.received = sig
            self._on_stop(sig)
        else:
            self.gave_up = True
            if self._on_give_up is not None:
                self._on_give_up(sig)


async def wait_for_stop() -> None:
    """Return on the first SIGINT or SIGTERM (servers that run until stopped)."""
    stop = asyncio.Event()
    # Left installed until the loop closes (asyncio.run removes them): a second signal while
    # the server shuts down sets the event again and interrupts nothing.
    Signals(lambda _: stop.set(), lambda _: stop.set()).install()
    await stop.wait()
