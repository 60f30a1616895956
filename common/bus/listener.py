"""One Redis pub/sub connection per process, kept subscribed to what it needs across outages."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from common.bus.backoff import Backoff


__all__ = ["MessageCallback", "PubSubListener"]

logger = logging.getLogger(__name__)

#: Called with the pub/sub channel name and the message body, in the order Redis sent them.
MessageCallback = Callable[[str, bytes], None]


class PubSubListener:
    """Subscribes to pub/sub channels and hands every message to one callback.

    After a disconnect it reconnects with backoff and subscribes again to every wanted
    channel. Messages published while it was disconnected are lost, as pub/sub is
    at-most-once; state of record lives in Redis data structures, never only on the bus.

    Args:
        redis: the client whose pool provides the connection.
        on_message: called synchronously for each message, so it must not block.
        permanent: channels always subscribed (a gateway's reply channel). There must be at
            least one: redis-py stops listening when nothing is subscribed.
    """

    def __init__(
        self,
        redis: Redis,
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
        self._pubsub: PubSub | None = None
        self._unsubscribing: set[asyncio.Task[None]] = set()
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
        pubsub = self._pubsub
        if pubsub is not None and self.connected:
            try:
                await pubsub.subscribe(channel)
            except (RedisError, OSError):
                # The run loop reconnects, subscribes again and answers this waiter then.
                pass
        await waiter

    def unsubscribe(self, channel: str) -> None:
        """Stop wanting ``channel`` now; the UNSUBSCRIBE itself goes out in the background."""
        if channel in self._permanent:
            return
        self._wanted.discard(channel)
        task = asyncio.get_running_loop().create_task(self._send_unsubscribe(channel))
        self._unsubscribing.add(task)
        task.add_done_callback(self._unsubscribing.discard)

    async def _send_unsubscribe(self, channel: str) -> None:
        # Wanted again since (a subscribe right after an unsubscribe): its SUBSCRIBE may
        # already have gone out, and an UNSUBSCRIBE now would silently undo it.
        if channel in self._wanted:
            return
        pubsub = self._pubsub
        if pubsub is not None and self.connected:
            try:
                await pubsub.unsubscribe(channel)
            except (RedisError, OSError):
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

    async def run(self) -> None:
        """Listen until cancelled, reconnecting after every failure."""
        backoff = Backoff()
        while True:
            pubsub = self._redis.pubsub()
            try:
                self._confirm_all = set(self._waiters)
                sent = set(self._wanted)
                # Connects first: only then is this listener connected, and only then do
                # subscribe() calls send on this connection rather than open another.
                await pubsub.subscribe(*sent)
                self._pubsub = pubsub
                self._connected.set()
                # What was wanted, or given up, while the connection was being made.
                if missing := self._wanted - sent:
                    await pubsub.subscribe(*missing)
                if stale := sent - self._wanted:
                    await pubsub.unsubscribe(*stale)
                # Subscribed again: what was published meanwhile was never received.
                recovery_due = self._first_connection.is_set()
                async for message in pubsub.listen():
                    kind = message["type"]
                    channel = message["channel"].decode()
                    if kind == "message":
                        try:
                            self._on_message(channel, message["data"])
                        except Exception:
                            # A bug in one message's handling must not stop every delivery.
                            logger.exception("message callback failed", extra={"channel": channel})
                    elif kind == "subscribe":
                        self._confirmed(channel)
                        if recovery_due:
                            # Redis confirms once it has run the whole SUBSCRIBE: from here
                            # on nothing published is missed, so a replay can start.
                            recovery_due = False
                            self._on_reconnect()
                        if not self._first_connection.is_set() and channel in self._permanent:
                            self._first_connection.set()
                        backoff.reset()
            except (RedisError, OSError) as exc:
                self._connected.clear()
                self._on_error()
                self.reconnects += 1
                delay = backoff.next_delay()
                logger.warning(
                    "pub/sub connection lost; reconnecting",
                    extra={"error": repr(exc), "retry_in": round(delay, 3)},
                )
                await asyncio.sleep(delay)
            finally:
                self._connected.clear()
                self._pubsub = None
                try:
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                except (RedisError, OSError):
                    pass


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
