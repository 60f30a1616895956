"""Raw TCP clients of a gateway, for attacks below the WebSocket layer (slowloris & co).

Each binds its end to a loopback address of the caller's choice (any of 127.0.0.0/8), so a
test can speak from several "client addresses" without leaving the machine.
"""

from __future__ import annotations

import asyncio

from tests.support.client import DEADLINE


__all__ = ["RawClient", "upgrade_request"]


def upgrade_request(host: str, *, extra: str = "") -> bytes:
    """A complete WebSocket upgrade request for ``/ws``."""
    return (
        "GET /ws HTTP/1.1\r\n"
        f"Host: {host}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        f"{extra}\r\n"
    ).encode()


class RawClient:
    """One TCP connection, written to and read from by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        #: Everything read so far.
        self.received = bytearray()
        self.closed = False

    @classmethod
    async def open(cls, port: int, source: str = "127.0.0.1") -> RawClient:
        async with asyncio.timeout(DEADLINE):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=(source, 0)
            )
        return cls(reader, writer)

    async def send(self, data: bytes) -> bool:
        """Write ``data``; False once the server has closed (the write failed)."""
        if self.writer.is_closing():
            return False
        try:
            self.writer.write(data)
            await self.writer.drain()
        except ConnectionError:
            return False
        return True

    async def read_until_closed(self, within: float = DEADLINE) -> bytes:
        """Everything the server sent until it closed; fails if it has not after ``within``."""
        try:
            async with asyncio.timeout(within):
                while not self.closed:
                    chunk = await self.reader.read(65536)
                    self.received += chunk
                    self.closed = not chunk
        except TimeoutError:
            raise AssertionError(
                f"still open after {within} s (read {bytes(self.received[:200])!r})"
            ) from None
        except ConnectionError:
            self.closed = True
        return bytes(self.received)

    async def closed_within(self, seconds: float) -> bool:
        """Whether the server closes within ``seconds`` (a paced wait, for slow senders)."""
        try:
            await self.read_until_closed(seconds)
        except AssertionError:
            return False
        return True

    def close(self) -> None:
        self.writer.transport.abort()
