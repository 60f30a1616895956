"""Rooms and their history in Redis: key names, the Lua scripts, and what they return.

Every key lives under ``chat:`` (common.keys.service_prefix):

``chat:room:<room>``
    hash: ``private`` ("0"/"1"), ``creator``, ``created`` (ms), ``last`` (newest position),
    ``trimmed`` (newest position the retention removed). A public room with no message
    expires (``empty_room_ttl``); its first message makes it stay.
``chat:members:<room>``
    set: the members of a private room.
``chat:log:<room>``
    stream: the room's messages, capped at the retention; entry ids are the positions.
``chat:sent:<room>|<user>|<client_id>``
    string ``"<id> <position>"`` of a posted message, for de-duplication (expires).
``chat:rate:<user>``
    hash: the user's send token bucket (expires when full again).
``chat:owned:<user>``
    set: the rooms the user created, for the quota (pruned of rooms gone when it is full).
``chat:create-rate:<user>``
    hash: the user's room-creation token bucket (expires when full again).
``chat:typing:<room>|<user>``
    exists while a user's typing window is open.

Every state change goes through one script (chat_service/lua/*.lua, each loaded with
lib.lua before it), so that writing the history and publishing its event are one atomic
step. Calls are queued and run in one pipeline per batch of requests, in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio import Redis

from chat_service.rules import channel_of
from chat_service.settings import ChatSettings
from common.keys import event_channel, service_prefix
from common.lua import ScriptCall, Scripts, text
from common.partitions import partition_tag


__all__ = [
    "ChatStore",
    "Created",
    "HistoryPage",
    "Opened",
    "Sent",
    "decode_create",
    "decode_history",
    "decode_open",
    "decode_send",
    "decode_typing",
    "message_of",
]

#: Events go to partition 0's channels: the service has one partition until it takes
#: its Partitions (docs/bus.md "Partitions").
_TAG: Final = partition_tag("chat", 0)

PREFIX: Final = service_prefix("chat")
SCRIPTS: Final = ("create", "open", "send", "typing", "history")


def room_key(room: str) -> str:
    return f"{PREFIX}room:{room}"


def members_key(room: str) -> str:
    return f"{PREFIX}members:{room}"


def log_key(room: str) -> str:
    return f"{PREFIX}log:{room}"


def sent_key(room: str, user: str, client_id: str) -> str:
    # Neither a room nor a client_id may contain "|", so the parts cannot run together.
    return f"{PREFIX}sent:{room}|{user}|{client_id}"


def rate_key(user: str) -> str:
    return f"{PREFIX}rate:{user}"


def owned_key(user: str) -> str:
    return f"{PREFIX}owned:{user}"


def create_rate_key(user: str) -> str:
    return f"{PREFIX}create-rate:{user}"


def typing_key(room: str, user: str) -> str:
    return f"{PREFIX}typing:{room}|{user}"


class ChatStore:
    """Builds script calls from commands and runs them against Redis."""

    def __init__(self, redis: Redis, settings: ChatSettings) -> None:
        self._settings = settings
        self._scripts = Scripts(redis, "chat_service", SCRIPTS)

    async def load(self) -> None:
        """Load the scripts (at start-up; they are loaded again on NOSCRIPT)."""
        await self._scripts.load()

    async def run(self, calls: list[ScriptCall]) -> list[Any]:
        """Run ``calls`` in one pipeline, in order; each result is a value or an exception.

        Connection failures propagate (the batch is handled again later); a script error
        (a ResponseError) is returned in place of that call's result.
        """
        return await self._scripts.pipeline(calls)

    # Calls.

    def _creation(self, room: str) -> tuple[str | int, ...]:
        """The arguments of admit_room and new_room (lua/lib.lua), as the scripts take them."""
        settings = self._settings
        return (
            room,
            settings.max_rooms,
            repr(settings.create_rate),
            settings.create_burst,
            room_key(""),
            max(1, round(settings.empty_room_ttl * 1000)),
        )

    def create(self, room: str, user: str, private: bool, members: tuple[str, ...]) -> ScriptCall:
        return ScriptCall(
            "create",
            (room_key(room), members_key(room), owned_key(user), create_rate_key(user)),
            (
                user,
                "1" if private else "0",
                *self._creation(room),
                self._settings.max_members,
                *members,
            ),
        )

    def open(
        self, room: str, user: str, *, create: bool, since: str | None, latest: int
    ) -> ScriptCall:
        return ScriptCall(
            "open",
            (
                room_key(room),
                members_key(room),
                log_key(room),
                owned_key(user),
                create_rate_key(user),
            ),
            (
                user,
                "1" if create else "0",
                since or "",
                latest,
                self._settings.replay_limit,
                *self._creation(room),
            ),
        )

    def send(self, room: str, user: str, text: str, client_id: str, message_id: str) -> ScriptCall:
        settings = self._settings
        channel = channel_of(room)
        return ScriptCall(
            "send",
            (
                room_key(room),
                members_key(room),
                log_key(room),
                sent_key(room, user, client_id),
                rate_key(user),
            ),
            (
                user,
                text,
                client_id,
                message_id,
                channel,
                event_channel(channel, _TAG),
                settings.retention,
                int(settings.dedupe_ttl * 1000),
                repr(settings.send_rate),
                settings.send_burst,
            ),
        )

    def typing(self, room: str, user: str, event_id: str) -> ScriptCall:
        channel = channel_of(room)
        return ScriptCall(
            "typing",
            (room_key(room), members_key(room), typing_key(room, user)),
            (
                user,
                event_id,
                channel,
                event_channel(channel, _TAG),
                max(1, int(self._settings.typing_interval * 1000)),
            ),
        )

    def history(self, room: str, user: str, before: str | None, limit: int) -> ScriptCall:
        return ScriptCall(
            "history",
            (room_key(room), members_key(room), log_key(room)),
            (user, before or "", limit),
        )


# What the scripts return, decoded. Redis gives strings as bytes.


def message_of(entry: Any) -> dict[str, Any]:
    """A stream entry ``[position, [field, value, ...]]`` as a message of a reply."""
    position = text(entry[0])
    fields = entry[1]
    values = {text(fields[i]): text(fields[i + 1]) for i in range(0, len(fields) - 1, 2)}
    return {
        "id": values.get("id", ""),
        "user": values.get("user", ""),
        "text": values.get("text", ""),
        "ts": int(position.partition("-")[0]),
        "client_id": values.get("client_id", ""),
        "position": position,
    }


@dataclass(frozen=True, slots=True)
class Created:
    status: str
    #: The member count; for too_many_members, too_many_rooms and rate_limited, the limit
    #: or the ms to wait.
    detail: int


def decode_create(result: Any) -> Created:
    return Created(text(result[0]), int(result[1]))


@dataclass(frozen=True, slots=True)
class Opened:
    status: str
    private: bool
    position: str
    #: Whether every message after ``since`` is in ``messages``; None without since.
    recovered: bool | None
    messages: list[dict[str, Any]]
    #: For too_many_rooms the quota, for rate_limited the ms to wait; else 0.
    detail: int = 0


def decode_open(result: Any) -> Opened:
    recovered = text(result[3])
    return Opened(
        status=text(result[0]),
        private=bool(int(result[1])),
        position=text(result[2]),
        recovered=None if recovered == "" else recovered == "1",
        messages=[message_of(entry) for entry in result[4]],
        detail=int(result[5]) if len(result) > 5 else 0,
    )


@dataclass(frozen=True, slots=True)
class Sent:
    status: str
    id: str = ""
    position: str = ""
    retry_after_ms: int = 0


def decode_send(result: Any) -> Sent:
    status = text(result[0])
    if status in ("posted", "duplicate"):
        return Sent(status, text(result[1]), text(result[2]))
    if status == "rate_limited":
        return Sent(status, retry_after_ms=int(result[1]))
    return Sent(status)


def decode_typing(result: Any) -> str:
    return text(result[0])


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """What history.lua found: a page of messages, and whether older ones remain."""

    status: str
    more: bool
    #: Oldest first.
    messages: list[dict[str, Any]]


def decode_history(result: Any) -> HistoryPage:
    messages = [message_of(entry) for entry in result[2]]
    messages.reverse()
    return HistoryPage(text(result[0]), bool(int(result[1])), messages)
