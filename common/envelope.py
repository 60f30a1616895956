"""Bus envelopes: the values that travel between gateways and services (pure, no I/O).

Every envelope is a msgpack map carrying ``v`` (format version), ``kind``, ``id`` and ``ts``
(milliseconds since the epoch). ``docs/bus.md`` is the normative description.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Final

from common.errors import ErrorCode, ProtocolError


__all__ = [
    "BUS_VERSION",
    "Event",
    "Reply",
    "ReplyAddress",
    "ReplyBatch",
    "Request",
    "client_event",
    "new_id",
    "now_ms",
    "parse_envelope",
    "position_key",
    "serial_id",
]

BUS_VERSION: Final = 1


def new_id() -> str:
    """A random 128-bit id as 32 hex digits: unique enough to correlate logs and dedupe."""
    return secrets.token_hex(16)


def serial_id() -> str:
    """A unique id as 32 hex digits: a random prefix of this process and a counter.

    For the ids of requests, replies and traces, which never leave the bus and the logs:
    made for every request, where reading the system's random source twice cost more than
    packing the request. What a counter tells (how many ids this process made) is nothing
    a client sees.
    """
    return _serial.prefix + format(next(_serial.counter), "016x")


class _Serial:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.prefix = secrets.token_hex(8)
        self.counter = itertools.count()


_serial = _Serial()
# A forked child must not repeat its parent's ids.
os.register_at_fork(after_in_child=_serial.reset)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


_POSITION = re.compile(r"[0-9]{1,20}(?:-[0-9]{1,20})*")


def position_key(position: str) -> tuple[int, ...]:
    """Order of channel positions: integers separated by ``-`` compared part by part.

    This covers Redis Stream ids (``1700000000000-3``) and plain sequence numbers (``42``).

    Raises:
        ProtocolError: the position is not of that form.
    """
    if _POSITION.fullmatch(position) is None:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"invalid position {position!r}")
    return tuple(int(part) for part in position.split("-"))


def client_event(channel: str, event: object, position: object, data: object) -> dict[str, Any]:
    """The client frame of a channel event (protocol v1), live or replayed by its owner."""
    return {
        "type": "event",
        "channel": channel,
        "event": event,
        "position": position,
        "data": data,
    }


def _field(wire: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = wire.get(name)
    if value.__class__ is kind:
        # What msgpack decodes is of the exact type: every reply and event passes here.
        return value
    # bool is an int to isinstance, never to the bus.
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _kinds(kind)):
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"bus envelope field {name!r} is invalid")
    return value


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _channel_list(wire: dict[str, Any], name: str) -> tuple[str, ...]:
    channels = wire.get(name)
    if channels is None and name not in wire:
        return ()  # most replies subscribe and unsubscribe nothing
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"bus envelope field {name!r} is invalid")
    return tuple(channels)


def _is_notification(item: object) -> bool:
    return (
        isinstance(item, dict)
        and isinstance(item.get("type"), str)
        and isinstance(item.get("data"), dict)
    )


def _prior(wire: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    prior = wire.get("prior", [])
    if not isinstance(prior, list) or not all(_is_notification(item) for item in prior):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "bus envelope field 'prior' is invalid")
    return tuple(prior)


@dataclass(frozen=True, slots=True)
class Request:
    """A gateway asks a service to act for one connection.

    ``type`` is the client's type (``bids.place``) or ``subscribe`` for a channel subscription
    that needs the owning service (authorization, current position, replay).
    """

    type: str
    data: dict[str, Any]
    gateway: str
    connection: str
    user: str | None
    trace: str = field(default_factory=serial_id)
    id: str = field(default_factory=serial_id)
    ts: int = field(default_factory=now_ms)
    #: A notification: the service handles it and publishes no reply.
    noreply: bool = False
    #: Notifications of this connection the service must have applied before it handles
    #: this request, each ``{"type", "data"}`` as it was sent: the gateway's way to let a
    #: read see the connection's own writes, whichever instance handled (or will handle)
    #: the notifications themselves.
    prior: tuple[dict[str, Any], ...] = ()
    #: The gateway also takes this request's reply inside a :class:`ReplyBatch`.
    batch: bool = False

    def to_wire(self) -> dict[str, Any]:
        wire = {
            "v": BUS_VERSION,
            "kind": "request",
            "id": self.id,
            "ts": self.ts,
            "type": self.type,
            "trace": self.trace,
            "gw": self.gateway,
            "conn": self.connection,
            "user": self.user,
            "data": self.data,
        }
        if self.noreply:
            wire["noreply"] = True
        if self.prior:
            wire["prior"] = list(self.prior)
        if self.batch:
            wire["batch"] = True
        return wire

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> Request:
        user = wire.get("user")
        if user is not None and not isinstance(user, str):
            raise ProtocolError(ErrorCode.BAD_REQUEST, "bus envelope field 'user' is invalid")
        return cls(
            type=_field(wire, "type", str),
            data=_field(wire, "data", dict),
            gateway=_field(wire, "gw", str),
            connection=_field(wire, "conn", str),
            user=user,
            trace=_field(wire, "trace", str),
            id=_field(wire, "id", str),
            ts=_field(wire, "ts", int),
            noreply=wire.get("noreply") is True,
            prior=_prior(wire),
            batch=wire.get("batch") is True,
        )


@dataclass(frozen=True, slots=True)
class Reply:
    """A service's answer to one request, sent to the reply channel of its gateway.

    Exactly one of ``data`` (ok) and ``error`` (refused) is set. ``subscribe`` lists channels
    the gateway subscribes the connection to before it delivers the reply (a server-side
    subscription, so that ``chat.join`` is one round trip).
    """

    request_id: str
    connection: str
    data: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    subscribe: tuple[str, ...] = ()
    #: Channels the gateway unsubscribes the connection from before delivering the reply.
    unsubscribe: tuple[str, ...] = ()
    id: str = field(default_factory=serial_id)
    ts: int = field(default_factory=now_ms)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "v": BUS_VERSION,
            "kind": "reply",
            "id": self.id,
            "ts": self.ts,
            "re": self.request_id,
            "conn": self.connection,
            "ok": self.error is None,
        }
        if self.error is None:
            wire["data"] = self.data if self.data is not None else {}
        else:
            wire["error"] = self.error
        if self.subscribe:
            wire["subscribe"] = list(self.subscribe)
        if self.unsubscribe:
            wire["unsubscribe"] = list(self.unsubscribe)
        return wire

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> Reply:
        ok = _field(wire, "ok", bool)
        subscribe = _channel_list(wire, "subscribe")
        unsubscribe = _channel_list(wire, "unsubscribe")
        if ok:
            data, error = _field(wire, "data", dict), None
        else:
            data, error = None, _field(wire, "error", dict)
            if not isinstance(error.get("code"), str):
                raise ProtocolError(ErrorCode.BAD_REQUEST, "a reply error needs a code")
        return cls(
            request_id=_field(wire, "re", str),
            connection=_field(wire, "conn", str),
            data=data,
            error=error,
            subscribe=subscribe,
            unsubscribe=unsubscribe,
            id=_field(wire, "id", str),
            ts=_field(wire, "ts", int),
        )


@dataclass(frozen=True, slots=True)
class ReplyBatch:
    """Replies of one service read to one gateway, in one message: one PUBLISH, one pub/sub
    delivery, one decode for them all. Only for requests that said ``batch``."""

    replies: tuple[Reply, ...]
    id: str = field(default_factory=serial_id)
    ts: int = field(default_factory=now_ms)

    def head(self) -> dict[str, Any]:
        """The envelope without its ``replies``, which a writer packs one by one."""
        return {"v": BUS_VERSION, "kind": "replies", "id": self.id, "ts": self.ts}

    def to_wire(self) -> dict[str, Any]:
        return {**self.head(), "replies": [reply.to_wire() for reply in self.replies]}

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> ReplyBatch:
        """Raises ProtocolError unless every element is a valid reply (its own ``v`` and
        ``kind`` included): a batch is taken whole or not at all."""
        items = wire.get("replies")
        if not isinstance(items, list) or not items:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "bus envelope field 'replies' is invalid")
        replies = []
        for item in items:
            if not isinstance(item, dict):
                raise ProtocolError(ErrorCode.BAD_REQUEST, "a batched reply must be a map")
            _check_version(item)
            if item.get("kind") != "reply":
                raise ProtocolError(ErrorCode.BAD_REQUEST, "a batch holds replies only")
            replies.append(Reply.from_wire(item))
        return cls(tuple(replies), id=_field(wire, "id", str), ts=_field(wire, "ts", int))


@dataclass(frozen=True, slots=True)
class ReplyAddress:
    """Where the reply to a request goes, written beside it so that it survives a bad ``e``.

    Not an envelope: the stream field ``r`` of a request entry (see ``docs/bus.md``). A
    service reads it only when the request itself cannot be decoded, to refuse it.
    """

    gateway: str
    connection: str
    request_id: str

    @classmethod
    def of(cls, request: Request) -> ReplyAddress:
        return cls(request.gateway, request.connection, request.id)

    def to_wire(self) -> dict[str, Any]:
        return {"gw": self.gateway, "conn": self.connection, "re": self.request_id}

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> ReplyAddress:
        return cls(_field(wire, "gw", str), _field(wire, "conn", str), _field(wire, "re", str))


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened on a client channel, published by the channel's owner."""

    channel: str
    event: str
    data: dict[str, Any]
    position: str | None = None
    id: str = field(default_factory=new_id)
    ts: int = field(default_factory=now_ms)

    def to_wire(self) -> dict[str, Any]:
        return {
            "v": BUS_VERSION,
            "kind": "event",
            "id": self.id,
            "ts": self.ts,
            "channel": self.channel,
            "event": self.event,
            "position": self.position,
            "data": self.data,
        }

    def to_client(self) -> dict[str, Any]:
        """The client frame of this event (protocol v1)."""
        return client_event(self.channel, self.event, self.position, self.data)

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> Event:
        """The event a decoded bus map carries.

        Raises:
            ProtocolError: another version or kind (gateways read events with this alone, not
                through :func:`parse_envelope`), or a field of the wrong type.
        """
        _check_version(wire)
        if wire.get("kind") != "event":
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"not an event: {wire.get('kind')!r}")
        position = wire.get("position")
        if position is not None and not isinstance(position, str):
            raise ProtocolError(ErrorCode.BAD_REQUEST, "bus envelope field 'position' is invalid")
        return cls(
            channel=_field(wire, "channel", str),
            event=_field(wire, "event", str),
            data=_field(wire, "data", dict),
            position=position,
            id=_field(wire, "id", str),
            ts=_field(wire, "ts", int),
        )


def _check_version(wire: dict[str, Any]) -> None:
    version = wire.get("v")
    # Exactly an int: True == 1, and it is no version.
    if version.__class__ is not int or version != BUS_VERSION:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"unsupported bus version {version!r}")


_KINDS: dict[str, type[Request] | type[Reply] | type[ReplyBatch] | type[Event]] = {
    "request": Request,
    "reply": Reply,
    "replies": ReplyBatch,
    "event": Event,
}


def parse_envelope(wire: dict[str, Any]) -> Request | Reply | ReplyBatch | Event:
    """Turn a decoded bus map into its envelope.

    Raises:
        ProtocolError: unknown version or kind, or a field of the wrong type.
    """
    _check_version(wire)
    name = wire.get("kind")
    kind = _KINDS.get(name) if isinstance(name, str) else None
    if kind is None:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"unknown envelope kind {wire.get('kind')!r}")
    return kind.from_wire(wire)
