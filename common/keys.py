"""Every Redis key, stream and pub/sub channel name the bus uses is built here, and the prefix
of each namespace's client channels."""

from __future__ import annotations


__all__ = [
    "EVENT_CHANNEL_PREFIX",
    "GATEWAY_LEASES",
    "REGISTRY_ALIVE",
    "REGISTRY_KEYS",
    "REGISTRY_OWNERS",
    "REGISTRY_SERVICES",
    "REVOCATIONS",
    "REVOKED",
    "channel_prefix",
    "event_channel",
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


def request_stream(service: str) -> str:
    """The Redis Stream a service reads its requests from (consumer group = service name)."""
    return f"svc:{service}:requests"


def reply_channel(gateway_id: str) -> str:
    """The pub/sub channel carrying replies to the connections one gateway holds."""
    return f"gw:{gateway_id}:replies"


def channel_prefix(namespace: str) -> str:
    """The prefix of a namespace's client channels: ``chat:`` for ``chat:<room>``.

    The namespaces are those the services announce (:mod:`common.registry`).
    """
    return f"{namespace}:"


def event_channel(channel: str) -> str:
    """The pub/sub channel carrying the events of one client channel."""
    return EVENT_CHANNEL_PREFIX + channel


def service_prefix(service: str) -> str:
    """The key prefix under which a service keeps its own state; nothing else touches it."""
    return f"{service}:"
