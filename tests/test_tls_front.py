"""The TLS front of the sandbox (``alloy_async.testing._tls_front``): its pipe ends when the
TLS session does."""

from __future__ import annotations

import asyncio
import socket
import ssl

from alloy_async.testing._tls_front import _pipe


class _EndedSession:
    """An SSLObject whose session is over: OpenSSL answers every read with b"" (seen with
    aiohttp's lowest allowed version, once the front had sent its close_notify)."""

    def __init__(self) -> None:
        self.reads = 0

    def read(self, size: int) -> bytes:
        self.reads += 1
        assert self.reads < 100, "the pipe kept reading an ended TLS session (a busy loop)"
        return b""


async def _stream_pair() -> tuple[asyncio.StreamReader, asyncio.StreamWriter, socket.socket]:
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=ours)
    return reader, writer, theirs


async def test_the_pipe_ends_when_the_tls_session_has_ended() -> None:
    """Catches: treating a read of b"" as "no data yet". The pipe then looped on ``tls.read``
    without ever awaiting, and the sandbox's event loop (a whole test run, under `.ci/latest`'s
    lowest versions) hung at 100 % CPU."""
    reader, writer, client = await _stream_pair()
    up_reader, up_writer, upstream = await _stream_pair()
    tls = _EndedSession()
    try:
        await asyncio.wait_for(
            _pipe(
                tls,  # type: ignore[arg-type]
                reader,
                writer,
                ssl.MemoryBIO(),
                ssl.MemoryBIO(),
                up_reader,
                up_writer,
            ),
            5,
        )
    finally:
        for w in (writer, up_writer):
            w.close()
            await w.wait_closed()
        client.close()
        upstream.close()
    assert tls.reads == 1
