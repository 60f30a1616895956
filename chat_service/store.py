"""Rooms and their history in Redis: the Lua scripts' calls, and what they return.

The key names are in :mod:`chat_service.keys`: each room's under the prefix of its
partition. Every state change goes through one script (chat_service/lua/*.lua, each loaded
with lib.lua before it), so that writing the history and publishing its event are one atomic
step, and every call touches the keys of one partition only (its room's). Calls are queued
and run in one pipeline per partition per batch of requests, in order within each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from chat_service.keys import place_of
from chat_service.rules import channel_of
from chat_service.settings import ChatSettings
from common.keys import Partitions
from common.lua import ScriptCall, Scripts, text
from common.redis_client import RedisClient


__all__ = [
    "ChatStore",
    "Created",
    "HistoryPage",
    "Opened",
    "RoomCall",
    "Sent",
    "decode_create",
    "decode_history",
    "decode_open",
    "decode_send",
    "decode_typing",
    "message_of",
]

SCRIPTS: Final = ("create", "open", "send", "typing", "history")


@dataclass(frozen=True, slots=True)
class RoomCall:
    """A script call about one room, and the partition whose keys it touches."""

    partition: int
    call: ScriptCall


class ChatStore:
    """Builds script calls from commands and runs them against Redis."""

    def __init__(self, redis: RedisClient, settings: ChatSettings, partitions: Partitions) -> None:
        self._settings = settings
        self._partitions = partitions
        self._scripts = Scripts(redis, "chat_service", SCRIPTS)

    async def load(self) -> None:
        """Load the scripts (at start-up; they are loaded again on NOSCRIPT)."""
        await self._scripts.load()

    async def run(self, calls: Sequence[RoomCall]) -> list[Any]:
        """Run ``calls``, one pipeline per partition (concurrently), in order within each;
        each result, in the order of ``calls``, is a value or an exception.

        A pipeline carries one partition's calls so that, on a Redis Cluster, it goes to the
        one node holding that partition's slot. Calls of different partitions are about
        different rooms, so nothing depends on their order.

        Connection failures propagate (the batch is handled again later; some partitions'
        calls may have run, which the scripts make safe to repeat); a script error (a
        ResponseError) is returned in place of that call's result.
        """
        groups: dict[int, list[int]] = {}
        for index, room_call in enumerate(calls):
            groups.setdefault(room_call.partition, []).append(index)
        if len(groups) <= 1:
            return await self._scripts.pipeline([room_call.call for room_call in calls])
        # Every pipeline runs to its end before a failure propagates: one cancelled halfway
        # would leave its connection with replies unread.
        answers = await asyncio.gather(
            *(
                self._scripts.pipeline([calls[index].call for index in indices])
                for indices in groups.values()
            ),
            return_exceptions=True,
        )
        results: list[Any] = [None] * len(calls)
        for indices, answer in zip(groups.values(), answers, strict=True):
            if isinstance(answer, BaseException):
                raise answer
            for index, result in zip(indices, answer, strict=True):
                results[index] = result
        return results

    # Calls.

    def _creation(self, room: str, room_prefix: str) -> tuple[str | int, ...]:
        """The arguments of admit_room and new_room (lua/lib.lua), as the scripts take them."""
        settings = self._settings
        return (
            room,
            settings.max_rooms,
            repr(settings.create_rate),
            settings.create_burst,
            room_prefix,
            max(1, round(settings.empty_room_ttl * 1000)),
        )

    def create(self, room: str, user: str, private: bool, members: tuple[str, ...]) -> RoomCall:
        place = place_of(self._partitions, room)
        keys = place.keys
        call = ScriptCall(
            "create",
            (keys.room(room), keys.members(room), keys.owned(user), keys.create_rate(user)),
            (
                user,
                "1" if private else "0",
                *self._creation(room, keys.room("")),
                self._settings.max_members,
                *members,
            ),
        )
        return RoomCall(place.partition, call)

    def open(
        self, room: str, user: str, *, create: bool, since: str | None, latest: int
    ) -> RoomCall:
        place = place_of(self._partitions, room)
        keys = place.keys
        call = ScriptCall(
            "open",
            (
                keys.room(room),
                keys.members(room),
                keys.log(room),
                keys.owned(user),
                keys.create_rate(user),
            ),
            (
                user,
                "1" if create else "0",
                since or "",
                latest,
                self._settings.replay_limit,
                *self._creation(room, keys.room("")),
            ),
        )
        return RoomCall(place.partition, call)

    def send(self, room: str, user: str, text: str, client_id: str, message_id: str) -> RoomCall:
        settings = self._settings
        place = place_of(self._partitions, room)
        keys = place.keys
        call = ScriptCall(
            "send",
            (
                keys.room(room),
                keys.members(room),
                keys.log(room),
                keys.sent(room, user, client_id),
                keys.rate(user),
            ),
            (
                user,
                text,
                client_id,
                message_id,
                channel_of(room),
                place.event_channel,
                settings.retention,
                int(settings.dedupe_ttl * 1000),
                repr(settings.send_rate),
                settings.send_burst,
            ),
        )
        return RoomCall(place.partition, call)

    def typing(self, room: str, user: str, event_id: str) -> RoomCall:
        place = place_of(self._partitions, room)
        keys = place.keys
        call = ScriptCall(
            "typing",
            (keys.room(room), keys.members(room), keys.typing(room, user)),
            (
                user,
                event_id,
                channel_of(room),
                place.event_channel,
                max(1, int(self._settings.typing_interval * 1000)),
            ),
        )
        return RoomCall(place.partition, call)

    def history(self, room: str, user: str, before: str | None, limit: int) -> RoomCall:
        place = place_of(self._partitions, room)
        keys = place.keys
        call = ScriptCall(
            "history",
            (keys.room(room), keys.members(room), keys.log(room)),
            (user, before or "", limit),
        )
        return RoomCall(place.partition, call)


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
