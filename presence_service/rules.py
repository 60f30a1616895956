"""Presence rules, pure (no I/O): the values the service works with, and from bus requests
to store operations and back to reply data.

Two kinds of requests reach the presence service. Notifications from gateways (``track``,
``untrack``, ``drop``: types without a dot, so no client can send them) change presence and
get no reply. Client requests (``presence.list``, ``presence.count``) read it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Final, Literal

from common.envelope import Request
from common.errors import ErrorCode, ProtocolError, ServiceError
from common.keys import Partitions, channel_prefix
from common.namespaces import Access, Namespace, namespace_name
from common.registry import Offer, Registry
from common.requests import RequestTable, check_fields


__all__ = [
    "NOTIFICATIONS",
    "OFFER",
    "PRESENCE_CHANNEL_PREFIX",
    "QUERIES",
    "REQUESTS",
    "Applied",
    "Change",
    "Listing",
    "Query",
    "Reaped",
    "Stats",
    "count_reply",
    "list_reply",
    "parse_change",
    "parse_prior",
    "parse_query",
    "partitions_of",
    "subscribe_reply",
]

#: The client requests presence answers and the fields of each: announced to the gateways,
#: which refuse others, and checked again by :func:`parse_query`.
REQUESTS: Final[RequestTable] = MappingProxyType(
    {"presence.list": frozenset({"channel"}), "presence.count": frozenset({"channel"})}
)
#: What presence announces in the namespace registry: ``presence``, open to every user, with
#: no history (the gateway subscribes alone). A read's entity is the tracked channel it asks
#: about, which is also the entity of that channel's ``presence:`` client channel.
OFFER: Final = Offer(
    "presence",
    REQUESTS,
    (Namespace("presence", "presence", Access.AUTHENTICATED, history=False),),
    partitions=1,
    entities=MappingProxyType({"presence.list": "channel", "presence.count": "channel"}),
)

#: The client channel of channel C's presence events is PRESENCE_CHANNEL_PREFIX + C.
PRESENCE_CHANNEL_PREFIX: Final = channel_prefix("presence")


@dataclass(frozen=True, slots=True)
class Change:
    """One notification from a gateway: a connection's subscription began, ended, or closed."""

    kind: Literal["track", "untrack", "drop"]
    connection: str
    gateway: str
    user: str
    seq: int
    #: When the gateway made it (ms since the epoch, gateway clock).
    ts: int
    #: The channel of a track or untrack.
    channel: str = ""
    #: A drop because the gateway is restarting (close 1012).
    restart: bool = False
    #: The channels a drop says are still tracked (those of one partition); only their
    #: partition is used: the state of record is the connection's record in it.
    channels: tuple[str, ...] = ()
    #: The partition a drop names (``partition`` in its data), if it does.
    partition: int | None = None


@dataclass(frozen=True, slots=True)
class Applied:
    """What one change did: applied, or refused as older than what was already applied."""

    applied: bool
    joins: int
    leaves: int


@dataclass(frozen=True, slots=True)
class Query:
    """A read of one channel's presence."""

    channel: str
    #: Who asks, when only a user present in the channel may see it; else None.
    member: str | None
    #: Most users to return; 0 for only the count.
    limit: int


@dataclass(frozen=True, slots=True)
class Listing:
    allowed: bool
    count: int = 0
    truncated: bool = False
    #: (user, connections), in no particular order.
    users: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class Reaped:
    """What one sweep for dead gateways released."""

    gateways: tuple[str, ...] = ()
    connections: int = 0
    leaves: int = 0


@dataclass(frozen=True, slots=True)
class Stats:
    channels: int
    users: int
    lingering: int
    gateways: int


#: Notification types, sent by gateways with ``noreply``.
NOTIFICATIONS = frozenset({"track", "untrack", "drop"})
#: Client request types, and ``subscribe`` (a gateway asking whether a user may subscribe
#: to a ``presence:`` channel, should that namespace ever be made owner-checked).
QUERIES = frozenset({"presence.list", "presence.count", "subscribe"})


def _tracked_channel(value: object, registry: Registry, *, trusted: bool = False) -> str:
    """A channel whose namespace has presence, or a ServiceError saying why not.

    ``trusted``: a gateway's notification, for a channel its registry gave presence; one
    this instance's registry does not know yet (a new namespace, read here up to
    ``RT_REGISTRY_POLL`` later) is taken on the gateway's word rather than lost.
    """
    try:
        name = namespace_name(value)
        namespace = registry.namespaces.get(name) if trusted else registry.channel(value)
    except ProtocolError as exc:
        raise ServiceError(exc.code, exc.message) from None
    if namespace is not None and not namespace.presence:
        raise ServiceError(
            ErrorCode.INVALID_CHANNEL,
            f"presence is not kept for {name!r} channels "
            "(ask about the channel itself, e.g. 'chat:lobby')",
        )
    assert isinstance(value, str)
    return value


