"""Client protocol v1, pure: frames in, typed messages or a ``ProtocolError`` out.

No I/O here: the connection module feeds decoded frames in and writes what comes out.
``docs/protocol.md`` is the normative description.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from common.envelope import client_event
from common.errors import ErrorCode, ProtocolError
from common.requests import RequestTable, unknown_field, unknown_field_message


__all__ = [
    "MAX_DEPTH",
    "Auth",
    "ClientMessage",
    "Ping",
    "Ref",
    "ServiceCall",
    "Subscribe",
    "Unsubscribe",
    "error_reply",
    "ok_reply",
    "parse_message",
    "parse_ref",
    "recovery_notice",
    "replayed_event",
]


Ref = str | int | None

_MAX_REF_LENGTH = 128
_MAX_TYPE_LENGTH = 64

#: How deeply a client message may nest objects and arrays, its own object being level 1.
#: JSON parsing allows 1024 levels, more than msgpack decodes on the bus (the request map
#: adds two): without a limit of its own, a deep request could never be answered.
MAX_DEPTH: Final = 32


@dataclass(frozen=True, slots=True)
class Auth:
    ref: Ref
    token: object


@dataclass(frozen=True, slots=True)
class Ping:
    ref: Ref


@dataclass(frozen=True, slots=True)
class Subscribe:
    ref: Ref
    channel: str
    since: str | None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    ref: Ref
    channel: str


@dataclass(frozen=True, slots=True)
class ServiceCall:
    ref: Ref
    type: str
    service: str
    #: The frame without ``type`` and ``ref``: what the service reads.
    data: dict[str, Any]


ClientMessage = Auth | Ping | Subscribe | Unsubscribe | ServiceCall


def parse_ref(frame: dict[str, Any]) -> Ref:
    """The frame's ``ref``, checked first so that even an error reply can echo it.

    Raises:
        ProtocolError: ``ref`` is neither a string nor an integer (the reply's ref is null).
    """
    ref = frame.get("ref")
    if ref is None:
        return None
    if isinstance(ref, str) and len(ref) <= _MAX_REF_LENGTH:
        return ref
    if isinstance(ref, int) and not isinstance(ref, bool) and abs(ref) < 2**53:
        return ref
    raise ProtocolError(
        ErrorCode.BAD_REQUEST, "'ref' must be a string of at most 128 characters or an integer"
    )


def _string(frame: dict[str, Any], name: str) -> str:
    value = frame.get(name)
    if value is None:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"missing field {name!r}")
    if not isinstance(value, str):
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"field {name!r} must be a string")
    return value


def _deeper_than(container: dict[str, Any] | list[Any], levels: int) -> bool:
    """Whether ``container`` (level 1) nests more than ``levels`` levels.

    It stops at the first path that is too deep, so the recursion is at most ``levels`` deep;
    a flat frame costs one pass over its values. Exact type tests, twice as fast as
    ``isinstance`` here, suffice: orjson makes plain dicts and lists and nothing else.
    """
    values: Iterable[Any] = container.values() if type(container) is dict else container
    for value in values:
        kind = type(value)
        if (kind is dict or kind is list) and (levels <= 1 or _deeper_than(value, levels - 1)):
            return True
    return False


def parse_message(frame: dict[str, Any], ref: Ref, requests: RequestTable) -> ClientMessage:
    """The typed message a decoded frame carries; ``requests``: the service calls allowed
    (those the services announce, :mod:`common.registry`).

    Raises:
        ProtocolError: ``bad_request`` for a missing, malformed or unknown field or a frame
            nested deeper than :data:`MAX_DEPTH`, ``unknown_type`` for a type that names no
            message and no request of ``requests``.
    """
    if _deeper_than(frame, MAX_DEPTH):
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, f"the message nests deeper than {MAX_DEPTH} levels"
        )
    kind = frame.get("type")
    if kind is None:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "missing field 'type'")
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.BAD_REQUEST, "field 'type' must be a string")
    if kind == "auth":
        return Auth(ref, frame.get("token"))
    if kind == "ping":
        return Ping(ref)
    if kind == "subscribe":
        since = frame.get("since")
        if since is not None and not isinstance(since, str):
            raise ProtocolError(ErrorCode.BAD_REQUEST, "field 'since' must be a string")
        return Subscribe(ref, _string(frame, "channel"), since)
    if kind == "unsubscribe":
        return Unsubscribe(ref, _string(frame, "channel"))
    service = kind.partition(".")[0]
    if kind not in requests:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, _unknown_type(kind, service, requests))
    data = {key: value for key, value in frame.items() if key not in ("type", "ref")}
    fields = requests[kind]
    unknown = unknown_field(data, fields)
    if unknown is not None:
        message = unknown_field_message(unknown, kind, fields or frozenset())
        raise ProtocolError(ErrorCode.BAD_REQUEST, message, field=_shown_value(unknown))
    return ServiceCall(ref, kind, service, data)


def _shown_value(text: str) -> str:
    return text if len(text) <= _MAX_TYPE_LENGTH else text[:_MAX_TYPE_LENGTH] + "..."


def _shown(text: str) -> str:
    return repr(_shown_value(text))


def _unknown_type(kind: str, service: str, requests: RequestTable) -> str:
    shown = _shown(kind)
    known = sorted(name for name in requests if name.startswith(service + "."))
    if not known or len(kind) > _MAX_TYPE_LENGTH:
        return f"unknown message type {shown}"
    return f"unknown message type {shown}; {service} has {', '.join(known)}"


def replayed_event(channel: str, item: dict[str, Any]) -> dict[str, Any]:
    """The client frame of one event of an owner's replay (``{event, position, data}``)."""
    return client_event(channel, item.get("event"), item.get("position"), item.get("data"))


def recovery_notice(channel: str, position: str | None) -> dict[str, Any]:
    """What a client is told when events it may have missed in a bus outage are not replayed."""
    return {"type": "recovery", "channel": channel, "position": position, "recovered": False}


def ok_reply(ref: Ref, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": "reply", "ref": ref, "ok": True, "data": data}


def error_reply(ref: Ref, error: dict[str, Any]) -> dict[str, Any]:
    """A refusal; ``error`` carries ``code`` and ``message`` and maybe more fields."""
    return {"type": "reply", "ref": ref, "ok": False, "error": error}
