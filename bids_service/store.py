"""The bids service's state in Redis, changed only through the Lua scripts, partition by
partition: every script call touches the keys of one partition (bids_service/keys.py).

Keys of partition ``n`` (``bids:{bids.n}:`` is :meth:`common.keys.Partitions.prefix`):

``bids:{bids.n}:auction:<id>``
    hash: id, title, starting_price, increment, ends_at (ms), extend_window and extend_by
    (ms), status (open or closed), current, bidder, seq, bids, created_at, closed_at, winner.
``bids:{bids.n}:history:<id>``
    stream: every event of the auction, entry id ``<seq>-0``, the bus envelope in field ``e``
    (and, for ``bid.placed``, the bid's idempotency key in ``k``).
``bids:{bids.n}:open``
    zset: the partition's open auctions, scored by their end (ms).
``bids:{bids.n}:verdict:<len(user)>:<user>:<key>``
    string: the verdict of one idempotency key on a bid for an auction of the partition (a
    msgpack map), expiring after the key TTL (an accepted bid) or the refusal TTL (a too-low
    bid); other refusals are not stored.
``bids:{bids.n}:rate:<user>``
    string ``"<tokens> <at ms>"``: the user's bid token bucket for the auctions of the
    partition, expiring once full again.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

from bids_service.keys import BidKeys, auction_channel
from bids_service.rules import (
    AUCTION_CHANNEL_PREFIX,
    CLOSED,
    AuctionSpec,
    PlaceCommand,
    Verdict,
    minimum_bid,
)
from common.codec import load_bus
from common.keys import Partitions
from common.lua import ScriptCall, Scripts, text
from common.redis_client import RedisClient


__all__ = ["PLACE_CHUNK", "BidStore", "Replay"]

_SCRIPTS = ("place", "close", "due", "create", "replay")
#: Most bids judged by one call of the place script (about 2 ms of Redis's time).
PLACE_CHUNK: Final = 128


@dataclass(frozen=True, slots=True)
class Replay:
    """An auction's position, and the events after ``since`` if they could all be read."""

    position: int
    #: Envelopes (decoded bus maps) after ``since``, oldest first; None when not recovered.
    events: list[dict[str, Any]] | None


def _optional_text(value: bytes | None) -> str | None:
    return None if value is None else text(value)


def _integer(value: bytes | None) -> int | None:
    return None if value is None else int(value)


def _seconds(ms: bytes | None) -> int | float:
    value = int(ms or 0)
    return value // 1000 if value % 1000 == 0 else value / 1000


def auction_view(fields: dict[bytes, bytes]) -> dict[str, Any]:
    """An auction's public state (``bids.get``, ``GET /auctions/<id>``) from its hash."""
    current = _integer(fields.get(b"current"))
    starting_price = int(fields[b"starting_price"])
    increment = int(fields[b"increment"])
    status = fields[b"status"].decode()
    seq = int(fields[b"seq"])
    return {
        "id": fields[b"id"].decode(),
        "title": fields[b"title"].decode(),
        "status": status,
        "current": current,
        "bidder": _optional_text(fields.get(b"bidder")),
        "minimum": minimum_bid(current, starting_price, increment),
        "starting_price": starting_price,
        "increment": increment,
        "ends_at": int(fields[b"ends_at"]),
        "extend_window": _seconds(fields.get(b"extend_window")),
        "extend_by": _seconds(fields.get(b"extend_by")),
        "bids": int(fields.get(b"bids") or 0),
        "seq": seq,
        "position": str(seq),
        "winner": _optional_text(fields.get(b"winner")) if status == CLOSED else None,
    }


