"""A minimal WebSocket client on an asyncio Protocol, cheap enough to load a gateway from one core.

The ``websockets`` client costs tens of microseconds per message, which would make the load
generator the bottleneck of a fan-out benchmark. This one does only what the benchmark needs:

- the HTTP upgrade written by hand (random ``Sec-WebSocket-Key``, the accept value checked);
- masked client frames for the few messages a client sends (subscribe, pong, close);
- an incremental parser of the server's unmasked frames that hands each event frame to
  :meth:`WsClient.on_event` as offsets into the received bytes, so a subclass can pick out the
  fields it needs without copying or decoding the JSON; other text frames (welcome, replies)
  are decoded and queued for :meth:`WsClient.receive`;
- pings answered with pongs, a server's close answered and recorded.

Not a general client: no fragmented messages, no extensions, no TLS, no redirects.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from common.codec import dump_client, load_client
from common.errors import ProtocolError


__all__ = ["EVENT_PREFIX", "HandshakeError", "WsClient", "connect"]

#: How an event frame from the gateway begins (orjson keeps the key order of ``to_client``).
EVENT_PREFIX = b'{"type":"event"'

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_OP_CONT, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_MAX_HEAD_BYTES = 16 * 1024
#: A partial frame larger than this means a broken or hostile server.
_MAX_BUFFER_BYTES = 4 * 1024 * 1024
#: Non-event messages not yet taken by :meth:`WsClient.receive`.
_MAX_UNREAD = 64
_MEDIUM = struct.Struct("!H")
_LONG = struct.Struct("!Q")


class HandshakeError(ConnectionError):
    """The server did not switch protocols (wrong status or accept value)."""


def _mask(payload: bytes, key: bytes) -> bytes:
    length = len(payload)
    repeated = (key * (length // 4 + 1))[:length]
    masked = int.from_bytes(payload, "little") ^ int.from_bytes(repeated, "little")
    return masked.to_bytes(length, "little")


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A complete masked frame (RFC 6455 section 5.3), as a client must send."""
    length = len(payload)
    if length < 126:
        header = bytes((0x80 | opcode, 0x80 | length))
    elif length < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + _MEDIUM.pack(length)
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + _LONG.pack(length)
    key = os.urandom(4)
    return header + key + _mask(payload, key)


