"""The values the presence service works with: changes, queries and their results (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


__all__ = [
    "PRESENCE_CHANNEL_PREFIX",
    "Applied",
    "Change",
    "Listing",
    "Query",
    "Reaped",
    "Stats",
]

#: The client channel of channel C's presence events is PRESENCE_CHANNEL_PREFIX + C.
PRESENCE_CHANNEL_PREFIX = "presence:"


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
