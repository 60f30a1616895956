"""A test client of the gateway's protocol v1, on the real ``websockets`` asyncio client.

Every wait has a deadline: :data:`DEADLINE` unless the caller gives another (a multiple of
tests/support/waiting.py's scaled ``MS``, like every deadline of the tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect as ws_connect
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame as WsFrame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from common.auth import issue_token
from common.settings import Secret
from tests.support.processes import JWT_SECRET
from tests.support.waiting import MS, Deadline


__all__ = [
    "DEADLINE",
    "Frame",
    "StalledClient",
    "assert_open",
    "authenticate",
    "call",
    "connect",
    "connect_user",
    "expect_close",
    "make_token",
    "read_until_close",
    "recv_json",
    "recv_until",
    "send_json",
]

#: Seconds one expected frame may take to arrive before a test fails.
DEADLINE = 5_000 * MS
_ESTABLISHED = "01"  # the TCP state in /proc/net/tcp

Frame = dict[str, Any]


def make_token(user: str, ttl: float = 3600.0, secret: str = JWT_SECRET) -> str:
    """A token for ``user`` valid ``ttl`` seconds (negative: already expired)."""
    return issue_token(Secret(secret), user, ttl)


async def connect(url: str, *, token: str | None = None, **options: Any) -> ClientConnection:
    """Open a WebSocket, with ``Authorization: Bearer <token>`` on the upgrade if given."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else None
    options.setdefault("open_timeout", DEADLINE)
    options.setdefault("close_timeout", 2.0)
    return await ws_connect(url, additional_headers=headers, **options)


async def send_json(ws: ClientConnection, message: Frame) -> None:
    await ws.send(json.dumps(message))


async def recv_json(ws: ClientConnection, within: float = DEADLINE) -> Frame:
    """The next frame, decoded; fails on a binary frame, a non-object, or after ``within`` s."""
    try:
        async with asyncio.timeout(within):
            raw = await ws.recv()
    except TimeoutError:
        raise AssertionError(f"no frame within {within} s") from None
    assert isinstance(raw, str), f"expected a text frame, got {raw!r}"
    frame = json.loads(raw)
    assert isinstance(frame, dict), f"expected a JSON object, got {frame!r}"
    return frame


async def recv_until(
    ws: ClientConnection,
    predicate: Callable[[Frame], bool],
    *,
    within: float = DEADLINE,
    limit: int = 100_000,
) -> tuple[Frame, list[Frame]]:
    """Read until a frame matches; return it and the frames skipped before it."""
    deadline = Deadline(within)
    skipped: list[Frame] = []
    for _ in range(limit):
        if deadline.expired():
            break
        try:
            frame = await recv_json(ws, deadline.remaining())
        except AssertionError as exc:
            raise AssertionError(f"{exc}; skipped {skipped[-5:]!r}") from None
        if predicate(frame):
            return frame, skipped
        skipped.append(frame)
    raise AssertionError(f"no matching frame within {within} s; skipped {skipped[-5:]!r}")


async def call(ws: ClientConnection, message: Frame, *, within: float = DEADLINE) -> Frame:
    """Send ``message`` (which has a ``ref``) and return the reply with that ref."""
    ref = message["ref"]
    await send_json(ws, message)
    reply, _ = await recv_until(
        ws, lambda f: f.get("type") == "reply" and f.get("ref") == ref, within=within
    )
    return reply


async def authenticate(ws: ClientConnection, token: str, ref: str = "auth") -> Frame:
    """Send ``auth``; return the welcome (fails on anything else)."""
    await send_json(ws, {"type": "auth", "token": token, "ref": ref})
    frame = await recv_json(ws)
    assert frame.get("type") == "welcome", frame
    return frame


async def connect_user(url: str, user: str, **options: Any) -> ClientConnection:
    """A connection authenticated as ``user`` by an ``auth`` message."""
    ws = await connect(url, **options)
    try:
        await authenticate(ws, make_token(user))
    except BaseException:
        await ws.close()
        raise
    return ws


async def gateway_id_of(url: str) -> str:
    """The id of the gateway at ``url`` (each run's own), as its welcome message tells it."""
    ws = await connect(url)
    try:
        welcome = await authenticate(ws, make_token("id-probe"))
    finally:
        await ws.close()
    return str(welcome["gateway"])


async def assert_open(ws: ClientConnection, ref: str = "still-open") -> None:
    """The connection still answers: a ping gets its pong (events before it are skipped)."""
    await send_json(ws, {"type": "ping", "ref": ref})
    pong, _ = await recv_until(ws, lambda f: f.get("type") == "pong")
    assert pong == {"type": "pong", "ref": ref}


async def read_until_close(
    ws: ClientConnection, within: float = DEADLINE
) -> tuple[list[Frame], int | None, str]:
    """Read until the server closes; return the frames read, its close code and reason.

    The code is None if the connection ended without a close frame from the server.
    """
    deadline = Deadline(within)
    frames: list[Frame] = []
    while True:
        if deadline.expired():
            raise AssertionError(f"the connection was not closed within {within} s")
        try:
            async with asyncio.timeout(deadline.remaining()):
                raw = await ws.recv()
        except TimeoutError:
            raise AssertionError(f"the connection was not closed within {within} s") from None
        except ConnectionClosed as exc:
            received = exc.rcvd
            if received is None:
                return frames, None, ""
            return frames, int(received.code), received.reason
        frames.append(json.loads(raw))


