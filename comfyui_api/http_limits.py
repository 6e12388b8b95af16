"""Per-connection limits uvicorn lacks: a cap on the request head (431), a deadline for the head to arrive (408,
then closed) and an idle deadline while a body is read. Without them a client that trickles its headers, or sends a
64 MB header, holds a connection and its memory for as long as it likes.

`bounded_protocol(settings.server)` returns the httptools protocol class to give `uvicorn.Config(http=...)`; its
connections write a small response in one go (`http_writes.py`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from comfyui_api.http_writes import CoalescingTransport
from comfyui_api.settings import ServerSettings

_STATUS = {408: b"408 Request Timeout", 431: b"431 Request Header Fields Too Large"}


class _BoundedProtocol(HttpToolsProtocol):
    max_header_bytes = 64 * 1024
    header_timeout_s = 15.0
    body_read_timeout_s = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return  # refused: ignore what the client still sends
        if self._in_head:
            self._head_bytes += len(data)
        elif self._body_timer is not None:
            self._arm_body_timer()
        super().data_received(data)
        if self._in_head and self._head_bytes > self.max_header_bytes and not self.transport.is_closing():
            self._refuse(431, "request line and headers exceed MAX_HEADER_BYTES")

    def on_message_begin(self) -> None:  # a keep-alive connection's next request is timed from its first byte
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0
        self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().on_headers_complete()
        if not self.parser.should_upgrade() and self.cycle is not None and self.cycle.more_body:
            self._arm_body_timer()

    def on_message_complete(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _arm_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
        self._body_timer = self.loop.call_later(self.body_read_timeout_s, self._body_timed_out)

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._in_head:
            return
        self._refuse(408, "the request's headers did not arrive within HEADER_TIMEOUT_S")

    def _body_timed_out(self) -> None:
        self._body_timer = None
        if self.transport.is_closing():
            return
        if self.flow.read_paused:  # we stopped reading (the app is busy with what it has): not the client's fault
            self._arm_body_timer()
            return
        self.logger.info("closing a connection whose request body stalled for %gs", self.body_read_timeout_s)
        self.transport.close()  # the app sees the client gone (http.disconnect) and drops the partial body

    def _refuse(self, status: int, message: str) -> None:
        body = message.encode("ascii")
        head = b"HTTP/1.1 %s\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n" % (
            _STATUS[status],
            len(body),
        )
        self.transport.write(head + b"connection: close\r\n\r\n" + body)
        self.transport.close()
        self._cancel_timers()


def bounded_protocol(settings: ServerSettings) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with the server's header cap and read timeouts."""
    return type(
        "BoundedHttpToolsProtocol",
        (_BoundedProtocol,),
        {
            "max_header_bytes": settings.max_header_bytes,
            "header_timeout_s": settings.header_timeout_s,
            "body_read_timeout_s": settings.body_read_timeout_s,
        },
    )
