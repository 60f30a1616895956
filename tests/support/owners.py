"""The owner of a test's channel, as the test systems run it: what a test publishes as."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from common.bus.publisher import publish_event
from common.envelope import Event
from common.keys import Partitions
from common.namespaces import namespace_name


__all__ = ["owner", "publish"]

#: Namespaces owned by a service of another name; every other namespace's owner has its
#: name (the stub services, the test-only orders service).
_OWNERS = {"auction": "bids"}


def owner(channel: str, partitions: int = 1) -> Partitions:
    """The partitions of the service that owns ``channel`` (one, as test systems run it)."""
    name = namespace_name(channel)
    return Partitions(_OWNERS.get(name, name), partitions)


async def publish(bus: Redis, event: Event) -> Any:
    """Publish ``event`` as its channel's owner does."""
    return await publish_event(bus, owner(event.channel), event)
