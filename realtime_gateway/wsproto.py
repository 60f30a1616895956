"""uvicorn's sans-I/O WebSocket protocol, with a bounded outbox written to the transport.

The ASGI ``send`` path costs an await, a websockets frame object and a copy per message.
For fan-out the gateway instead writes prebuilt frames (see :mod:`realtime_gateway.frames`)
straight to each connection's transport through an :class:`Outbox`, which bounds what a
slow reader may hold and closes it with 4408 when it overflows. Incoming frames, the
handshake, pings and the close handshake stay uvicorn's and websockets'.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState

from common.errors import CloseCode


__all__ = ["OUTBOX_EXTENSION", "GatewayWebSocketProtocol", "Outbox"]

#: The ASGI scope extension under which the protocol offers itself to the app.
OUTBOX_EXTENSION = "realtime.outbox"


class Outbox:
    """A connection's outbound queue: the transport's buffer, then a bounded backlog.

    While the transport accepts writes, a frame goes straight to it (the kernel or the
    transport buffers it). Once the transport's buffer passes its high-water mark, frames
    wait in a backlog of at most ``max_messages`` frames and ``max_bytes`` bytes, flushed
    in one write when the transport drains. Past either bound, the reader is too slow:
    the backlog is dropped and the connection closed with 4408 (slow consumer), which
    costs the other connections nothing.
    """

    __slots__ = (
        "_backlog",
        "_backlog_bytes",
        "_max_bytes",
        "_max_messages",
        "_paused",
        "_protocol",
        "_transport",
        "close_code",
        "closed",
    )

    def __init__(
        self, protocol: GatewayWebSocketProtocol, *, max_messages: int, max_bytes: int
    ) -> None:
        self._protocol = protocol
        self._transport = protocol.transport
        self._backlog: deque[bytes] = deque()
        self._backlog_bytes = 0
        self._max_messages = max_messages
        self._max_bytes = max_bytes
        self._paused = False
        self.closed = False
        self.close_code: int | None = None
        protocol.outbox = self

    def send(self, frame: bytes) -> bool:
        """Queue one frame; False when the connection is closed or just overflowed."""
        if self.closed:
            return False
        if not self._paused:
            self._transport.write(frame)
            return True
        self._backlog.append(frame)
        self._backlog_bytes += len(frame)
        if len(self._backlog) > self._max_messages or self._backlog_bytes > self._max_bytes:
            self._backlog.clear()
            self._backlog_bytes = 0
            self.close(CloseCode.SLOW_CONSUMER, "slow consumer")
            return False
        return True

    def close(self, code: int, reason: str = "") -> None:
        """Send a close frame after what is queued; abort if the peer never reads it."""
        if self.closed:
            return
        self.closed = True
        self.close_code = code
        self._flush()
        self._protocol.close_now(code, reason)

    def pause(self) -> None:
        self._paused = True

    def resume(self) -> None:
        self._paused = False
        self._flush()

    def lost(self) -> None:
        self.closed = True
        self._backlog.clear()

    def _flush(self) -> None:
        if self._backlog:
            data = b"".join(self._backlog)
            self._backlog.clear()
            self._backlog_bytes = 0
            self._transport.write(data)


class GatewayWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's ``websockets-sansio`` implementation plus the gateway's outbox hooks."""

    outbox: Outbox | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outbox = None
        #: The close code this side sent, if it started the closing handshake.
        self.server_close_code: int | None = None

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][OUTBOX_EXTENSION] = {"protocol": self}

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.outbox is not None:
            self.outbox.pause()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.outbox is not None:
            self.outbox.resume()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.outbox is not None:
            self.outbox.lost()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        # uvicorn sends 1012 and closes; a peer that never reads would hold the transport
        # open past the grace time, so abort it after the close timeout.
        if self.outbox is not None:
            self.outbox.closed = True
        if self.handshake_complete and not self.close_sent:
            self.server_close_code = CloseCode.SERVICE_RESTART
        super().shutdown()
        self.loop.call_later(self.close_timeout, self.transport.abort)

    def handle_parser_exception(self) -> None:
        # A frame too big (1009), invalid UTF-8 (1007), a protocol error (1002).
        if self.conn.close_sent is not None:
            self.server_close_code = self.conn.close_sent.code
        super().handle_parser_exception()

    def close_now(self, code: int, reason: str) -> None:
        """Start the closing handshake without waiting for the transport to drain.

        ASGI's ``websocket.close`` waits until the transport is writable, which a reader
        that has stopped reading never allows; this writes the close frame behind what is
        buffered and aborts the transport if the peer has not answered in time.
        """
        if self.close_sent or self.transport.is_closing():
            return
        try:
            self.conn.send_close(code, reason)
        except InvalidState:
            return
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.server_close_code = code
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(self.close_timeout, self.transport.abort)
