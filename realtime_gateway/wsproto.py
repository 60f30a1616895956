"""uvicorn's sans-I/O WebSocket protocol, with a bounded outbox written to the transport.

The ASGI ``send`` path costs an await, a websockets frame object and a copy per message.
For fan-out the gateway instead queues prebuilt frames (see :mod:`realtime_gateway.frames`)
to each connection's :class:`Outbox`, which writes them to the transport once per
event-loop pass (:class:`WriteBatcher`), bounds what a slow reader may hold and closes it
with 4408 when it overflows. Incoming frames, the handshake, pings and the close handshake
stay uvicorn's and websockets', with a lighter receive queue and writable flag.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState
from websockets.frames import Frame

from common.errors import CloseCode


if TYPE_CHECKING:
    from realtime_gateway.limits import Ticket

__all__ = ["OUTBOX_EXTENSION", "GatewayWebSocketProtocol", "Outbox", "WriteBatcher"]

#: The ASGI scope extension under which the protocol offers itself to the app.
OUTBOX_EXTENSION = "realtime.outbox"


class WriteBatcher:
    """Flushes every outbox written to during one event-loop pass, once, at its end.

    A burst of events read from the bus in one pass then costs each connection one
    ``write()`` system call rather than one per event: the system call, not Python, is
    most of the cost of a delivery (see ``scripts/bench``).
    """

    __slots__ = ("_dirty", "_loop", "_scheduled", "dropped")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, dropped: Callable[[int], None] = lambda n: None
    ) -> None:
        self._loop = loop
        self._dirty: list[Outbox] = []
        self._scheduled = False
        #: Told how many frames an overflowing outbox dropped (shared by every outbox, so
        #: that no connection carries a reference of its own).
        self.dropped = dropped

    def mark(self, outbox: Outbox) -> None:
        self._dirty.append(outbox)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        dirty, self._dirty = self._dirty, []
        for outbox in dirty:
            outbox.flush()


class Outbox:
    """A connection's outbound queue: frames of this loop pass, then a bounded backlog.

    Frames queued during one event-loop pass go to the transport together at its end. While
    the transport's buffer is past its high-water mark, frames wait instead, at most
    ``max_messages`` frames, and go out in one write when it drains. Bytes are bounded over
    everything the gateway holds for the connection: the frames waiting here plus what the
    transport's buffer kept of earlier writes (the socket took the rest), at most
    ``max_bytes``. Past either bound the reader is too slow: what waits is dropped and the
    connection closed with 4408 (slow consumer), which costs the other connections nothing.
    """

    __slots__ = (
        "_batcher",
        "_buffered",
        "_max_messages",
        "_paused",
        "_protocol",
        "_queue",
        "_queued_bytes",
        "_scheduled",
        "_write",
        "close_code",
        "closed",
        "max_bytes",
    )

    def __init__(
        self,
        protocol: GatewayWebSocketProtocol,
        batcher: WriteBatcher,
        *,
        max_messages: int,
        max_bytes: int,
    ) -> None:
        self._protocol = protocol
        self._batcher = batcher
        transport = protocol.transport
        self._write = transport.write
        self._buffered = transport.get_write_buffer_size
        # Below the high-water mark frames go to the transport uncounted: it may not be
        # more than the bound.
        if transport.get_write_buffer_limits()[1] > max_bytes:
            transport.set_write_buffer_limits(high=max_bytes)
        # A list, not a deque: an empty deque costs 600 bytes more, times every connection.
        self._queue: list[bytes] = []
        self._queued_bytes = 0
        self._scheduled = False
        self._max_messages = max_messages
        self.max_bytes = max_bytes
        self._paused = False
        self.closed = False
        self.close_code: int | None = None
        protocol.outbox = self

    def send(self, frame: bytes) -> bool:
        """Queue one frame; False when the connection is closed or just overflowed."""
        if self.closed:
            return False
        self._queue.append(frame)
        if self._paused:
            # What one pass wrote (a burst of replies, a replay) may be past the bound on its
            # own: what the socket has not taken of it counts as much as what waits here.
            self._queued_bytes += len(frame)
            if (
                len(self._queue) > self._max_messages
                or self._queued_bytes + self._buffered() > self.max_bytes
            ):
                self._overflow()
                return False
        elif not self._scheduled:
            self._scheduled = True
            self._batcher.mark(self)
        return True

    def flush(self) -> None:
        """Write what is queued, unless the transport asked to wait."""
        self._scheduled = False
        if not self._paused and not self.closed:
            self._write_queue()

    def close(self, code: int, reason: str = "") -> None:
        """Send a close frame after what is queued; abort if the peer never reads it."""
        if self.closed:
            return
        self.closed = True
        self.close_code = code
        self._write_queue()
        self._protocol.close_now(code, reason)

    def pause(self) -> None:
        self._paused = True
        self._queued_bytes = sum(map(len, self._queue))

    def resume(self) -> None:
        self._paused = False
        if not self.closed:
            self._write_queue()

    def lost(self) -> None:
        self.closed = True
        self._queue = []

    def shut(self) -> None:
        """Write what is queued and accept nothing more (the server is shutting down)."""
        if not self.closed:
            self._write_queue()
            self.closed = True

    def _overflow(self) -> None:
        self._batcher.dropped(len(self._queue))
        self._queue = []
        self._queued_bytes = 0
        self.close(CloseCode.SLOW_CONSUMER, "slow consumer")

    def _write_queue(self) -> None:
        queue = self._queue
        if queue:
            self._write(queue[0] if len(queue) == 1 else b"".join(queue))
            self._queue = []
            self._queued_bytes = 0


class _Inbox:
    """uvicorn's queue of received ASGI events, for its one consumer (the app), lighter.

    ``asyncio.Queue`` carries three deques and an ``Event`` with a fourth: some 2.4 KB per
    idle connection, for a queue that rarely holds more than one event (uvicorn pauses
    reading until the app takes each message).
    """

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    async def get(self) -> Any:
        while not self._items:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        return self._items.pop(0)


class _Flag:
    """uvicorn's ``writable`` event, lighter: no deque until someone waits."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = True
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if not self._set:
            waiter = asyncio.get_running_loop().create_future()
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(waiter)
            await waiter
        return True


class GatewayWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's ``websockets-sansio`` implementation plus the gateway's outbox hooks."""

    outbox: Outbox | None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Same interface (put_nowait/get/empty, set/clear/wait), a fraction of the memory.
        self.queue = _Inbox()  # type: ignore[assignment]
        self.writable = _Flag()  # type: ignore[assignment]
        self.outbox = None
        #: The close code this side sent, if it started the closing handshake.
        self.server_close_code: int | None = None
        #: The socket's place in the edge's accounting, and how to give it back (edge.py).
        self.edge_ticket: Ticket | None = None
        self.on_lost: Callable[[], None] | None = None

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

    def keepalive_timeout(self) -> None:
        # uvicorn sends 1011 and closes the transport, which waits for its buffer to drain:
        # a peer that stopped reading never drains it, and the app never hears of the close.
        if self.close_sent or self.transport.is_closing():
            return
        if self.outbox is not None:
            self.outbox.lost()  # nothing may follow the close frame
        super().keepalive_timeout()
        self._closing(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")

    def handle_close(self, event: Frame) -> None:
        # The peer started the close: uvicorn echoes it and waits for the buffer to drain.
        super().handle_close(event)
        self._abort_later()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.outbox is not None:
            self.outbox.lost()
        if self.on_lost is not None:
            self.on_lost()
            self.on_lost = None
        super().connection_lost(exc)

    def evict(self) -> None:
        """Close this unauthenticated connection to make room for another (edge.py)."""
        if self.outbox is None:
            self.transport.abort()  # the app has not accepted it yet
        else:
            self.outbox.close(CloseCode.TRY_AGAIN_LATER, "gateway busy: authenticate sooner")

    def shutdown(self) -> None:
        # uvicorn sends 1012 and closes; a peer that never reads would hold the transport
        # open past the grace time, so abort it after the close timeout.
        if self.outbox is not None:
            self.outbox.shut()
        if self.handshake_complete and not self.close_sent:
            self.server_close_code = CloseCode.SERVICE_RESTART
        super().shutdown()
        self.loop.call_later(self.close_timeout, self.transport.abort)

    def handle_parser_exception(self) -> None:
        # A frame too big (1009), invalid UTF-8 (1007), a protocol error (1002).
        if self.conn.close_sent is not None:
            self.server_close_code = self.conn.close_sent.code
        if self.outbox is not None:
            self.outbox.lost()
        super().handle_parser_exception()
        self._abort_later()

    def forget_handshake(self) -> None:
        """Drop what only the handshake needed: at 10,000 idle connections it adds up."""
        del self.request
        del self.response
        self.scope["headers"] = []

    def close_now(self, code: int, reason: str) -> None:
        """Start the closing handshake without waiting for the transport to drain.

        ASGI's ``websocket.close`` waits until the transport is writable, which a reader
        that has stopped reading never allows; this writes the close frame behind what is
        buffered and aborts the transport if the peer has not answered in time.
        """
        if self.close_sent or self.transport.is_closing():
            # A close went out already (a keepalive timeout, a protocol error): it too must
            # end in bounded time.
            self._abort_later()
            return
        try:
            self.conn.send_close(code, reason)
        except InvalidState:
            return
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self._closing(code, reason)

    def _closing(self, code: int, reason: str) -> None:
        """A close frame went out: the app is done with the connection, the peer has a while."""
        self.server_close_code = code
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        self._abort_later()

    def _abort_later(self) -> None:
        # transport.close() waits until the buffer drains, which a peer that stopped reading
        # never lets happen: abort instead once the peer had its close timeout.
        if self.close_timer is None and not self.disconnected:
            self.close_timer = self.loop.call_later(self.close_timeout, self.transport.abort)