class BidStore:
    """Every read and write of the service's keys. Scripts are loaded once, again on NOSCRIPT.

    ``partitions`` are the service's (``RT_BIDS_PARTITIONS``): each auction's keys, its
    bids' verdicts and its events are in its own partition, and each call of a script
    touches one partition's names only (a Redis Cluster runs it on one slot).
    """

    def __init__(
        self,
        redis: RedisClient,
        partitions: Partitions,
        *,
        key_ttl_ms: int,
        history_maxlen: int,
        replay_limit: int,
        refusal_ttl_ms: int,
        bid_rate: float,
        bid_burst: int,
    ) -> None:
        self._redis = redis
        self.keys = BidKeys(partitions)
        self._key_ttl = str(key_ttl_ms)
        self._refusal_ttl = str(refusal_ttl_ms)
        self._bid_rate = repr(bid_rate)
        self._bid_burst = str(bid_burst)
        self._maxlen = str(history_maxlen)
        self._replay_limit = str(replay_limit)
        self._scripts = Scripts(redis, "bids_service", _SCRIPTS)

    async def load(self) -> None:
        """Load the scripts (at start-up; they are loaded again on NOSCRIPT)."""
        await self._scripts.load()

    async def _run(self, calls: Sequence[ScriptCall]) -> list[Any]:
        """One pipeline of script calls, in order; a script's error is raised."""
        results = await self._scripts.pipeline(calls)
        for result in results:
            if isinstance(result, Exception):
                raise result
        return results

    # Bids.

    async def place(self, bids: Sequence[tuple[PlaceCommand, str]]) -> list[tuple[Verdict, bool]]:
        """Judge ``(command, bidder)`` pairs, in one round trip; each auction's bids in their
        order (bids on auctions of different partitions are independent).

        Returns each bid's verdict, in the order of ``bids``, and whether it is new (False:
        stored by an earlier try).
        """
        # Many bids per script call: redis-py spends far more per command than per argument,
        # and Redis less per bid. Chunks bound how long one call holds Redis. A call judges
        # the bids of one partition only: one pipeline of calls, by partition, then chunk.
        of = self.keys.partitions.of
        by_partition: dict[int, list[int]] = {}
        for index, (command, _) in enumerate(bids):
            by_partition.setdefault(of(command.auction), []).append(index)
        calls: list[ScriptCall] = []
        chunks: list[list[int]] = []
        for partition, indexes in by_partition.items():
            names = self.keys[partition]
            for start in range(0, len(indexes), PLACE_CHUNK):
                chunk = indexes[start : start + PLACE_CHUNK]
                keys = [names.open]
                args = [
                    self._key_ttl,
                    self._refusal_ttl,
                    self._maxlen,
                    AUCTION_CHANNEL_PREFIX,
                    names.events,
                    self._bid_rate,
                    self._bid_burst,
                ]
                for index in chunk:
                    command, bidder = bids[index]
                    auction = command.auction
                    keys += (
                        names.auction(auction),
                        names.history(auction),
                        names.verdict(bidder, command.key),
                        names.rate(bidder),
                    )
                    args += (auction, bidder, command.key, str(command.amount))
                calls.append(ScriptCall("place", keys, args))
                chunks.append(chunk)
        verdicts: list[tuple[Verdict, bool] | None] = [None] * len(bids)
        for chunk, flat in zip(chunks, await self._run(calls), strict=True):
            for position, index in enumerate(chunk):
                fresh, verdict = flat[2 * position], flat[2 * position + 1]
                verdicts[index] = (Verdict.from_wire(load_bus(verdict)), fresh == 1)
        return cast("list[tuple[Verdict, bool]]", verdicts)

    # Reads.

    async def get(self, auction: str) -> dict[str, Any] | None:
        key = self.keys.auction(auction)
        fields = cast("dict[bytes, bytes]", await self._redis.hgetall(key))
        return auction_view(fields) if fields else None

    async def list_open(self, limit: int) -> list[dict[str, Any]]:
        """The open auctions of every partition, the soonest to end first, at most ``limit``."""
        pipe = self._redis.pipeline(transaction=False)
        for names in self.keys:
            pipe.zrange(names.open, 0, limit - 1, withscores=True)
        # Each partition's are in order: merged, ties by id as one zset would order them.
        merged = heapq.merge(
            *[
                [(ends_at, auction) for auction, ends_at in rows]
                for rows in cast("list[list[tuple[bytes, float]]]", await pipe.execute())
            ]
        )
        ids = [auction.decode() for _, auction in list(merged)[:limit]]
        if not ids:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for auction in ids:
            pipe.hgetall(self.keys.auction(auction))
        rows = []
        for fields in await pipe.execute():
            if fields:
                view = auction_view(fields)
                rows.append({name: view[name] for name in _LISTED})
        return rows

    async def replay(self, auction: str, since: int | None) -> Replay | None:
        """The auction's position and the events after ``since``; None for an unknown auction."""
        names = self.keys.of(auction)
        args = ("" if since is None else str(since), self._replay_limit)
        result = await self._scripts.call(
            "replay", (names.auction(auction), names.history(auction)), args
        )
        if result is None:
            return None
        position = int(result[0])
        if since is None:
            return Replay(position, None)
        envelopes = [load_bus(envelope) for envelope in result[1:]]
        missed = position - since
        if missed == 0:
            return Replay(position, [])
        if len(envelopes) != missed:
            # Too far back, trimmed from the history, or a history other than the client's.
            return Replay(position, None)
        return Replay(position, envelopes)

    # The admin API and the closer.

    async def create(self, auction: str, spec: AuctionSpec) -> int | str:
        """Create ``auction``; return its end (ms), or why not ('exists' or 'ends_in_past')."""
        names = self.keys.of(auction)
        args = (
            auction,
            spec.title,
            str(spec.starting_price),
            str(spec.increment),
            "" if spec.ends_at is None else str(spec.ends_at),
            "" if spec.duration_ms is None else str(spec.duration_ms),
            str(spec.extend_window_ms),
            str(spec.extend_by_ms),
        )
        keys = (names.auction(auction), names.open)
        created, detail = await self._scripts.call("create", keys, args)
        return int(detail) if created == 1 else cast(bytes, detail).decode()

    async def due(self, limit: int) -> list[str]:
        """Open auctions of every partition whose end has passed, by Redis's clock: at most
        ``limit``, the longest overdue first."""
        calls = [ScriptCall("due", (names.open,), (str(limit),)) for names in self.keys]
        # Merged by end, so that no partition's overdue auctions wait behind another's.
        merged = heapq.merge(
            *[
                [(float(flat[i + 1]), flat[i]) for i in range(0, len(flat), 2)]
                for flat in await self._run(calls)
            ]
        )
        return [auction.decode() for _, auction in list(merged)[:limit]]

    async def close(self, auctions: Sequence[str]) -> dict[str, float]:
        """Close those of ``auctions`` still open and due; return the ones this call closed,
        each with how late it closed (seconds after its end)."""
        calls = []
        for auction in auctions:
            names = self.keys.of(auction)
            keys = (names.auction(auction), names.history(auction), names.open)
            args = (auction, names.event_channel(auction), auction_channel(auction), self._maxlen)
            calls.append(ScriptCall("close", keys, args))
        results = await self._run(calls)
        return {
            auction: late_ms / 1000
            for auction, late_ms in zip(auctions, results, strict=True)
            if late_ms >= 0
        }


_LISTED = ("id", "title", "current", "minimum", "ends_at", "status")
