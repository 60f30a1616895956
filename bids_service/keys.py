"""The names of the bids service's keys and event channels, partition by partition.

Partition ``n`` of the service (``RT_BIDS_PARTITIONS``, :class:`common.keys.Partitions`)
keeps its keys under ``bids:{bids.n}:`` and publishes its auctions' events on
``ch:{bids.n}:auction:<id>``: one hash tag, so that every script call, which touches one
partition's names only, runs on one Redis Cluster slot. An auction lives in the partition
of its id (:meth:`common.keys.Partitions.of`); so do the verdicts of the bids on it. A
bidder's token bucket is one per partition. docs/bids.md "State in Redis" has the table.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from bids_service.rules import AUCTION_CHANNEL_PREFIX
from common.keys import Partitions, event_channel


__all__ = ["SERVICE", "BidKeys", "PartitionKeys", "auction_channel"]

#: The service's name: its keys' prefix and its partitions' tags.
SERVICE: Final = "bids"


def auction_channel(auction: str) -> str:
    """The client channel of an auction's events: ``auction:<id>``."""
    return AUCTION_CHANNEL_PREFIX + auction


@dataclass(frozen=True, slots=True)
class PartitionKeys:
    """The names of one partition: its keys, and the channels of its auctions' events."""

    partition: int
    #: The hash tag every name of the partition carries, ``{bids.<n>}``.
    tag: str
    #: The prefix of its keys, ``bids:{bids.<n>}:``.
    prefix: str

    @property
    def open(self) -> str:
        """Zset: the partition's open auctions, scored by their end (ms)."""
        return self.prefix + "open"

    @property
    def events(self) -> str:
        """The prefix of its event channels, ``ch:{bids.<n>}:``; a client channel's name
        follows it (place.lua builds each bid's channel so)."""
        return event_channel("", self.tag)

    def auction(self, auction: str) -> str:
        """Hash: the auction's state."""
        return f"{self.prefix}auction:{auction}"

    def history(self, auction: str) -> str:
        """Stream: the auction's events."""
        return f"{self.prefix}history:{auction}"

    def verdict(self, user: str, key: str) -> str:
        """String: the verdict of ``user``'s idempotency key ``key``."""
        # The user's length first, so that no (user, key) pair can spell another's key.
        return f"{self.prefix}verdict:{len(user)}:{user}:{key}"

    def rate(self, user: str) -> str:
        """String: ``user``'s bid token bucket in this partition."""
        return f"{self.prefix}rate:{user}"

    def event_channel(self, auction: str) -> str:
        """The pub/sub channel of the auction's events, ``ch:{bids.<n>}:auction:<id>``."""
        return event_channel(auction_channel(auction), self.tag)


class BidKeys:
    """The names of every partition of the service, and which one holds an auction."""

    def __init__(self, partitions: Partitions) -> None:
        if partitions.service != SERVICE:
            raise ValueError(f"the partitions of {partitions.service!r}, not of {SERVICE!r}")
        self.partitions = partitions
        self._each = tuple(
            PartitionKeys(n, partitions.tag(n), partitions.prefix(n)) for n in partitions
        )

    def __iter__(self) -> Iterator[PartitionKeys]:
        return iter(self._each)

    def __getitem__(self, partition: int) -> PartitionKeys:
        return self._each[partition]

    def of(self, auction: str) -> PartitionKeys:
        """The partition that holds ``auction``."""
        return self._each[self.partitions.of(auction)]

    def auction(self, auction: str) -> str:
        """The auction's hash, in its partition."""
        return self.of(auction).auction(auction)

    def history(self, auction: str) -> str:
        """The auction's history stream, in its partition."""
        return self.of(auction).history(auction)
