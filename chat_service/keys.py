"""The names of chat's Redis keys and channels, each in the partition of its room.

A room is chat's entity: it lives in partition ``partitions.of(room)``
(:class:`common.keys.Partitions`), and every key a script call of that room touches starts
with the partition's prefix ``chat:{chat.<n>}:``, so that the call is on one Redis Cluster
slot. The keys of a user that a room's script checks (the send and creation buckets, the
rooms they created) are kept per user *per partition* for that reason: docs/chat.md "State
in Redis" says what that does to the limits.

``<prefix>room:<room>``
    hash: ``private`` ("0"/"1"), ``creator``, ``created`` (ms), ``last`` (newest position),
    ``trimmed`` (newest position the retention removed). A public room with no message
    expires (``empty_room_ttl``); its first message makes it stay.
``<prefix>members:<room>``
    set: the members of a private room.
``<prefix>log:<room>``
    stream: the room's messages, capped at the retention; entry ids are the positions.
``<prefix>sent:<room>|<user>|<client_id>``
    string ``"<id> <position>"`` of a posted message, for de-duplication (expires).
``<prefix>typing:<room>|<user>``
    exists while a user's typing window is open.
``<prefix>rate:<user>``
    hash: the user's send token bucket in this partition (expires when full again).
``<prefix>owned:<user>``
    set: the rooms of this partition the user created, for the quota (pruned of rooms gone
    when it is full).
``<prefix>create-rate:<user>``
    hash: the user's room-creation token bucket in this partition (expires when full again).
"""

from __future__ import annotations

from dataclasses import dataclass

from chat_service.rules import channel_of
from common.keys import Partitions


__all__ = ["PartitionKeys", "RoomPlace", "place_of"]


@dataclass(frozen=True, slots=True)
class PartitionKeys:
    """The key names of one chat partition, all under its ``prefix`` (``chat:{chat.0}:``)."""

    prefix: str

    def room(self, room: str) -> str:
        return f"{self.prefix}room:{room}"

    def members(self, room: str) -> str:
        return f"{self.prefix}members:{room}"

    def log(self, room: str) -> str:
        return f"{self.prefix}log:{room}"

    def sent(self, room: str, user: str, client_id: str) -> str:
        # Neither a room nor a client_id may contain "|", so the parts cannot run together.
        return f"{self.prefix}sent:{room}|{user}|{client_id}"

    def typing(self, room: str, user: str) -> str:
        return f"{self.prefix}typing:{room}|{user}"

    def rate(self, user: str) -> str:
        return f"{self.prefix}rate:{user}"

    def owned(self, user: str) -> str:
        return f"{self.prefix}owned:{user}"

    def create_rate(self, user: str) -> str:
        return f"{self.prefix}create-rate:{user}"


@dataclass(frozen=True, slots=True)
class RoomPlace:
    """Where a room lives: its partition, that partition's keys, its events' channel."""

    partition: int
    keys: PartitionKeys
    #: The pub/sub channel of the events of the room's client channel ``chat:<room>``.
    event_channel: str


def place_of(partitions: Partitions, room: str) -> RoomPlace:
    """Where ``room`` lives among ``partitions``."""
    partition = partitions.of(room)
    return RoomPlace(
        partition,
        PartitionKeys(partitions.prefix(partition)),
        partitions.event_channel(channel_of(room)),
    )