class WsClient(asyncio.Protocol):
    """One client connection. Create it with :func:`connect`.

    Attributes:
        opened: done once the server accepted the upgrade (or failed with HandshakeError).
        closed: done once the connection is gone.
        close_code: the code of the server's close frame, if it sent one.
    """

    def __init__(
        self, host: str, port: int, path: str = "/ws", headers: Mapping[str, str] | None = None
    ) -> None:
        loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.close_code: int | None = None
        self.error: str | None = None
        key = base64.b64encode(os.urandom(16))
        self._accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key.decode()}",
            "Sec-WebSocket-Version: 13",
            *(f"{name}: {value}" for name, value in (headers or {}).items()),
        ]
        self._request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self._upgraded = False
        self._buffer = b""
        self._messages: deque[dict[str, Any]] = deque()
        self._waiter: asyncio.Future[None] | None = None

    # Hooks for subclasses.

    def on_event(self, data: bytes, start: int, end: int, now_ns: int) -> None:
        """An event frame's payload is ``data[start:end]``, received at ``now_ns`` (epoch ns)."""

    # Sending.

    def send_text(self, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(_OP_TEXT, payload))

    def send_json(self, message: dict[str, Any]) -> None:
        self.send_text(dump_client(message))

    def close(self, code: int = 1000) -> None:
        """Send a close frame and close the transport without waiting for the server's echo."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            if self._upgraded:
                transport.write(client_frame(_OP_CLOSE, _MEDIUM.pack(code)))
            transport.close()

    # Receiving messages other than events.

    async def receive(self) -> dict[str, Any]:
        """The next non-event message (callers bound the wait with ``asyncio.timeout``).

        Raises:
            ConnectionError: the connection closed first.
        """
        while not self._messages:
            if self.closed.done():
                raise ConnectionError(self._why_closed())
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._messages.popleft()

    def _why_closed(self) -> str:
        if self.error is not None:
            return self.error
        return f"connection closed (code {self.close_code})"

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # asyncio.Protocol.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self._request)

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self.error is None:
            self.error = repr(exc)
        if not self.opened.done():
            self.opened.set_exception(HandshakeError(self._why_closed()))
        if not self.closed.done():
            self.closed.set_result(None)
        self._wake()

    def data_received(self, data: bytes) -> None:
        if self._buffer:
            data = self._buffer + data
            self._buffer = b""
        if not self._upgraded:
            rest = self._handshake(data)
            if rest is None:
                return
            data = rest
        now_ns = time.time_ns()
        size = len(data)
        position = 0
        while size - position >= 2:
            second = data[position + 1]
            if second & 0x80:
                self._fail("the server sent a masked frame")
                return
            length = second
            start = position + 2
            if length == 126:
                if size - position < 4:
                    break
                length = (data[start] << 8) | data[start + 1]
                start += 2
            elif length == 127:
                if size - position < 10:
                    break
                length = int.from_bytes(data[start : start + 8], "big")
                start += 8
            end = start + length
            if end > size:
                break
            first = data[position]
            opcode = first & 0x0F
            if not first & 0x80 or opcode == _OP_CONT:
                self._fail("the server sent a fragmented message")
                return
            if opcode == _OP_TEXT:
                if data.startswith(EVENT_PREFIX, start, end):
                    self.on_event(data, start, end, now_ns)
                else:
                    self._message(data[start:end])
            elif opcode == _OP_PING:
                self._write(client_frame(_OP_PONG, data[start:end]))
            elif opcode == _OP_CLOSE:
                self._closed_by_server(data[start:end])
                return
            elif opcode not in (_OP_BINARY, _OP_PONG):
                self._fail(f"the server sent opcode {opcode}")
                return
            position = end
        if position < size:
            if size - position > _MAX_BUFFER_BYTES:
                self._fail("a frame larger than the client's buffer")
                return
            self._buffer = data[position:]

    # Internals.

    def _handshake(self, data: bytes) -> bytes | None:
        """The bytes after the upgrade response, or None while the response is incomplete."""
        end = data.find(b"\r\n\r\n")
        if end < 0:
            if len(data) > _MAX_HEAD_BYTES:
                self._fail("the upgrade response has no end")
            else:
                self._buffer = data
            return None
        head = data[:end].split(b"\r\n")
        accept = b""
        for line in head[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-accept":
                accept = value.strip()
        if not head[0].startswith(b"HTTP/1.1 101 "):
            self._fail(f"upgrade refused: {head[0].decode('latin-1')}")
            return None
        if accept != self._accept:
            self._fail("wrong Sec-WebSocket-Accept")
            return None
        self._upgraded = True
        self.opened.set_result(None)
        return data[end + 4 :]

    def _message(self, payload: bytes) -> None:
        try:
            message = load_client(payload)
        except ProtocolError as exc:
            self._fail(f"undecodable text frame: {exc.message}")
            return
        if len(self._messages) >= _MAX_UNREAD:
            self._fail("too many unread messages")
            return
        self._messages.append(message)
        self._wake()

    def _closed_by_server(self, payload: bytes) -> None:
        self.close_code = _MEDIUM.unpack(payload[:2])[0] if len(payload) >= 2 else 1005
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(client_frame(_OP_CLOSE, payload[:2]))
            transport.close()

    def _write(self, frame: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame)

    def _fail(self, why: str) -> None:
        if self.error is None:
            self.error = why
        if self.transport is not None:
            self.transport.abort()


_Client = TypeVar("_Client", bound=WsClient)


async def connect(factory: Callable[[], _Client], host: str, port: int) -> _Client:
    """Open a connection with the client ``factory`` makes and complete the upgrade.

    Callers bound the wait with ``asyncio.timeout``; a connection that does not complete is
    aborted.

    Raises:
        OSError: the connection failed (HandshakeError: the upgrade was refused).
    """
    loop = asyncio.get_running_loop()
    client: _Client | None = None
    try:
        _, client = await loop.create_connection(factory, host, port)
        await client.opened
    except BaseException:
        if client is not None and client.transport is not None:
            client.transport.abort()
        raise
    return client
