"""The namespace registry, pure: what a service announces, and the gateway's view of them all.

Each service announces itself (:class:`Offer`: its request types with their fields, and the
namespaces it owns) in the three registry keys of :mod:`common.keys`, through the announce
script (``common/lua/announce.lua``, run by :class:`common.announcer.Announcer`). Gateways
(and the presence service) read the keys every ``RT_REGISTRY_POLL`` seconds
(:class:`common.announcer.RegistryReader`) and make a :class:`Registry` of the read with
:func:`build_registry`. Nothing here talks to Redis. docs/bus.md "Namespace registry" is the
normative description.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from common.codec import load_bus, pack_bus
from common.envelope import BUS_VERSION, new_id, now_ms
from common.errors import ErrorCode, ProtocolError
from common.keys import event_channel, request_stream
from common.namespaces import NAME, Access, Namespace, namespace_name
from common.partitions import MAX_PARTITIONS, channel_entity, partition_of, partition_tag
from common.requests import FIELD, FRAME_FIELDS, REQUEST_TYPE, RequestTable


__all__ = [
    "EMPTY_REGISTRY",
    "RESERVED",
    "Announcement",
    "Offer",
    "Refusal",
    "Registry",
    "RegistryView",
    "build_registry",
    "decode_announcement",
]

KIND: Final = "announcement"
#: Names no service or namespace may take: the prefixes of the bus's own Redis names
#: (``gw:leases``, ``svc:<service>:requests``, ``ch:<channel>``), which a service's keys
#: (``<service>:``) and a client's channels must never look like.
RESERVED: Final = frozenset({"gw", "svc", "ch"})


def _bad(message: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_REQUEST, message)


@dataclass(frozen=True, slots=True)
class Offer:
    """What a service announces of itself: its request types and the namespaces it owns.

    Raises:
        ProtocolError: the offer breaks a rule of docs/bus.md (a malformed name, a request
            type of another service, a namespace twice).
    """

    service: str
    #: ``<service>.<action>`` -> the fields besides ``type`` and ``ref``; None: any field.
    requests: RequestTable
    #: The namespaces it owns, each with ``service`` set to this service.
    namespaces: tuple[Namespace, ...] = ()
    #: How many partitions its requests and state are split into (docs/bus.md
    #: "Partitions"); None: it announces none, and has one unpartitioned stream.
    partitions: int | None = None
    #: Request type -> the field of ``data`` naming the request's entity, whose partition
    #: the request goes to; a type not listed goes to partition 0.
    entities: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if not NAME.fullmatch(self.service):
            raise _bad(f"service name {self.service!r} is not [a-z][a-z0-9_]{{0,31}}")
        if self.service in RESERVED:
            raise _bad(f"service name {self.service!r} is reserved for the bus")
        for kind, fields in self.requests.items():
            if not REQUEST_TYPE.fullmatch(kind) or not kind.startswith(self.service + "."):
                raise _bad(f"request type {kind!r} is not '{self.service}.<action>'")
            for name in fields or ():
                if not FIELD.fullmatch(name) or name in FRAME_FIELDS:
                    raise _bad(f"{kind}: {name!r} is not a field name")
        names = [namespace.name for namespace in self.namespaces]
        for namespace in self.namespaces:
            if not NAME.fullmatch(namespace.name):
                raise _bad(f"namespace name {namespace.name!r} is not [a-z][a-z0-9_]{{0,31}}")
            if namespace.name in RESERVED:
                raise _bad(f"namespace name {namespace.name!r} is reserved for the bus")
            if namespace.service != self.service:
                raise _bad(f"namespace {namespace.name!r} is not {self.service!r}'s")
            if names.count(namespace.name) > 1:
                raise _bad(f"namespace {namespace.name!r} is announced twice")
        if self.partitions is not None and not 1 <= self.partitions <= MAX_PARTITIONS:
            raise _bad(f"'partitions' must be 1 to {MAX_PARTITIONS}, not {self.partitions}")
        for kind, name in self.entities.items():
            if kind not in self.requests:
                raise _bad(f"entity of {kind!r}, which is not one of the service's requests")
            if not FIELD.fullmatch(name):
                raise _bad(f"{kind}: entity {name!r} is not a field name")

    @property
    def namespace_names(self) -> list[str]:
        return [namespace.name for namespace in self.namespaces]


@dataclass(frozen=True, slots=True)
class Announcement:
    """One announcement of a service instance: its :class:`Offer`, with an id and a time."""

    offer: Offer
    instance: str
    id: str = field(default_factory=new_id)
    ts: int = field(default_factory=now_ms)

    def to_wire(self) -> dict[str, Any]:
        offer = self.offer
        return {
            "v": BUS_VERSION,
            "kind": KIND,
            "id": self.id,
            "ts": self.ts,
            "service": offer.service,
            "instance": self.instance,
            "requests": {
                kind: None if fields is None else sorted(fields)
                for kind, fields in offer.requests.items()
            },
            "namespaces": [
                {
                    "name": namespace.name,
                    "access": namespace.access.value,
                    "history": namespace.history,
                    "presence": namespace.presence,
                }
                for namespace in offer.namespaces
            ],
            **(
                {}
                if offer.partitions is None
                else {"partitions": offer.partitions, "entities": dict(offer.entities)}
            ),
        }

    def encode(self) -> bytes:
        return pack_bus(self.to_wire())


def decode_announcement(body: bytes) -> Announcement:
    """The announcement ``body`` (msgpack) carries.

    Raises:
        ProtocolError: it does not decode, or breaks a rule of docs/bus.md.
    """
    value = load_bus(body)
    if value.get("v") != BUS_VERSION or value.get("kind") != KIND:
        raise _bad(f"not a bus v{BUS_VERSION} announcement")
    service = _text(value, "service")
    instance = _text(value, "instance")
    ident = _text(value, "id")
    ts = value.get("ts")
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise _bad("'ts' must be an integer")
    requests = value.get("requests")
    if not isinstance(requests, dict):
        raise _bad("'requests' must be a map")
    table: dict[str, frozenset[str] | None] = {}
    for kind, fields in requests.items():
        if fields is not None and not (
            isinstance(fields, list) and all(isinstance(name, str) for name in fields)
        ):
            raise _bad(f"the fields of {kind!r} must be an array of strings or nil")
        table[kind] = None if fields is None else frozenset(fields)
    namespaces = value.get("namespaces")
    if not isinstance(namespaces, list):
        raise _bad("'namespaces' must be an array")
    partitions = value.get("partitions")
    if partitions is not None and (not isinstance(partitions, int) or isinstance(partitions, bool)):
        raise _bad("'partitions' must be an integer")
    entities = value.get("entities", {})
    if not isinstance(entities, dict) or not all(
        isinstance(name, str) for name in entities.values()
    ):
        raise _bad("'entities' must be a map of strings")
    offer = Offer(
        service,
        MappingProxyType(table),
        tuple(_namespace(service, n) for n in namespaces),
        partitions,
        MappingProxyType(entities),
    )
    return Announcement(offer, instance, ident, ts)


def _text(value: Mapping[str, Any], name: str) -> str:
    text = value.get(name)
    if not isinstance(text, str):
        raise _bad(f"{name!r} must be a string")
    return text


def _namespace(service: str, value: object) -> Namespace:
    if not isinstance(value, dict):
        raise _bad("each namespace must be a map")
    name = _text(value, "name")
    try:
        access = Access(value.get("access"))
    except ValueError:
        raise _bad(f"namespace {name!r}: 'access' must be 'authenticated' or 'owner'") from None
    history, presence = value.get("history"), value.get("presence")
    if not isinstance(history, bool) or not isinstance(presence, bool):
        raise _bad(f"namespace {name!r}: 'history' and 'presence' must be booleans")
    return Namespace(name, service, access, history=history, presence=presence)


@dataclass(frozen=True, slots=True)
class Refusal:
    """An announcement a read ignored, and why (logged once, counted as a bus error)."""

    service: str
    reason: str


@dataclass(frozen=True, slots=True)
class Registry:
    """One read of the registry: the namespaces in force, request types, and leases."""

    #: Namespace name -> its policy and owner: only namespaces whose owner (``owners``)
    #: announces them.
    namespaces: Mapping[str, Namespace]
    #: Every request type of every announced service, with its fields.
    requests: RequestTable
    #: Service -> lease expiry (ms, Redis's clock); a service announced but never alive
    #: (not in ``alive``) is absent.
    expiries: Mapping[str, int]
    #: Redis's clock at the read (ms), and the reader's monotonic clock then (seconds).
    redis_ms: int = 0
    read_at: float = 0.0
    #: The announcement each service's entry came from.
    announcements: Mapping[str, Announcement] = field(default_factory=dict)
    #: Service -> when its lease ends on the reader's monotonic clock: Redis's time is taken
    #: to move on as the reader's clock does from the read. Checked on every request.
    deadlines: Mapping[str, float] = field(init=False)

    def __post_init__(self) -> None:
        base = self.read_at - self.redis_ms / 1000.0
        deadlines = {service: base + expiry / 1000.0 for service, expiry in self.expiries.items()}
        object.__setattr__(self, "deadlines", deadlines)

    def alive_at(self, service: str, redis_ms: int) -> bool:
        """Whether ``service``'s lease runs at ``redis_ms`` (Redis's clock, ms)."""
        expiry = self.expiries.get(service)
        return expiry is not None and expiry > redis_ms

    def alive(self, service: str, now: float) -> bool:
        """Whether ``service``'s lease runs at ``now`` (the reader's monotonic clock): as
        :meth:`alive_at` Redis's time then, taken to have moved on as the reader's clock."""
        deadline = self.deadlines.get(service)
        return deadline is not None and deadline > now

    def requests_of(self, service: str) -> RequestTable:
        """The request types ``service`` announced, with their fields (none: not announced)."""
        announcement = self.announcements.get(service)
        return MappingProxyType({}) if announcement is None else announcement.offer.requests

    def partitions(self, service: str) -> int | None:
        """How many partitions ``service`` announced; None when it announced none (or is
        not announced at all): it has one stream, ``svc:<service>:requests``."""
        announcement = self.announcements.get(service)
        return None if announcement is None else announcement.offer.partitions

    def request_stream(self, service: str, kind: str, data: Mapping[str, object]) -> str:
        """The stream a client request of type ``kind`` goes to: that of the partition of
        its entity (the announced field of ``data``; partition 0 for a type with none, or
        a value that is not a string, which the service then refuses)."""
        announcement = self.announcements.get(service)
        partitions = None if announcement is None else announcement.offer.partitions
        if announcement is None or partitions is None:
            return request_stream(service)
        name = announcement.offer.entities.get(kind)
        entity = None if name is None else data.get(name)
        if not isinstance(entity, str):
            return request_stream(service, 0)
        return request_stream(service, partition_of(entity, partitions))

    def entity_stream(self, service: str, entity: str) -> str:
        """The stream of the partition of ``service`` that holds ``entity``: for a
        ``subscribe`` to a channel's owner, the channel's entity
        (:func:`common.partitions.channel_entity`); for a presence notification, the tracked
        channel."""
        partitions = self.partitions(service)
        if partitions is None:
            return request_stream(service)
        return request_stream(service, partition_of(entity, partitions))

    def event_channel(self, channel: str) -> str:
        """The pub/sub channel of client channel ``channel``'s events: tagged with the
        partition of its entity in its owner, or untagged when the owner announces no
        partitions, or is unknown."""
        namespace = self.namespace_of(channel)
        partitions = None if namespace is None else self.partitions(namespace.service)
        if namespace is None or partitions is None:
            return event_channel(channel)
        partition = partition_of(channel_entity(channel), partitions)
        return event_channel(channel, partition_tag(namespace.service, partition))

    def channel(self, channel: object) -> Namespace:
        """The namespace of client channel ``channel``, in force.

        Raises:
            ProtocolError: the name is malformed or its namespace unknown (``invalid_channel``).
        """
        name = namespace_name(channel)
        namespace = self.namespaces.get(name)
        if namespace is None:
            known = ", ".join(sorted(self.namespaces)) or "none"
            raise ProtocolError(
                ErrorCode.INVALID_CHANNEL, f"unknown namespace {name!r}; known: {known}"
            )
        return namespace

    def namespace_of(self, channel: str) -> Namespace | None:
        """The namespace of ``channel``, or None when it is malformed or unknown."""
        try:
            return self.channel(channel)
        except ProtocolError:
            return None


EMPTY_REGISTRY: Final = Registry(MappingProxyType({}), MappingProxyType({}), MappingProxyType({}))


class RegistryView:
    """The registry in force in one process, replaced by each read (a reader's output, the
    sessions' input)."""

    __slots__ = ("current", "loaded")

    def __init__(self, current: Registry = EMPTY_REGISTRY) -> None:
        self.current = current
        #: Whether a read has succeeded: a gateway is ready only then.
        self.loaded = False


def build_registry(
    owners: Mapping[str, str],
    services: Mapping[str, bytes],
    alive: Iterable[tuple[str, float]],
    redis_ms: int,
    read_at: float,
    previous: Registry = EMPTY_REGISTRY,
) -> tuple[Registry, list[Refusal]]:
    """The registry of one read (``HGETALL`` owners and services, ``ZRANGE alive WITHSCORES``,
    ``TIME``), and the announcements it ignored.

    An announcement that does not decode, breaks a rule, or is filed under another service's
    name is ignored, and the rest kept. A namespace is in force when ``owners`` names a
    service whose announcement lists it: one released by an operator (``HDEL``) is not.

    A service of ``previous`` whose announcement is gone from the read (Redis restarted
    empty, or was flushed: the script never deletes one) is kept as it was, lease and
    namespaces, until it announces again: its clients get ``service_unavailable`` once its
    lease passes, never ``unknown_type`` for a service that merely has not re-announced yet.
    """
    refusals: list[Refusal] = []
    announcements: dict[str, Announcement] = {}
    for service, body in services.items():
        try:
            announcement = decode_announcement(body)
        except ProtocolError as exc:
            refusals.append(Refusal(service, exc.message))
            continue
        if announcement.offer.service != service:
            reason = f"filed under {service!r} but announces {announcement.offer.service!r}"
            refusals.append(Refusal(service, reason))
            continue
        announcements[service] = announcement
    expiries = {service: int(score) for service, score in alive}
    namespaces: dict[str, Namespace] = {}
    requests: dict[str, frozenset[str] | None] = {}
    for service, announcement in announcements.items():
        requests.update(announcement.offer.requests)
        for namespace in announcement.offer.namespaces:
            if owners.get(namespace.name) == service:
                namespaces[namespace.name] = namespace
    for service, announcement in previous.announcements.items():
        if service in services:
            continue
        announcements[service] = announcement
        requests.update(announcement.offer.requests)
        if service in previous.expiries:
            expiries.setdefault(service, previous.expiries[service])
        for namespace in announcement.offer.namespaces:
            kept = previous.namespaces.get(namespace.name)
            if kept is not None and kept.service == service and namespace.name not in owners:
                namespaces.setdefault(namespace.name, kept)
    registry = Registry(
        MappingProxyType(namespaces),
        MappingProxyType(requests),
        MappingProxyType(expiries),
        redis_ms,
        read_at,
        MappingProxyType(announcements),
    )
    return registry, refusals
