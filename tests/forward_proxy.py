"""A forward HTTP proxy on 127.0.0.1 for the tests: CONNECT tunnels and plain-http relaying.

It counts what it relays (``tunnels``: CONNECT targets; ``relayed``: plain-http URLs),
optionally requires ``Proxy-Authorization`` (``credentials=("user", "pass")``: anything else
gets 407, counted in ``refused``), and keeps every ``Proxy-Authorization`` value it received
(``auth_seen``). It only ever connects to loopback targets. Usage::

    async with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        ...
        assert proxy.tunnels == ["127.0.0.1:<port>"]
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from urllib.parse import urlsplit

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_407 = (
    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
    b'Proxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'
)


class ForwardProxy:
    """See the module docstring."""

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self._expected = None
        if credentials is not None:
            token = base64.b64encode(":".join(credentials).encode()).decode()
            self._expected = f"Basic {token}"
        self.tunnels: list[str] = []
        self.relayed: list[str] = []
        self.refused = 0
        self.auth_seen: list[str] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> ForwardProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._writers.add(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            await self._handle(head, reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _handle(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ")
        headers = [line.split(":", 1) for line in lines[1:] if ":" in line]
        fields = {name.strip().lower(): value.strip() for name, value in headers}
        auth = fields.get("proxy-authorization")
        if auth is not None:
            self.auth_seen.append(auth)
        if self._expected is not None and auth != self._expected:
            self.refused += 1
            writer.write(_407)
            await writer.drain()
            return
        if method == "CONNECT":
            await self._tunnel(target, reader, writer)
        else:
            kept = [(n, v) for n, v in headers if n.strip().lower() not in _HOP_BY_HOP]
            await self._relay(method, target, kept, reader, writer, fields)

    async def _tunnel(
        self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        host, _, port = target.rpartition(":")
        assert host.strip("[]") in _LOOPBACK, target
        self.tunnels.append(target)
        up_reader, up_writer = await asyncio.open_connection(host.strip("[]"), int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        try:
            await _both_ways(reader, writer, up_reader, up_writer)
        finally:
            up_writer.close()

    async def _relay(
        self,
        method: str,
        target: str,
        headers: list[list[str]],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        fields: dict[str, str],
    ) -> None:
        """One plain-http request, sent on with ``Connection: close``; the answer is relayed
        as it comes, then the client's connection is closed too."""
        url = urlsplit(target)
        assert url.hostname in _LOOPBACK, target
        self.relayed.append(target)
        body = await reader.readexactly(int(fields.get("content-length", "0")))
        path = url.path + (f"?{url.query}" if url.query else "")
        out = [f"{method} {path} HTTP/1.1", *(f"{n}:{v}" for n, v in headers)]
        out.append("Connection: close")
        up_reader, up_writer = await asyncio.open_connection(url.hostname, url.port or 80)
        try:
            up_writer.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + body)
            await up_writer.drain()
            while chunk := await up_reader.read(65536):
                writer.write(chunk)
                await writer.drain()
        finally:
            up_writer.close()


_HOP_BY_HOP = {"proxy-authorization", "proxy-connection", "connection", "keep-alive"}


async def _both_ways(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
) -> None:
    async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while chunk := await src.read(65536):
                dst.write(chunk)
                await dst.drain()

    tasks = [
        asyncio.ensure_future(pump(reader, up_writer)),
        asyncio.ensure_future(pump(up_reader, writer)),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
