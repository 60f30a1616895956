"""Chat rules, pure (no I/O): what requests must look like, and what the scripts' answers mean.

Each ``parse_*`` function turns the data of one request (the client's frame minus ``type``
and ``ref``) into a frozen command, or raises :class:`ServiceError` with the code the client
gets (``bad_request``, ``empty_message``, ``message_too_long``). :func:`refusal` and
:func:`creation_refusal` turn a script's refusal into the error the client gets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from common.errors import ErrorCode, ServiceError
from common.keys import channel_prefix
from common.namespaces import Access, Namespace
from common.registry import Offer
from common.requests import RequestTable


__all__ = [
    "CHANNEL_PREFIX",
    "MAX_USER_LENGTH",
    "OFFER",
    "REQUESTS",
    "ROOM_EXISTS",
    "Create",
    "History",
    "Join",
    "Limits",
    "RoomOnly",
    "Send",
    "Subscribe",
    "canonical_position",
    "channel_of",
    "creation_refusal",
    "parse_create",
    "parse_history",
    "parse_join",
    "parse_room_only",
    "parse_send",
    "parse_subscribe",
    "refusal",
    "replayed_event",
]

#: The client requests chat answers and the fields of each: announced to the gateways, which
#: refuse others, and checked again by the handlers.
REQUESTS: Final[RequestTable] = MappingProxyType(
    {
        "chat.create": frozenset({"room", "private", "members"}),
        "chat.join": frozenset({"room", "since"}),
        "chat.leave": frozenset({"room"}),
        "chat.send": frozenset({"room", "text", "client_id"}),
        "chat.history": frozenset({"room", "before", "limit"}),
        "chat.typing": frozenset({"room"}),
    }
)
#: What chat announces in the namespace registry: the ``chat`` namespace, whose subscribes
#: chat decides (private rooms), with history and presence. Every request names its room,
#: chat's entity, and goes to the stream of the room's partition (``room``, in ``entities``).
OFFER: Final = Offer(
    "chat",
    REQUESTS,
    (Namespace("chat", "chat", Access.OWNER, history=True, presence=True),),
    partitions=1,
    entities=MappingProxyType(dict.fromkeys(REQUESTS, "room")),
)

#: Client channels of rooms are ``chat:<room>``.
CHANNEL_PREFIX: Final = channel_prefix("chat")
#: The error code of a chat.create for a room that exists with another creator or privacy.
ROOM_EXISTS = "room_exists"
#: A user name (a token's ``sub``) has at most this many characters, as in common/auth.py.
MAX_USER_LENGTH: Final = 128

# A room name is a valid channel name (common/namespaces.py) of at most 100 characters.
_ROOM = re.compile(r"[A-Za-z0-9_.:\-]{1,100}")
# No "|" in a client_id: it separates the parts of the de-duplication key.
_CLIENT_ID = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
# A position is a Redis Stream id, "<ms>-<seq>", each part below 2**64.
_POSITION = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
_U64: Final = 2**64


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits requests are checked against (from the service's settings)."""

    max_text: int = 2000
    max_members: int = 1000
    history_default: int = 50
    history_max: int = 100


@dataclass(frozen=True, slots=True)
class Join:
    room: str
    since: str | None


@dataclass(frozen=True, slots=True)
class Subscribe:
    room: str
    since: str | None


@dataclass(frozen=True, slots=True)
class Send:
    room: str
    text: str
    client_id: str


@dataclass(frozen=True, slots=True)
class Create:
    room: str
    private: bool
    members: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class History:
    room: str
    before: str | None
    limit: int


@dataclass(frozen=True, slots=True)
class RoomOnly:
    """``chat.leave`` and ``chat.typing``: a room and nothing else."""

    room: str


def _bad(message: str) -> ServiceError:
    return ServiceError(ErrorCode.BAD_REQUEST, message)


def _room(data: dict[str, Any]) -> str:
    room = data.get("room")
    if room is None:
        raise _bad("missing field 'room'")
    if not isinstance(room, str) or not _ROOM.fullmatch(room):
        raise _bad("'room' must be 1-100 letters, digits or _.:-")
    return room