async def expect_close(ws: ClientConnection, within: float = DEADLINE) -> tuple[int | None, str]:
    """Read (discarding frames) until the server closes; return its close code and reason."""
    _, code, reason = await read_until_close(ws, within)
    return code, reason


class StalledClient:
    """A client that reads from its socket only when told to, and otherwise never.

    It speaks WebSocket through websockets' sans-I/O :class:`ClientProtocol` over a plain
    non-blocking socket whose receive buffer is made small before connecting, so that once
    it stops reading the server's writes back up within a few kilobytes of TCP window
    (unlike the asyncio client, whose transport keeps reading into memory).
    """

    def __init__(self, sock: socket.socket, protocol: ClientProtocol) -> None:
        self._sock = sock
        self._protocol = protocol
        self._frames: list[WsFrame] = []
        self.bytes_read = 0

    @classmethod
    async def open(cls, url: str, token: str, *, receive_buffer: int = 4096) -> StalledClient:
        """Connect and complete the handshake, authenticated by an Authorization header."""
        uri = parse_uri(url)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.setblocking(False)
        protocol = ClientProtocol(uri, max_size=None)
        client = cls(sock, protocol)
        try:
            async with asyncio.timeout(DEADLINE):
                await asyncio.get_running_loop().sock_connect(sock, (uri.host, uri.port))
                request = protocol.connect()
                request.headers["Authorization"] = f"Bearer {token}"
                protocol.send_request(request)
                await client._flush()
                while protocol.state is State.CONNECTING:
                    await client._read_some()
        except BaseException:
            sock.close()
            raise
        if protocol.state is not State.OPEN:
            sock.close()
            raise AssertionError(f"handshake failed: {protocol.handshake_exc!r}")
        return client

    @property
    def local_port(self) -> int:
        """The client's end of the TCP connection, to find the server's end by."""
        port: int = self._sock.getsockname()[1]
        return port

    def server_end(self, server_port: int) -> tuple[bool, int] | None:
        """The server's end of this (loopback) connection: open, and bytes its kernel holds.

        Not open once the server closed its socket (the kernel may keep an orphan that still
        tries to send its data); None once the kernel forgot it. Read from /proc/net/tcp.
        """
        wanted = (f"{server_port:04X}", f"{self.local_port:04X}")
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(FileNotFoundError), open(table) as lines:
                for line in list(lines)[1:]:
                    fields = line.split()
                    local, remote = fields[1].rsplit(":", 1)[1], fields[2].rsplit(":", 1)[1]
                    if (local, remote) == wanted:
                        return fields[3] == _ESTABLISHED, int(fields[4].split(":")[0], 16)
        return None

    async def fill_server_kernel(
        self, server_port: int, send_more: Callable[[], Awaitable[None]], *, limit: int = 10_000
    ) -> int:
        """Call ``send_more`` until the server's kernel holds no more for this client.

        The kernel's send buffer grows to megabytes on loopback; once it is full, what the
        server sends stays in the server process. ``send_more`` makes the server write this
        client one frame more, returning once it has; returns how many calls it took.
        """
        held = -1
        for calls in range(1, limit + 1):
            await send_more()
            end = await asyncio.to_thread(self.server_end, server_port)
            assert end is not None, "the server's end is gone"
            assert end[0], "the server closed its end"
            if end[1] == held:
                return calls
            held = end[1]
        raise AssertionError(f"the server's kernel took {limit} frames and more")

    async def _flush(self) -> None:
        data = b"".join(self._protocol.data_to_send())
        if data:
            await asyncio.get_running_loop().sock_sendall(self._sock, data)

    async def _read_some(self) -> bool:
        """Read once from the socket; False at end of stream (or a reset)."""
        try:
            data = await asyncio.get_running_loop().sock_recv(self._sock, 65536)
        except ConnectionError:
            data = b""
        if data:
            self.bytes_read += len(data)
            self._protocol.receive_data(data)
        else:
            self._protocol.receive_eof()
        for event in self._protocol.events_received():
            if isinstance(event, WsFrame):
                self._frames.append(event)
        return bool(data)

    async def send_json(self, message: Frame) -> None:
        self._protocol.send_text(json.dumps(message).encode())
        await self._flush()

    async def recv_json(self, within: float = DEADLINE) -> Frame:
        """Read until the next text frame arrives; return it decoded."""
        async with asyncio.timeout(within):
            while True:
                while self._frames:
                    frame = self._frames.pop(0)
                    if frame.opcode is Opcode.TEXT:
                        decoded = json.loads(bytes(frame.data))
                        assert isinstance(decoded, dict), decoded
                        return decoded
                    if frame.opcode is Opcode.CLOSE:
                        raise AssertionError(f"closed with {self._close_received()}")
                if not await self._read_some():
                    raise AssertionError("the connection ended")

    async def read_until_closed(self, within: float = DEADLINE) -> int | None:
        """Read (discarding frames) until a close frame or the end; return the close code."""
        async with asyncio.timeout(within):
            while True:
                while self._frames:
                    if self._frames.pop(0).opcode is Opcode.CLOSE:
                        return self._close_received()
                if not await self._read_some():
                    return self._close_received()

    def _close_received(self) -> int | None:
        received = self._protocol.close_rcvd
        return None if received is None else int(received.code)

    def close(self) -> None:
        self._sock.close()
