"""TLSFront: the sandbox's TLS listener, in front of its plain-http one.

It terminates TLS and pipes the plaintext to the sandbox, as a TLS-terminating load balancer
does in front of the API. asyncio's own TLS server would do for a valid client, but when a
handshake fails (mutual TLS without a client certificate) it drops the connection without
sending the TLS alert; production servers send it, and the client reports it ("certificate
required"). Here the handshake runs over memory buffers, so the alert is always flushed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

__all__ = ["TLSFront"]

_CHUNK = 65536


class TLSFront:
    """Accepts TLS connections on a loopback port and pipes each to ``upstream``.

    Attributes:
        handshakes: TLS connections accepted (each begins one handshake).
        refused: handshakes that failed (the alert was sent to the client).
    """

    def __init__(self, context: ssl.SSLContext, upstream: tuple[str, int]) -> None:
        self._context = context
        self._upstream = upstream
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.handshakes = 0
        self.refused = 0

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port``; returns the port."""
        self._server = await asyncio.start_server(self._serve, host, port, backlog=1024)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening and end every connection."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        # Not task.cancel(): asyncio's stream server reports a cancelled handler as an error.
        # Cutting the connections ends every handler on its own.
        for writer in list(self._writers):
            writer.transport.abort()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._writers.add(writer)
        self.handshakes += 1
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = self._context.wrap_bio(incoming, outgoing, server_side=True)
        try:
            if await self._handshake(tls, reader, writer, incoming, outgoing):
                up_reader, up_writer = await asyncio.open_connection(*self._upstream)
                try:
                    await _pipe(tls, reader, writer, incoming, outgoing, up_reader, up_writer)
                finally:
                    up_writer.close()
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
            pass  # the client went away: nothing to answer
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _handshake(
        self,
        tls: ssl.SSLObject,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
    ) -> bool:
        while True:
            try:
                tls.do_handshake()
            except ssl.SSLWantReadError:
                await _flush(writer, outgoing)
                data = await reader.read(_CHUNK)
                if not data:
                    return False
                incoming.write(data)
            except ssl.SSLError:
                self.refused += 1
                await _flush(writer, outgoing)  # the alert: why the connection is refused
                return False
            else:
                await _flush(writer, outgoing)
                return True


async def _flush(writer: asyncio.StreamWriter, outgoing: ssl.MemoryBIO) -> None:
    data = outgoing.read()
    if data:
        writer.write(data)
        await writer.drain()


async def _pipe(
    tls: ssl.SSLObject,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    incoming: ssl.MemoryBIO,
    outgoing: ssl.MemoryBIO,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
) -> None:
    """Decrypt what the client sends to the upstream and encrypt the answers, until either
    side ends (then both do: a reset upstream is a closed connection for the client)."""

    async def client_to_upstream() -> None:
        # The handshake's last read may already hold the start of the request: decrypt first.
        while True:
            while True:
                try:
                    plain = tls.read(_CHUNK)
                except ssl.SSLWantReadError:
                    break
                except ssl.SSLZeroReturnError:
                    return  # close_notify from the client
                if not plain:
                    # The session is over without an error (OpenSSL answers b"" once it has
                    # shut down, e.g. after our close_notify): reading on would spin forever.
                    return
                up_writer.write(plain)
            await up_writer.drain()
            await _flush(writer, outgoing)  # e.g. a key update the read produced
            data = await reader.read(_CHUNK)
            if not data:
                return
            incoming.write(data)

    async def upstream_to_client() -> None:
        while data := await up_reader.read(_CHUNK):
            tls.write(data)
            await _flush(writer, outgoing)
        with contextlib.suppress(ssl.SSLError):
            tls.unwrap()  # close_notify
        await _flush(writer, outgoing)

    tasks = [
        asyncio.ensure_future(client_to_upstream()),
        asyncio.ensure_future(upstream_to_client()),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            raise result
