"""Helpers of the presence store tests: changes, reads, the events published, channels of a
chosen partition."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from common.codec import load_bus
from common.envelope import Event, now_ms, parse_envelope
from common.keys import Partitions
from presence_service.rules import Applied, Change, Listing, Query
from presence_service.store import PresenceStore


__all__ = [
    "Events",
    "apply",
    "change",
    "channel_in",
    "listen",
    "members",
]

_seq = itertools.count(1)


def change(
    kind: str,
    conn: str,
    user: str,
    channel: str = "",
    *,
    seq: int | None = None,
    ts: int | None = None,
    restart: bool = False,
    gateway: str | None = None,
    channels: tuple[str, ...] = (),
    partition: int | None = None,
) -> Change:
    return Change(
        kind,  # type: ignore[arg-type]
        connection=conn,
        gateway=gateway or conn.split(".")[0],
        user=user,
        seq=seq if seq is not None else next(_seq),
        ts=ts if ts is not None else now_ms(),
        channel=channel,
        restart=restart,
        channels=channels,
        partition=partition,
    )


async def members(store: PresenceStore, channel: str) -> dict[str, int]:
    [listing] = await store.run([Query(channel, None, 100)])
    assert isinstance(listing, Listing)
    return dict(listing.users)


async def apply(store: PresenceStore, *changes: Change) -> list[bool]:
    results = await store.run(changes)
    applied = []
    for result in results:
        assert isinstance(result, Applied)
        applied.append(result.applied)
    return applied


def channel_in(partitions: Partitions, partition: int, stem: str) -> str:
    """The first channel ``<stem><i>`` that lives in ``partition``."""
    return next(
        channel
        for channel in (f"{stem}{i}" for i in itertools.count())
        if partitions.of(channel) == partition
    )


class Events:
    """Every presence event published, read from a pattern subscription; each must come on
    the pub/sub channel of its channel's partition."""

    BARRIER = "ch:{presence.0}:presence:__barrier__"

    def __init__(self, redis: Redis, pubsub: PubSub, partitions: Partitions) -> None:
        self._redis = redis
        self._pubsub = pubsub
        self._partitions = partitions

    async def drain(self, deadline: float = 5.0) -> list[tuple[str, str, str]]:
        """Every event published so far, as (channel, event, user), oldest first.

        A marker published now arrives after them (one subscriber gets messages in publish
        order), so reading up to it reads them all.
        """
        await self._redis.publish(self.BARRIER, b"")
        got: list[tuple[str, str, str]] = []
        async with asyncio.timeout(deadline):
            while True:
                message = await self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=deadline
                )
                if message is None:
                    continue
                if message["channel"] == self.BARRIER.encode():
                    return got
                envelope = parse_envelope(load_bus(message["data"]))
                assert isinstance(envelope, Event)
                expected = self._partitions.event_channel(envelope.channel)
                assert message["channel"] == expected.encode()
                got.append((envelope.channel, envelope.event, envelope.data["user"]))


async def listen(redis: Redis, partitions: Partitions) -> AsyncIterator[Events]:
    """A subscription to the presence events of every partition, confirmed before it is
    given (the body of an ``events`` fixture)."""
    pubsub = redis.pubsub()
    # Braces are plain characters in a Redis glob: this matches every partition's tag.
    await pubsub.psubscribe("ch:{presence.*}:presence:*")
    async with asyncio.timeout(5):
        while (await pubsub.get_message(timeout=1)) is None:
            pass
    try:
        yield Events(redis, pubsub, partitions)
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
