"""Partitions: how a service splits its requests and its state so that each part lives on one
Redis Cluster slot (docs/bus.md "Partitions").

A partitioned service announces how many partitions it has (``RT_<SERVICE>_PARTITIONS``,
default 1) and, per request type, the field of ``data`` that names the request's
**entity** (an auction, a room, a presence channel). Everything of one entity is in one
partition: its requests' stream, its keys, its channel's events, all under the partition's
hash tag ``{<service>.<n>}``, so that a script sees one slot and one shard carries an event.
Gateways and services compute the partition with :func:`partition_of`, which any language
has (Redis Cluster's own key hash).

Nothing here talks to Redis.
"""

from __future__ import annotations

from binascii import crc_hqx
from typing import Final


__all__ = [
    "MAX_PARTITIONS",
    "SLOTS",
    "channel_entity",
    "partition_of",
    "partition_tag",
]

#: Most partitions a service may have: each is a stream that every instance reads with a
#: connection of its own.
MAX_PARTITIONS: Final = 256


#: Redis Cluster's hash slots.
SLOTS: Final = 16384


def partition_of(entity: str, partitions: int) -> int:
    """The partition of ``entity``: the Redis Cluster hash slot of its UTF-8 bytes (CRC-16/
    XMODEM modulo 16384, of the whole string: no hash-tag rule) modulo ``partitions``."""
    if partitions == 1:
        return 0
    return crc_hqx(entity.encode(), 0) % SLOTS % partitions


def partition_tag(service: str, partition: int | str) -> str:
    """The hash tag every name of one partition of ``service`` carries: ``{bids.0}`` (with
    ``partition`` ``"*"``, the ACL pattern of them all).

    It comes right after the name's fixed prefix (``bids:{bids.0}:auction:a1``), before
    anything a client chose, so it is always the name's first tag.
    """
    return f"{{{service}.{partition}}}"


def channel_entity(channel: str) -> str:
    """The entity of client channel ``<namespace>:<name>``: ``<name>`` (``auction:a1`` ->
    ``a1``; ``presence:chat:lobby`` -> ``chat:lobby``)."""
    return channel.partition(":")[2]
