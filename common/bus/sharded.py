"""A gateway's pub/sub on a Redis Cluster: sharded channels (SSUBSCRIBE), one connection per
shard it needs, kept subscribed across failovers and slot migrations.

On a cluster an event is published with SPUBLISH (docs/bus.md "Partitions"), which only the
shard that serves the channel's slot carries: the listener subscribes to each channel on
that shard's primary. A shard whose connection is lost (its primary died, and a replica is
promoted), or that tells the listener a channel left it (``sunsubscribe`` pushed unasked:
the slot migrated), has its channels placed again where a fresh slot map says, with
backoff; once every moved channel is confirmed there, ``on_reconnect`` runs, so that what
was published meanwhile is replayed, as after any outage of a single Redis's listener.

Channels published with PUBLISH (``gw:revocations``, which the revoke command publishes)
keep a classic subscription, on any node: the cluster carries a PUBLISH to every node.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import Any

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisError

from common.bus.backoff import Backoff
from common.bus.listener import MessageCallback, PubSubListener
from common.bus.nodes import node_of, refresh
from common.resp import RespConnection, command


__all__ = ["ShardedListener"]

logger = logging.getLogger(__name__)


class ShardedListener:
    """:class:`~common.bus.listener.PubSubListener`'s interface, on a cluster.

    Args:
        redis: the cluster client whose slot map places the channels, and whose nodes'
            connection parameters the listener's connections use.
        on_message: called synchronously for each message, in each shard's order.
        permanent: sharded channels always subscribed (a gateway's reply channel).
        classic: channels always subscribed with SUBSCRIBE (those published with PUBLISH).
    """

    def __init__(
        self,
        redis: RedisCluster,
        on_message: MessageCallback,
        permanent: Iterable[str],
        *,
        classic: Iterable[str],
        on_error: Callable[[], None] = lambda: None,
        on_reconnect: Callable[[], None] = lambda: None,
    ) -> None:
        self._redis = redis
        self._on_message = on_message
        self._on_error = on_error
        self._on_reconnect = on_reconnect
        self._permanent = frozenset(permanent)
        if not self._permanent:
            raise ValueError("a listener needs at least one permanent channel")
        self._classic = PubSubListener(
            redis, on_message, classic, on_error=on_error, on_reconnect=on_reconnect
        )
        #: Sharded channels wanted, and the shard each is placed on (none: to be placed).
        self._wanted: set[str] = set(self._permanent)
        self._placed: dict[str, _Shard] = {}
        self._shards: dict[str, _Shard] = {}
        #: One waiter per SSUBSCRIBE asked for; a shard's confirmation answers them in order.
        self._waiters: dict[str, deque[asyncio.Future[None]]] = {}
        #: Channels moved after a loss, whose confirmation is awaited before a recovery.
        self._moved: set[str] = set()
        self._recovery_due = False
        #: Whether the slot map must be read again before placing (a shard was lost).
        self._stale_map = False
        self._placing = asyncio.Event()
        self._placing.set()
        self._backoff = Backoff()
        self._first_connection = asyncio.Event()
        self.reconnects = 0

    @property
    def connected(self) -> bool:
        """Whether every wanted channel is subscribed on a live shard (and the classic ones)."""
        return (
            self._classic.connected
            and self._wanted <= self._placed.keys()
            and all(shard.connected for shard in self._shards.values())
        )

    @property
    def channels(self) -> frozenset[str]:
        return frozenset(self._wanted) | self._classic.channels

    async def wait_connected(self) -> None:
        await self._first_connection.wait()
        await self._classic.wait_connected()

    async def subscribe(self, channel: str) -> None:
        """Subscribe on the channel's shard, returning once it confirms."""
        self._wanted.add(channel)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(channel, deque()).append(waiter)
        shard = self._placed.get(channel)
        if shard is not None and shard.connected:
            shard.send(b"SSUBSCRIBE", channel)
        else:
            self._placed.pop(channel, None)
            self._placing.set()
        await waiter

    def unsubscribe(self, channel: str) -> None:
        if channel in self._permanent:
            return
        self._wanted.discard(channel)
        self._moved.discard(channel)
        shard = self._placed.pop(channel, None)
        if shard is not None:
            shard.channels.discard(channel)
            shard.send(b"SUNSUBSCRIBE", channel)

    async def run(self) -> None:
        """Place and keep the channels until cancelled."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._classic.run(), name="classic pub/sub")
            group.create_task(self._place_forever(), name="sharded pub/sub")

    async def _place_forever(self) -> None:
        try:
            while True:
                await self._placing.wait()
                self._placing.clear()
                if self._stale_map:
                    # A shard was lost: its primary may still be in the slot map until the
                    # cluster fails it over, so each new try waits longer.
                    await asyncio.sleep(self._backoff.next_delay())
                try:
                    await self._place()
                except (RedisError, OSError) as exc:
                    self._on_error()
                    delay = self._backoff.next_delay()
                    logger.warning(
                        "cannot place sharded subscriptions; retrying",
                        extra={"error": repr(exc), "retry_in": round(delay, 3)},
                    )
                    await asyncio.sleep(delay)
                    self._placing.set()
        finally:
            for shard in list(self._shards.values()):
                shard.stop()

    async def _place(self) -> None:
        """Put every wanted channel without a live shard on its slot's primary."""
        unplaced = sorted(self._wanted - self._placed.keys())
        if not unplaced:
            return
        if self._stale_map:
            self._stale_map = False
            await refresh(self._redis)
        by_node: dict[str, tuple[ClusterNode, list[str]]] = {}
        for channel in unplaced:
            node = await node_of(self._redis, channel)
            by_node.setdefault(node.name, (node, []))[1].append(channel)
        for name, (node, channels) in by_node.items():
            shard = self._shards.get(name)
            if shard is None or shard.closed:
                shard = self._shards[name] = _Shard(self, node)
            for channel in channels:
                if channel in self._wanted:
                    self._placed[channel] = shard
            shard.add(channels)

    # What the shards report.

    def _message(self, channel: str, body: bytes) -> None:
        try:
            self._on_message(channel, body)
        except Exception:
            # A bug in one message's handling must not stop every delivery.
            logger.exception("message callback failed", extra={"channel": channel})

    def _confirmed(self, channel: str, *, all_waiters: bool) -> None:
        waiters = self._waiters.get(channel)
        while waiters:
            _resolve(waiters.popleft())
            if not all_waiters:
                break
        if waiters is not None and not waiters:
            del self._waiters[channel]
        if channel in self._permanent and not self._first_connection.is_set():
            self._first_connection.set()
        self._backoff.reset()
        if self._moved:
            self._moved.discard(channel)
            if not self._moved and self._recovery_due:
                # Every moved channel is subscribed again: nothing published from here on is
                # missed, so the replay of the gap can start.
                self._recovery_due = False
                self._on_reconnect()

    def _lost(self, shard: _Shard, channels: Iterable[str], why: str) -> None:
        """``channels`` of ``shard`` are no longer subscribed: place them again."""
        moved = [channel for channel in channels if self._placed.get(channel) is shard]
        for channel in moved:
            del self._placed[channel]
        if shard.closed and self._shards.get(shard.node.name) is shard:
            del self._shards[shard.node.name]
        if not moved:
            return
        self._on_error()
        self.reconnects += 1
        logger.warning(
            "sharded subscriptions lost; placing them again",
            extra={"node": shard.node.name, "channels": len(moved), "why": why},
        )
        self._moved.update(moved)
        self._recovery_due = self._first_connection.is_set()
        self._stale_map = True
        self._placing.set()


class _Shard:
    """One connection to one primary, subscribed (SSUBSCRIBE) to the channels placed there."""

    def __init__(self, owner: ShardedListener, node: ClusterNode) -> None:
        self._owner = owner
        self.node = node
        self.channels: set[str] = set()
        self.connected = False
        self.closed = False
        self._stopped = False
        self._connection: RespConnection | None = None
        #: Channels whose next confirmation answers every waiter (one SSUBSCRIBE, sent on
        #: connecting, stands for all those asked before).
        self._confirm_all: set[str] = set()
        #: SUNSUBSCRIBEs sent and not yet confirmed: an unasked one means the slot moved.
        self._leaving: Counter[str] = Counter()
        self._task = asyncio.get_running_loop().create_task(self._run())

    def add(self, channels: list[str]) -> None:
        new = [channel for channel in channels if channel not in self.channels]
        self.channels.update(new)
        if self.connected and new:
            self.send(b"SSUBSCRIBE", *new)
        elif new:
            self._confirm_all.update(new)

    def send(self, verb: bytes, *channels: str) -> None:
        connection = self._connection
        if connection is not None and self.connected:
            try:
                connection.write(_each(verb, channels))
            except RedisError:
                return  # lost: the channels are placed again
            if verb == b"SUNSUBSCRIBE":
                self._leaving.update(channels)

    async def _run(self) -> None:
        why = "connection lost"
        try:
            connection = self._connection = await RespConnection.open(self.node)
            connection.push_mode(self._on_push)
            self._confirm_all.update(self.channels)
            if self.channels:
                connection.write(_each(b"SSUBSCRIBE", self.channels))
            self.connected = True
            await connection.wait_closed()
        except (RedisError, OSError) as exc:
            why = repr(exc)
        finally:
            self.close()
            if not self._stopped:
                self._owner._lost(self, list(self.channels), why)

    def _on_push(self, push: Any) -> None:
        if isinstance(push, RedisError):
            # A refused SSUBSCRIBE (MOVED after a migration, NOPERM): place them afresh.
            logger.warning("a shard refused a subscription", extra={"error": str(push)})
            self.close()
            return
        kind = push[0]
        if kind == b"smessage":
            self._owner._message(push[1].decode(), push[2])
        elif kind == b"ssubscribe":
            channel = push[1].decode()
            everyone = channel in self._confirm_all
            self._confirm_all.discard(channel)
            self._owner._confirmed(channel, all_waiters=everyone)
        elif kind == b"sunsubscribe":
            channel = push[1].decode()
            if self._leaving[channel] > 0:
                self._leaving[channel] -= 1
                if not self._leaving[channel]:
                    del self._leaving[channel]
            elif channel in self.channels:
                # Unasked: the channel's slot left this node (a migration).
                self.channels.discard(channel)
                self._owner._lost(self, [channel], "slot moved")

    def close(self) -> None:
        self.connected = False
        self.closed = True
        if self._connection is not None:
            self._connection.close()

    def stop(self) -> None:
        """Close, and stop connecting if it still was (the listener is done)."""
        self._stopped = True
        self.close()
        self._task.cancel()


def _each(verb: bytes, channels: Iterable[str]) -> bytes:
    """``verb`` once per channel, in one write: one SSUBSCRIBE may only name channels of
    one slot, and a shard serves many."""
    return b"".join([command(verb, channel) for channel in channels])


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
