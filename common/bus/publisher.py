"""Publishing channel events: one pub/sub message per event, read by every gateway."""

from __future__ import annotations

from typing import Any

from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import RedisCluster

from common.codec import pack_bus
from common.envelope import Event
from common.keys import Partitions
from common.redis_client import RedisClient


__all__ = ["event_message", "publish_event"]


def event_message(owner: Partitions, event: Event) -> tuple[str, bytes]:
    """The pub/sub channel and body that carry ``event``, of a channel of ``owner``'s."""
    return owner.event_channel(event.channel), pack_bus(event.to_wire())


async def publish_event(redis: RedisClient | Pipeline, owner: Partitions, event: Event) -> Any:
    """Publish ``event``, of a channel of ``owner``'s (on a pipeline, queue it; the caller
    executes). On a Redis Cluster with SPUBLISH, as the scripts do there: gateways listen
    per shard, and a PUBLISH never reaches a shard channel's subscribers."""
    channel, body = event_message(owner, event)
    if isinstance(redis, RedisCluster):
        return await redis.spublish(channel, body)
    return await redis.publish(channel, body)
