"""A lean Redis connection for the bus's hottest paths: a gateway's pub/sub reads and appends.

redis-py spends more on its own bookkeeping than the bus spends on the work there: a dict
and four calls per pub/sub message, and a command stack, a response callback and an
argument-by-argument encoding per pipelined command. Here a connection speaks RESP2 over an
asyncio protocol with hiredis's parser: commands are encoded once by the caller into one
buffer, replies are matched to their callers in order, and in pub/sub mode each message goes
to a callback as soon as it is parsed.

It connects where and as a redis-py client does (host and port or Unix socket, TLS, ACL
user, client name, database, connect timeout, keepalive), taking the parameters from that
client's connection pool, so there is one configuration and no second URL parser. It never
retries: a caller that wants another try opens another connection.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import hiredis
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection
from redis.exceptions import (
    AuthenticationError,
    ConnectionError as RedisConnectionError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    RedisError,
    ResponseError,
    TimeoutError as RedisTimeoutError,
)

from common.redis_client import COMMAND_TIMEOUT, CONNECT_TIMEOUT


__all__ = [
    "LazyConnection",
    "PushCallback",
    "RespConnection",
    "bulk",
    "command",
    "command_head",
    "execute_encoded",
    "reply_error",
]

#: Called with each value Redis pushes in pub/sub mode (``[b"message", channel, data]``...).
PushCallback = Callable[[Any], None]

#: Replies queued for one call: its future, how many it expects, those received so far.
_Waiter = tuple["asyncio.Future[list[Any]]", int, list[Any]]


def command(*args: bytes | str | int | float) -> bytes:
    """One command in RESP, ready to write: ``command("XADD", key, "*", "e", body)``."""
    return command_head(len(args), *args)


def command_head(total: int, *args: bytes | str | int | float) -> bytes:
    """The start of a command of ``total`` arguments, the first of which are ``args``.

    The others follow as :func:`bulk` strings: a hot path encodes its fixed part once.
    """
    parts = [b"*%d\r\n" % total]
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode()
        elif isinstance(arg, int):
            arg = b"%d" % arg
        elif isinstance(arg, float):
            arg = repr(arg).encode()  # as redis-py sends a float
        parts.append(bulk(arg))
    return b"".join(parts)


def bulk(data: bytes) -> bytes:
    """One argument of a command, as RESP."""
    return b"$%d\r\n%b\r\n" % (len(data), data)


def reply_error(message: str) -> RedisError:
    """The redis-py exception for an error reply, so callers handle both clients' alike."""
    prefix = message.partition(" ")[0]
    if prefix == "OOM":
        return OutOfMemoryError(message)
    if prefix == "NOSCRIPT":
        return NoScriptError(message)
    if prefix == "NOPERM":
        return NoPermissionError(message)
    if prefix in ("WRONGPASS", "NOAUTH"):
        return AuthenticationError(message)
    return ResponseError(message)