def parse_change(request: Request, registry: Registry) -> Change:
    """The change a gateway's notification describes.

    Raises:
        ServiceError: the notification is malformed (a gateway bug; it is dropped).
    """
    data = request.data
    seq = data.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise ServiceError(ErrorCode.BAD_REQUEST, "a notification needs a positive integer seq")
    if request.user is None:
        raise ServiceError(ErrorCode.BAD_REQUEST, "a notification needs the connection's user")
    if request.type in ("track", "untrack"):
        return Change(
            "track" if request.type == "track" else "untrack",
            connection=request.connection,
            gateway=request.gateway,
            user=request.user,
            seq=seq,
            ts=request.ts,
            channel=_tracked_channel(data.get("channel"), registry, trusted=True),
        )
    if request.type != "drop":
        raise ServiceError(ErrorCode.UNKNOWN_TYPE, f"unknown notification {request.type!r}")
    restart = data.get("restart", False)
    if not isinstance(restart, bool):
        raise ServiceError(ErrorCode.BAD_REQUEST, "'restart' must be a boolean")
    channels = data.get("channels", [])
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise ServiceError(ErrorCode.BAD_REQUEST, "'channels' must be an array of channels")
    partition = data.get("partition")
    if partition is not None and (not isinstance(partition, int) or isinstance(partition, bool)):
        raise ServiceError(ErrorCode.BAD_REQUEST, "'partition' must be an integer")
    return Change(
        "drop",
        connection=request.connection,
        gateway=request.gateway,
        user=request.user,
        seq=seq,
        ts=request.ts,
        restart=restart,
        channels=tuple(channels),
        partition=partition,
    )


def partitions_of(operation: Change | Query, partitions: Partitions) -> tuple[int, ...]:
    """The partitions an operation runs in: that of its channel (``partitions.of``, the
    partition of the channel's ``presence:`` events too), and for a drop those of the
    channels it names and the partition it names (if there is one of that number).

    A drop that names neither (a connection with no channel left in a partition, from a
    gateway that does not say which) runs in every partition: its tombstone must be where
    the connection's late notifications would be applied, and one where the connection never
    was costs a key that expires.
    """
    if not isinstance(operation, Change) or operation.kind != "drop":
        return (partitions.of(operation.channel),)
    named = {partitions.of(channel) for channel in operation.channels}
    if operation.partition is not None and 0 <= operation.partition < partitions.count:
        named.add(operation.partition)
    return tuple(sorted(named)) if named else tuple(partitions)


def parse_prior(request: Request, registry: Registry) -> list[Change]:
    """The track and untrack notifications a read must see applied first (``prior``).

    They come from the gateway, stamped like the read; the same notification handled from
    the stream, before or after, is refused as stale.

    Raises:
        ServiceError: one of them is malformed or of another type (a gateway bug).
    """
    changes = []
    for item in request.prior:
        if item["type"] not in ("track", "untrack"):
            raise ServiceError(ErrorCode.BAD_REQUEST, f"{item['type']!r} cannot come before a read")
        prior = replace(request, type=item["type"], data=item["data"])
        changes.append(parse_change(prior, registry))
    return changes


def parse_query(request: Request, list_limit: int, registry: Registry) -> Query:
    """The read a client's ``presence.list`` or ``presence.count`` asks for.

    Anyone authenticated may read the presence of a channel anyone authenticated may
    subscribe to (``auction:``). Where the owning service decides who may subscribe
    (``chat:``), only a user present in the channel may read it: this service cannot ask the
    owner, and a user present was admitted by it.

    Raises:
        ServiceError: the channel is missing, malformed, or not one with presence, or the
            request has a field its type does not take.
    """
    if request.user is None:
        raise ServiceError(ErrorCode.UNAUTHENTICATED, "authenticate first")
    check_fields(REQUESTS, request.type, request.data)
    channel = request.data.get("channel")
    if request.type == "subscribe":
        # The presence channel of channel C is "presence:C": the same rule applies to C.
        if not isinstance(channel, str) or not channel.startswith(PRESENCE_CHANNEL_PREFIX):
            raise ServiceError(ErrorCode.INVALID_CHANNEL, "not a presence channel")
        channel = channel[len(PRESENCE_CHANNEL_PREFIX) :]
    channel = _tracked_channel(channel, registry)
    namespace = registry.channel(channel)
    member = request.user if namespace.access is Access.OWNER else None
    limit = list_limit if request.type == "presence.list" else 0
    return Query(channel, member, limit)


def _check_allowed(query: Query, listing: Listing) -> None:
    if not listing.allowed:
        raise ServiceError(
            ErrorCode.FORBIDDEN,
            f"only users subscribed to {query.channel!r} may see who is in it",
        )


def list_reply(query: Query, listing: Listing) -> dict[str, Any]:
    """``{channel, users: [{user, connections}], count}``, users sorted by name.

    ``truncated: true`` is added when the channel has more users than one reply carries.

    Raises:
        ServiceError: ``forbidden``, the asker may not see this channel.
    """
    _check_allowed(query, listing)
    users = [{"user": user, "connections": n} for user, n in sorted(listing.users)]
    reply: dict[str, Any] = {"channel": query.channel, "users": users, "count": listing.count}
    if listing.truncated:
        reply["truncated"] = True
    return reply


def subscribe_reply(query: Query, listing: Listing) -> dict[str, Any]:
    """The answer to a gateway's ``subscribe`` to ``presence:<channel>``: no history.

    Raises:
        ServiceError: ``forbidden``, the user may not see this channel's presence.
    """
    _check_allowed(query, listing)
    return {"position": None}


def count_reply(query: Query, listing: Listing) -> dict[str, Any]:
    """``{channel, count}``: the number of users present.

    Raises:
        ServiceError: ``forbidden``, the asker may not see this channel.
    """
    _check_allowed(query, listing)
    return {"channel": query.channel, "count": listing.count}
