"""A TCP proxy on loopback that can cut every connection passing through it (to drop websockets mid-job), and can
terminate TLS in front of a plain server (`ssl_context`: a broker reached over amqps://).

Runs in the test's event loop: `async with TcpProxy(upstream_port) as proxy: ... await proxy.cut()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from types import TracebackType

_CHUNK_BYTES = 64 * 1024


class TcpProxy:
    def __init__(
        self, upstream_port: int, upstream_host: str = "127.0.0.1", *, ssl_context: ssl.SSLContext | None = None
    ):
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.cut_count = 0
        self.accepted = 0  # connections taken (over TLS, with `ssl_context`: only ones whose handshake succeeded)
        self._ssl = ssl_context
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, ssl=self._ssl)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    @property
    def open_connections(self) -> int:
        return len(self._writers) // 2

    async def cut(self) -> int:
        """Abort every connection open right now (both sides); returns how many were cut."""
        writers = list(self._writers)
        for writer in writers:
            writer.transport.abort()
        self._writers.clear()
        self.cut_count += 1
        return len(writers) // 2

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.transport.abort()
            return
        self._writers.update((client_writer, upstream_writer))
        for reader, writer in ((client_reader, upstream_writer), (upstream_reader, client_writer)):
            task = asyncio.create_task(self._pipe(reader, writer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while chunk := await reader.read(_CHUNK_BYTES):
                writer.write(chunk)
                await writer.drain()
        self._writers.discard(writer)
        writer.transport.abort()
