"""One write per small HTTP response. uvicorn writes a response's status line and headers as soon as the app starts
the response, then its body in a second write: two TCP segments on the wire, and two wake-ups of the client, which
reads the head, parses it and goes back to wait for the body. `CoalescingTransport` holds a response head until
the body's first write and sends both at once; a head whose body does not follow in the same turn of the event loop
(a streamed answer still being produced) leaves at the end of that turn. Nothing else is held: a body, a websocket
frame or anything after an upgrade is written as it comes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

_MAX_HELD_BYTES = 64 * 1024  # a response head is a few hundred bytes; anything larger is written at once
_MAX_JOINED_BYTES = 64 * 1024  # a larger body is written after the head, not copied onto it


def _is_response_head(data: bytes | bytearray | memoryview) -> bool:
    return len(data) <= _MAX_HELD_BYTES and data[:7] == b"HTTP/1." and data[-4:] == b"\r\n\r\n"


class CoalescingTransport:
    """A connection's transport that holds a response head until its body's first write (or the end of this turn
    of the loop). Everything but writing and closing goes to the transport as it is."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held, self._held = self._held, None
        if held is not None:
            if len(data) <= _MAX_JOINED_BYTES:
                self._transport.write(held + bytes(data))
                return
            self._transport.write(held)
        elif _is_response_head(data):
            self._held = bytes(data)
            self._loop.call_soon(self.flush)
            return
        self._transport.write(data)

    def writelines(self, chunks: Iterable[bytes | bytearray | memoryview]) -> None:
        self.write(b"".join(chunks))

    def flush(self) -> None:
        """Write the held head, if any."""
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held or b"")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
