"""One Redis pub/sub connection per process, kept subscribed to what it needs across outages."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError, RedisError

from common.bus.backoff import Backoff
from common.bus.nodes import node_of, refresh
from common.redis_client import RedisClient
from common.resp import RespConnection, command


__all__ = ["Listener", "MessageCallback", "PubSubListener"]

logger = logging.getLogger(__name__)

#: Called with the pub/sub channel name and the message body, in the order Redis sent them.
MessageCallback = Callable[[str, bytes], None]


class Listener(Protocol):
    """What a gateway needs of its pub/sub: this module's listener on one Redis, or
    :class:`common.bus.sharded.ShardedListener` on a cluster."""

    @property
    def connected(self) -> bool: ...

    async def wait_connected(self) -> None: ...

    async def subscribe(self, channel: str) -> None: ...

    def unsubscribe(self, channel: str) -> None: ...

    async def run(self) -> None: ...


class PubSubListener:
    """Subscribes to pub/sub channels and hands every message to one callback.

    After a disconnect it reconnects with backoff and subscribes again to every wanted
    channel. Messages published while it was disconnected are lost, as pub/sub is
    at-most-once; state of record lives in Redis data structures, never only on the bus.

    Args:
        redis: the client whose connection parameters the listener's own connection uses
            (a :class:`~common.resp.RespConnection`: redis-py's pub/sub costs more per
            message than the gateway's whole handling of it).
        on_message: called synchronously for each message, so it must not block.
        permanent: channels always subscribed (a gateway's reply channel). There must be at
            least one: a connection subscribed to nothing would carry nothing to wait on,
            and SUBSCRIBE needs a channel.
    """

    def __init__(
        self,
        redis: RedisClient,
        on_message: MessageCallback,
        permanent: Iterable[str],
        *,
        on_error: Callable[[], None] = lambda: None,
        on_reconnect: Callable[[], None] = lambda: None,
    ) -> None:
        """``on_reconnect`` is called once subscribed again after a lost connection."""
        self._redis = redis
        self._on_message = on_message
        self._on_error = on_error
        self._on_reconnect = on_reconnect
        self._wanted: set[str] = set(permanent)
        if not self._wanted:
            raise ValueError("a listener needs at least one permanent channel")
        self._permanent = frozenset(self._wanted)
        # One waiter per SUBSCRIBE sent; Redis confirms each in order.
        self._waiters: dict[str, deque[asyncio.Future[None]]] = {}
        # Channels whose next confirmation answers every waiter: set after a reconnect,
        # where one SUBSCRIBE replaces all those sent on the lost connection.
        self._confirm_all: set[str] = set()
        self._connection: RespConnection | None = None
        self._backoff = Backoff()
        # Set on each connection: whether its first confirmation starts a recovery, and
        # the error Redis answered a SUBSCRIBE with, if any.
        self._recovery_due = False
        self._refused: RedisError | None = None
        self._connected = asyncio.Event()
        self._first_connection = asyncio.Event()
        self.reconnects = 0

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def channels(self) -> frozenset[str]:
        return frozenset(self._wanted)

    async def wait_connected(self) -> None:
        await self._first_connection.wait()

    async def subscribe(self, channel: str) -> None:
        """Subscribe, returning once Redis confirms, so no later publish is missed."""
        self._wanted.add(channel)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(channel, deque()).append(waiter)
        self._send(b"SUBSCRIBE", channel)
        await waiter

    def unsubscribe(self, channel: str) -> None:
        """Stop wanting ``channel``; the UNSUBSCRIBE goes out at once (after any earlier
        SUBSCRIBE, so a subscribe right after an unsubscribe is never undone)."""
        if channel in self._permanent:
            return
        self._wanted.discard(channel)
        self._send(b"UNSUBSCRIBE", channel)

    def _send(self, verb: bytes, *channels: str) -> None:
        connection = self._connection
        if connection is not None and self.connected:
            try:
                connection.write(command(verb, *channels))
            except RedisError:
                # The run loop reconnects and subscribes to what is wanted then.
                pass

    def _confirmed(self, channel: str) -> None:
        waiters = self._waiters.get(channel)
        if not waiters:
            return
        if channel in self._confirm_all:
            self._confirm_all.discard(channel)
            while waiters:
                _resolve(waiters.popleft())
        else:
            _resolve(waiters.popleft())
        if not waiters:
            del self._waiters[channel]

    def _on_push(self, push: Any) -> None:
        """What Redis sends a subscribed connection: messages and (un)subscribe answers."""
        if isinstance(push, RedisError):
            # A refused SUBSCRIBE (NOPERM): reconnecting, with backoff, is all there is.
            self._refused = push
            if self._connection is not None:
                self._connection.close()
            return
        kind = push[0]
        if kind == b"message":
            channel = push[1].decode()
            try:
                self._on_message(channel, push[2])
            except Exception:
                # A bug in one message's handling must not stop every delivery.
                logger.exception("message callback failed", extra={"channel": channel})
        elif kind == b"subscribe":
            channel = push[1].decode()
            self._confirmed(channel)
            if self._recovery_due:
                # Redis confirms once it has run the whole SUBSCRIBE: from here on nothing
                # published is missed, so a replay can start.
                self._recovery_due = False
                self._on_reconnect()
            if not self._first_connection.is_set() and channel in self._permanent:
                self._first_connection.set()
            self._backoff.reset()

    async def _node(self) -> Redis | ClusterNode:
        """Where to connect: the one Redis; on a cluster, the node that serves the first
        permanent channel's slot, where classic pub/sub hears what any node publishes."""
        redis = self._redis
        if isinstance(redis, RedisCluster):
            await refresh(redis)
            return await node_of(redis, min(self._permanent))
        return redis

    async def run(self) -> None:
        """Listen until cancelled, reconnecting after every failure."""
        while True:
            connection = None
            try:
                connection = await RespConnection.open(await self._node())
                # No await from here to the SUBSCRIBE: what is wanted now is what it sends,
                # and later subscribe() calls send on this connection.
                self._confirm_all = set(self._waiters)
                self._recovery_due = self._first_connection.is_set()
                self._refused = None
                connection.push_mode(self._on_push)
                connection.write(command(b"SUBSCRIBE", *self._wanted))
                self._connection = connection
                self._connected.set()
                await connection.wait_closed()
                raise self._refused or RedisConnectionError("pub/sub connection lost")
            except (RedisError, OSError) as exc:
                self._connected.clear()
                self._connection = None
                self._on_error()
                self.reconnects += 1
                delay = self._backoff.next_delay()
                logger.warning(
                    "pub/sub connection lost; reconnecting",
                    extra={"error": repr(exc), "retry_in": round(delay, 3)},
                )
                await asyncio.sleep(delay)
            finally:
                self._connected.clear()
                self._connection = None
                if connection is not None:
                    connection.close()


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