def _position(data: dict[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    return canonical_position(value, name)


def canonical_position(value: object, name: str = "position") -> str:
    """A position in its canonical form (no leading zeros), as Redis writes stream ids.

    Raises:
        ServiceError: ``bad_request`` unless ``value`` is ``"<ms>-<seq>"`` with parts < 2**64.
    """
    match = _POSITION.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise _bad(f"{name!r} must be a position such as '1700000000000-0'")
    ms, seq = int(match.group(1)), int(match.group(2))
    if ms >= _U64 or seq >= _U64:
        raise _bad(f"{name!r} is out of range")
    return f"{ms}-{seq}"


def channel_of(room: str) -> str:
    """The client channel of a room."""
    return CHANNEL_PREFIX + room


def parse_join(data: dict[str, Any]) -> Join:
    return Join(_room(data), _position(data, "since"))


def parse_subscribe(data: dict[str, Any]) -> Subscribe:
    """The gateway's ``subscribe`` request: ``{channel: "chat:<room>", since?}``."""
    channel = data.get("channel")
    if not isinstance(channel, str) or not channel.startswith(CHANNEL_PREFIX):
        raise ServiceError(ErrorCode.INVALID_CHANNEL, "a chat channel is 'chat:<room>'")
    room = channel[len(CHANNEL_PREFIX) :]
    if not _ROOM.fullmatch(room):
        raise ServiceError(
            ErrorCode.INVALID_CHANNEL, "a room name is 1-100 letters, digits or _.:-"
        )
    return Subscribe(room, _position(data, "since"))


def parse_send(data: dict[str, Any], limits: Limits) -> Send:
    room = _room(data)
    text = data.get("text")
    if text is None:
        raise _bad("missing field 'text'")
    if not isinstance(text, str):
        raise _bad("'text' must be a string")
    if not text.strip():
        raise ServiceError(ErrorCode.EMPTY_MESSAGE, "the message is empty")
    if len(text) > limits.max_text:
        raise ServiceError(
            ErrorCode.MESSAGE_TOO_LONG,
            f"the message has {len(text)} characters; the most is {limits.max_text}",
            max_length=limits.max_text,
        )
    client_id = data.get("client_id")
    if client_id is None:
        raise _bad("missing field 'client_id' (a unique id per message, for retries)")
    if not isinstance(client_id, str) or not _CLIENT_ID.fullmatch(client_id):
        raise _bad("'client_id' must be 1-64 letters, digits or _.:-")
    return Send(room, text, client_id)


def parse_create(data: dict[str, Any], limits: Limits) -> Create:
    room = _room(data)
    private = data.get("private", False)
    if not isinstance(private, bool):
        raise _bad("'private' must be true or false")
    members = data.get("members", [])
    if not isinstance(members, list):
        raise _bad("'members' must be a list of user names")
    if len(members) > limits.max_members:
        raise _bad(f"at most {limits.max_members} members at a time")
    for member in members:
        if not isinstance(member, str) or not 0 < len(member) <= MAX_USER_LENGTH:
            raise _bad(f"each member must be a user name of 1-{MAX_USER_LENGTH} characters")
    if members and not private:
        raise _bad("only a private room has members; a public room is open to everyone")
    return Create(room, private, tuple(dict.fromkeys(members)))


def parse_history(data: dict[str, Any], limits: Limits) -> History:
    room = _room(data)
    before = _position(data, "before")
    limit = data.get("limit", limits.history_default)
    if not isinstance(limit, int) or isinstance(limit, bool):
        raise _bad("'limit' must be an integer")
    if not 1 <= limit <= limits.history_max:
        raise _bad(f"'limit' must be between 1 and {limits.history_max}")
    return History(room, before, limit)


def parse_room_only(data: dict[str, Any]) -> RoomOnly:
    return RoomOnly(_room(data))


# Decisions on what the scripts answered.


def refusal(status: str, room: str, action: str) -> ServiceError:
    """The error of a script's refusal to let a user ``action`` in ``room``."""
    if status == "not_found":
        return ServiceError(
            ErrorCode.ROOM_NOT_FOUND, f"there is no room {room!r}: join it first", room=room
        )
    if status == "forbidden":
        return ServiceError(
            ErrorCode.FORBIDDEN,
            f"room {room!r} is private: only its members may {action}",
            room=room,
        )
    return ServiceError(ErrorCode.INTERNAL_ERROR, "internal error")


def creation_refusal(status: str, room: str, detail: int) -> ServiceError | None:
    """The error of a room creation the quota or the creation rate refused, else None."""
    if status == "too_many_rooms":
        return ServiceError(
            ErrorCode.TOO_MANY_ROOMS,
            f"you have created {detail} rooms that still exist, the most one user may: "
            f"room {room!r} was not created (join an existing room instead)",
            room=room,
            limit=detail,
        )
    if status == "rate_limited":
        return ServiceError(
            ErrorCode.RATE_LIMITED,
            f"too many new rooms: room {room!r} was not created, retry later",
            room=room,
            retry_after_ms=detail,
        )
    return None


def replayed_event(message: dict[str, Any]) -> dict[str, Any]:
    """A stored message as a replayed event of a subscribe answer."""
    data = {key: value for key, value in message.items() if key != "position"}
    return {"event": "message", "position": message["position"], "data": data}
