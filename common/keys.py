"""Every Redis key, stream and pub/sub channel name the bus uses is built here, and the prefix
of each namespace's client channels."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from common.partitions import channel_entity, partition_of, partition_tag


__all__ = [
    "EVENT_CHANNEL_PREFIX",
    "GATEWAY_LEASES",
    "REGISTRY_ALIVE",
    "REGISTRY_KEYS",
    "REGISTRY_OWNERS",
    "REGISTRY_SERVICES",
    "REVOCATIONS",
    "REVOKED",
    "Partitions",
    "channel_prefix",
    "client_channel",
    "event_channel",
    "partition_prefix",
    "reply_channel",
    "request_stream",
    "service_prefix",
]

#: Pub/sub channels of client channels carry this prefix, so that no client channel name can
#: collide with a gateway's reply channel.
EVENT_CHANNEL_PREFIX = "ch:"


#: Sorted set: gateway id -> lease expiry (ms since the epoch). A gateway renews its own
#: lease while it runs; one whose lease has passed is dead, and what it held is released.
GATEWAY_LEASES = "gw:leases"

#: Pub/sub channel: every gateway hears each revocation of a user or a token (``jti``).
REVOCATIONS = "gw:revocations"

#: Sorted set: revocation message (msgpack) -> when it ends (ms since the epoch), so that a
#: gateway that starts, or reconnects, learns those in force. Expires with the last of them.
REVOKED = "gw:revoked"


# The namespace registry (docs/bus.md "Namespace registry"). The hash tag keeps the three keys
# on one slot of a Redis Cluster, so that the announce script may touch them all.

#: Hash: namespace -> the name of the service that owns it.
REGISTRY_OWNERS = "{registry}:owners"
#: Hash: service name -> its latest announcement (msgpack).
REGISTRY_SERVICES = "{registry}:services"
#: Sorted set: service name -> lease expiry (ms since the epoch, Redis's clock).
REGISTRY_ALIVE = "{registry}:alive"
#: The announce script's KEYS, in order.
REGISTRY_KEYS = (REGISTRY_OWNERS, REGISTRY_SERVICES, REGISTRY_ALIVE)


def request_stream(service: str, partition: int | str | None = None) -> str:
    """The Redis Stream one partition of a service reads its requests from (consumer group =
    service name): ``svc:{bids.0}:requests`` (``partition`` ``"*"``: the pattern of them all).
    ``partition`` None: the one stream of a service that announces no partitions,
    ``svc:<service>:requests``."""
    if partition is None:
        return f"svc:{service}:requests"
    return f"svc:{partition_tag(service, partition)}:requests"


def reply_channel(gateway_id: str) -> str:
    """The pub/sub channel carrying replies to the connections one gateway holds."""
    return f"gw:{gateway_id}:replies"


def channel_prefix(namespace: str) -> str:
    """The prefix of a namespace's client channels: ``chat:`` for ``chat:<room>``.

    The namespaces are those the services announce (:mod:`common.registry`).
    """
    return f"{namespace}:"


def event_channel(channel: str, tag: str | None = None) -> str:
    """The pub/sub channel carrying the events of one client channel: ``ch:<tag>:<channel>``
    with the partition tag of the channel's entity in its owner (``ch:{bids.0}:auction:a1``),
    ``ch:<channel>`` when the owner announces no partitions (``tag`` None)."""
    if tag is None:
        return EVENT_CHANNEL_PREFIX + channel
    return f"{EVENT_CHANNEL_PREFIX}{tag}:{channel}"


def client_channel(name: str) -> str:
    """The client channel whose events pub/sub channel ``name`` carries (the inverse of
    :func:`event_channel`): ``ch:{bids.0}:auction:a1`` and ``ch:auction:a1`` give
    ``auction:a1``."""
    rest = name[len(EVENT_CHANNEL_PREFIX) :] if name.startswith(EVENT_CHANNEL_PREFIX) else name
    if rest.startswith("{"):
        close = rest.find("}:")
        if close != -1:
            return rest[close + 2 :]
    return rest


def service_prefix(service: str) -> str:
    """The key prefix under which a service keeps its own state; nothing else touches it."""
    return f"{service}:"


def partition_prefix(service: str, partition: int) -> str:
    """The prefix of the keys of one partition of a service: ``bids:{bids.0}:``. Every key a
    script of that partition touches starts so, which keeps the script on one slot."""
    return f"{service_prefix(service)}{partition_tag(service, partition)}:"


@dataclass(frozen=True, slots=True)
class Partitions:
    """The partitions of one service, and the names each gives (docs/bus.md "Partitions")."""

    service: str
    count: int = 1

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.count))

    def of(self, entity: str) -> int:
        """The partition that holds ``entity`` (:func:`common.partitions.partition_of`)."""
        return partition_of(entity, self.count)

    def of_channel(self, channel: str) -> int:
        """The partition that holds client channel ``channel``'s entity."""
        return partition_of(channel_entity(channel), self.count)

    def tag(self, partition: int) -> str:
        return partition_tag(self.service, partition)

    def prefix(self, partition: int) -> str:
        """The prefix of partition ``partition``'s keys (:func:`partition_prefix`)."""
        return partition_prefix(self.service, partition)

    def stream(self, partition: int) -> str:
        """Partition ``partition``'s request stream."""
        return request_stream(self.service, partition)

    def streams(self) -> list[str]:
        """Every partition's request stream, in order."""
        return [request_stream(self.service, partition) for partition in self]

    def event_channel(self, channel: str) -> str:
        """The pub/sub channel of the events of client channel ``channel``, one of this
        service's: tagged with the partition of its entity."""
        return event_channel(channel, self.tag(self.of_channel(channel)))