class RespConnection(asyncio.Protocol):
    """One connection: pipelined commands answered in order, or pub/sub pushes to a callback.

    Open it with :meth:`open`. In command mode :meth:`execute` writes a buffer of commands
    and returns their replies (error replies as exceptions in the list). After
    :meth:`push_mode` every value Redis sends goes to the callback instead, which is how
    RESP2 pub/sub works: a subscribed connection only carries pushes and their
    confirmations. When the connection is lost, every waiting call fails with a redis-py
    ``ConnectionError`` and :meth:`wait_closed` returns.
    """

    def __init__(self) -> None:
        self._reader = hiredis.Reader()
        self._transport: asyncio.Transport | None = None
        self._waiters: deque[_Waiter] = deque()
        self._on_push: PushCallback | None = None
        #: Why this side ended the connection, if it did.
        self._broken = ""
        self._closed = asyncio.get_running_loop().create_future()

    @classmethod
    async def open(cls, like: Redis | ClusterNode) -> RespConnection:
        """Connect and log in as the connections of ``like`` (a client of one Redis, or one
        node of a cluster client) do, within redis_client's timeouts.

        Raises:
            redis.exceptions.ConnectionError: Redis is unreachable or refused the login.
        """
        if isinstance(like, ClusterNode):
            params = like.connection_class(**like.connection_kwargs)
        else:
            params = like.connection_pool.make_connection()  # type: ignore[no-untyped-call]
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(params.socket_connect_timeout or CONNECT_TIMEOUT):
                if isinstance(params, UnixDomainSocketConnection):
                    _, connection = await loop.create_unix_connection(cls, params.path)
                else:
                    ssl = params.ssl_context.get() if isinstance(params, SSLConnection) else None
                    _, connection = await loop.create_connection(
                        cls, params.host, params.port, ssl=ssl
                    )
            try:
                await connection._log_in(params)
            except BaseException:
                connection.close()
                raise
        except TimeoutError as exc:
            raise RedisTimeoutError("timed out connecting to Redis") from exc
        except OSError as exc:
            raise RedisConnectionError(f"cannot connect to Redis: {exc}") from exc
        return connection

    async def _log_in(self, params: Any) -> None:
        handshake = self._handshake(params)
        if not handshake:
            return
        async with asyncio.timeout(COMMAND_TIMEOUT):
            replies = await self.execute(b"".join(handshake), len(handshake))
        errors = [reply for reply in replies if isinstance(reply, Exception)]
        if errors:
            if isinstance(errors[0], RedisConnectionError):  # AuthenticationError
                raise errors[0]
            raise RedisConnectionError(f"Redis refused the connection: {errors[0]}")

    @staticmethod
    def _handshake(params: Any) -> list[bytes]:
        commands = []
        if params.password is not None:
            login = (params.username, params.password) if params.username else (params.password,)
            commands.append(command("AUTH", *login))
        if params.client_name:
            commands.append(command("CLIENT", "SETNAME", params.client_name))
        if params.db:
            commands.append(command("SELECT", int(params.db)))
        return commands

    # asyncio.Protocol.

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self._transport = cast("asyncio.Transport", transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        try:
            while (reply := reader.gets()) is not False:
                if isinstance(reply, hiredis.ReplyError):
                    reply = reply_error(str(reply))
                if self._on_push is not None:
                    self._on_push(reply)
                else:
                    self._answer(reply)
        except hiredis.ProtocolError as exc:
            self._fail(f"Redis sent something that is not RESP: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        why = self._broken or (str(exc) if exc else "")
        error = RedisConnectionError("connection to Redis lost" + (f": {why}" if why else ""))
        while self._waiters:
            future, _, _ = self._waiters.popleft()
            if not future.done():
                future.set_exception(error)
        if not self._closed.done():
            self._closed.set_result(None)

    def _answer(self, reply: Any) -> None:
        if not self._waiters:
            self._fail("Redis sent a reply nobody asked for")
            return
        future, expected, replies = self._waiters[0]
        replies.append(reply)
        if len(replies) == expected:
            self._waiters.popleft()
            if not future.done():  # a cancelled caller: its replies are simply dropped
                future.set_result(replies)

    def _fail(self, why: str) -> None:
        # Once the stream is out of step, no later reply can be trusted: end the connection.
        self._broken = why
        if self._transport is not None:
            self._transport.abort()

    # The interface.

    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def execute(self, payload: bytes, replies: int) -> asyncio.Future[list[Any]]:
        """Write ``payload`` (``replies`` commands); its future gets their replies, in order."""
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        if not self.is_open:
            future.set_exception(RedisConnectionError("connection to Redis lost"))
            return future
        assert self._transport is not None
        self._waiters.append((future, replies, []))
        self._transport.write(payload)
        return future

    def push_mode(self, on_push: PushCallback) -> None:
        """From now on hand every value Redis sends to ``on_push`` (after a SUBSCRIBE)."""
        self._on_push = on_push

    def write(self, payload: bytes) -> None:
        """Write commands whose answers come as pushes (SUBSCRIBE, UNSUBSCRIBE).

        Raises:
            redis.exceptions.ConnectionError: the connection is lost.
        """
        if not self.is_open:
            raise RedisConnectionError("connection to Redis lost")
        assert self._transport is not None
        self._transport.write(payload)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)


class LazyConnection:
    """A :class:`RespConnection` made like ``like``'s, opened on first use and again after
    it was lost: the one connection of a producer or a worker, whose commands go one batch
    after another."""

    def __init__(self, like: Redis | ClusterNode) -> None:
        self._like = like
        self._connection: RespConnection | None = None

    async def execute(self, payload: bytes, count: int, within: float) -> list[Any]:
        """:meth:`RespConnection.execute`, answered within ``within`` seconds.

        Raises:
            redis.exceptions.ConnectionError: Redis is unreachable or the connection lost.
            TimeoutError: no answer in time; the connection is dropped, so that a late
                reply cannot answer a later command.
        """
        connection = self._connection
        if connection is None or not connection.is_open:
            connection = self._connection = await RespConnection.open(self._like)
        try:
            async with asyncio.timeout(within):
                return await connection.execute(payload, count)
        except TimeoutError:
            self.close()
            raise

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


async def execute_encoded(redis: Redis | ClusterNode, payload: bytes, count: int) -> list[Any]:
    """Send ``count`` commands the caller encoded, as a pipeline on one of ``redis``'s pooled
    connections: their replies in order, an error reply as its exception in the list.

    For a pipeline whose arguments are many (a batch of script calls), where redis-py's
    encoding of each one costs more than the round trip. A connection error is retried as
    ``redis``'s own commands are (common/redis_client.py), on a new connection: the
    commands may then have run twice, which the bus allows (requests are at least once).
    """
    if isinstance(redis, ClusterNode):
        # A node's connection: a lost node is the caller's to route around (the slot map
        # changes), not to retry here.
        node_connection = redis.acquire_connection()
        try:
            return await _round_trip(node_connection, payload, count)
        except (RedisConnectionError, OSError):
            await node_connection.disconnect()
            raise
        finally:
            redis.release(node_connection)
    pool = redis.connection_pool
    connection = await pool.get_connection()  # type: ignore[no-untyped-call]
    try:
        replies: list[Any] = await connection.retry.call_with_retry(
            lambda: _round_trip(connection, payload, count),
            lambda error: connection.disconnect(),
        )
        return replies
    finally:
        await pool.release(connection)


async def _round_trip(connection: Any, payload: bytes, count: int) -> list[Any]:
    await connection.send_packed_command(payload)
    replies = []
    for _ in range(count):
        try:
            replies.append(await connection.read_response())
        except ResponseError as error:
            replies.append(error)
    return replies
