"""The bids service's state in Redis, under its own prefix, changed only through the Lua scripts.

Keys (``bids:`` is :func:`common.keys.service_prefix`):

``bids:auction:<id>``
    hash: id, title, starting_price, increment, ends_at (ms), extend_window and extend_by
    (ms), status (open or closed), current, bidder, seq, bids, created_at, closed_at, winner.
``bids:history:<id>``
    stream: every event of the auction, entry id ``<seq>-0``, the bus envelope in field ``e``
    (and, for ``bid.placed``, the bid's idempotency key in ``k``).
``bids:open``
    zset: the open auctions, scored by their end (ms).
``bids:verdict:<len(user)>:<user>:<key>``
    string: the verdict of one idempotency key (a msgpack map), expiring after the key TTL (an
    accepted bid) or the refusal TTL (a too-low bid); other refusals are not stored.
``bids:rate:<user>``
    string ``"<tokens> <at ms>"``: the user's bid token bucket, expiring once full again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

from redis.asyncio import Redis

from bids_service.rules import (
    AUCTION_CHANNEL_PREFIX,
    CLOSED,
    AuctionSpec,
    PlaceCommand,
    Verdict,
    minimum_bid,
)
from common.codec import load_bus
from common.keys import EVENT_CHANNEL_PREFIX, event_channel, service_prefix
from common.lua import ScriptCall, Scripts, text
from common.partitions import partition_tag


__all__ = [
    "OPEN_KEY",
    "PLACE_CHUNK",
    "PREFIX",
    "BidStore",
    "Replay",
    "auction_channel",
    "auction_key",
    "history_key",
    "rate_key",
    "verdict_key",
]

#: Events go to partition 0's channels: the service has one partition until it takes
#: its Partitions (docs/bus.md "Partitions").
_TAG: Final = partition_tag("bids", 0)

PREFIX: Final = service_prefix("bids")
OPEN_KEY: Final = PREFIX + "open"
_SCRIPTS = ("place", "close", "due", "create", "replay")
#: Most bids judged by one call of the place script (about 2 ms of Redis's time).
PLACE_CHUNK = 128


def auction_key(auction: str) -> str:
    return f"{PREFIX}auction:{auction}"


def history_key(auction: str) -> str:
    return f"{PREFIX}history:{auction}"


def verdict_key(user: str, key: str) -> str:
    # The user's length first, so that no (user, key) pair can spell another's key.
    return f"{PREFIX}verdict:{len(user)}:{user}:{key}"


def rate_key(user: str) -> str:
    return f"{PREFIX}rate:{user}"


def auction_channel(auction: str) -> str:
    """The client channel of an auction's events."""
    return AUCTION_CHANNEL_PREFIX + auction


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
    """Every read and write of the service's keys. Scripts are loaded once, again on NOSCRIPT."""

    def __init__(
        self,
        redis: Redis,
        *,
        key_ttl_ms: int,
        history_maxlen: int,
        replay_limit: int,
        refusal_ttl_ms: int,
        bid_rate: float,
        bid_burst: int,
    ) -> None:
        self._redis = redis
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
        """Judge ``(command, bidder)`` pairs in order, in one round trip.

        Returns each bid's verdict, and whether it is new (False: stored by an earlier try).
        """
        # Many bids per script call: redis-py spends far more per command than per argument,
        # and Redis less per bid. Chunks bound how long one call holds Redis.
        calls: list[ScriptCall] = []
        for start in range(0, len(bids), PLACE_CHUNK):
            keys = [OPEN_KEY]
            args = [
                self._key_ttl,
                self._refusal_ttl,
                self._maxlen,
                AUCTION_CHANNEL_PREFIX,
                f"{EVENT_CHANNEL_PREFIX}{_TAG}:",
                self._bid_rate,
                self._bid_burst,
            ]
            for command, bidder in bids[start : start + PLACE_CHUNK]:
                auction = command.auction
                keys += (
                    auction_key(auction),
                    history_key(auction),
                    verdict_key(bidder, command.key),
                    rate_key(bidder),
                )
                args += (auction, bidder, command.key, str(command.amount))
            calls.append(ScriptCall("place", keys, args))
        verdicts = []
        for flat in await self._run(calls):
            for i in range(0, len(flat), 2):
                verdicts.append((Verdict.from_wire(load_bus(flat[i + 1])), flat[i] == 1))
        return verdicts

    # Reads.

    async def get(self, auction: str) -> dict[str, Any] | None:
        fields = cast("dict[bytes, bytes]", await self._redis.hgetall(auction_key(auction)))
        return auction_view(fields) if fields else None

    async def list_open(self, limit: int) -> list[dict[str, Any]]:
        """The open auctions, the soonest to end first."""
        ids = cast("list[bytes]", await self._redis.zrange(OPEN_KEY, 0, limit - 1))
        if not ids:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for auction in ids:
            pipe.hgetall(auction_key(auction.decode()))
        rows = []
        for fields in await pipe.execute():
            if fields:
                view = auction_view(fields)
                rows.append({name: view[name] for name in _LISTED})
        return rows

    async def replay(self, auction: str, since: int | None) -> Replay | None:
        """The auction's position and the events after ``since``; None for an unknown auction."""
        args = ("" if since is None else str(since), self._replay_limit)
        result = await self._scripts.call(
            "replay", (auction_key(auction), history_key(auction)), args
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
        created, detail = await self._scripts.call("create", (auction_key(auction), OPEN_KEY), args)
        return int(detail) if created == 1 else cast(bytes, detail).decode()

    async def due(self, limit: int) -> list[str]:
        """Open auctions whose end has passed, by Redis's clock."""
        ids = await self._scripts.call("due", (OPEN_KEY,), (str(limit),))
        return [auction.decode() for auction in ids]

    async def close(self, auctions: Sequence[str]) -> dict[str, float]:
        """Close those of ``auctions`` still open and due; return the ones this call closed,
        each with how late it closed (seconds after its end)."""
        calls = []
        for auction in auctions:
            channel = auction_channel(auction)
            keys = (auction_key(auction), history_key(auction), OPEN_KEY)
            args = (auction, event_channel(channel, _TAG), channel, self._maxlen)
            calls.append(ScriptCall("close", keys, args))
        results = await self._run(calls)
        return {
            auction: late_ms / 1000
            for auction, late_ms in zip(auctions, results, strict=True)
            if late_ms >= 0
        }


_LISTED = ("id", "title", "current", "minimum", "ends_at", "status")
