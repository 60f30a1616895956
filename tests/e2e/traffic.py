"""Bids and chat traffic from real WebSocket clients that rides out an outage, and its checks.

Each bidder and poster sends one request at a time, paced, and sends it again (the same bid
with the same idempotency key, the same message with the same ``client_id``) for as long as
the answer says only that it could not be handled now (``service_unavailable``: the bus or
the service's shard is down, or the reply timed out; ``internal_error``: a script call that
met the failover), as a client should: the key makes every retry harmless. So every bid
gets a verdict and every message is posted, and what a client was told is kept: the checks
then hold Redis to it (every accepted verdict in its auction's history once, every
acknowledged message in its room's history once, in order) and the watchers' events to
the histories.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from chat_service.keys import PartitionKeys
from common.errors import ErrorCode
from common.redis_client import RedisClient
from loadtests.invariants import Accepted
from tests.bids.support import BidClient
from tests.support.waiting import MS, Deadline


__all__ = [
    "TRANSIENT",
    "Bidder",
    "Posted",
    "Poster",
    "Traffic",
    "answered",
    "chat_history",
    "check_chat",
    "check_delivery",
]

#: Error codes that say a request was not handled now, not that it was refused.
TRANSIENT = frozenset({ErrorCode.SERVICE_UNAVAILABLE.value, ErrorCode.INTERNAL_ERROR.value})
#: How long one request may go on being retried: a failover and then some.
ANSWER_DEADLINE = 30_000 * MS
#: Seconds between a client's requests: a bounded load.
PAUSE = 0.03
#: Seconds before a request is sent again: an outage's refusals come at once.
RETRY_PAUSE = 0.1
#: The most requests one client sends in a run, whatever else happens.
MAX_REQUESTS = 400


async def answered(client: BidClient, message: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """The first reply to ``message`` that is not :data:`TRANSIENT`, and how many tries it
    took; a request whose reply never comes counts as transient too.

    Raises:
        AssertionError: no definite reply within :data:`ANSWER_DEADLINE`.
    """
    deadline = Deadline(ANSWER_DEADLINE)
    tries = 0
    while True:
        tries += 1
        try:
            # A copy: the client gives each send a ref of its own.
            reply = await client.request(dict(message), within=deadline.remaining())
        except AssertionError:
            reply = {"ok": False, "error": {"code": ErrorCode.SERVICE_UNAVAILABLE.value}}
        if reply["ok"] or reply["error"]["code"] not in TRANSIENT:
            return reply, tries
        if deadline.expired():
            raise AssertionError(f"no definite reply to {message} in {tries} tries: {reply}")
        await asyncio.sleep(RETRY_PAUSE)


@dataclass
class Bidder:
    """A client bidding on one auction: at or a step above the minimum it last heard of."""

    client: BidClient
    auction: str
    starting_price: int
    increment: int
    seed: int
    accepted: list[Accepted] = field(default_factory=list)
    retries: int = 0

    async def run(self, stop: asyncio.Event) -> None:
        rng = random.Random(self.seed)
        minimum = self.starting_price
        for n in range(MAX_REQUESTS):
            if stop.is_set():
                return
            amount = minimum + rng.choice((0, 0, self.increment, 2 * self.increment))
            key = f"{self.client.user}-{n}"
            message = {"type": "bids.place", "auction": self.auction, "amount": amount, "key": key}
            reply, tries = await answered(self.client, message)
            self.retries += tries - 1
            if reply["ok"]:
                seq = reply["data"]["seq"]
                self.accepted.append(Accepted(self.auction, seq, amount, self.client.user, key))
                minimum = amount + self.increment
            else:
                assert reply["error"]["code"] == ErrorCode.BID_TOO_LOW.value, reply
                minimum = reply["error"]["minimum"]
            await asyncio.sleep(PAUSE)


@dataclass(frozen=True, slots=True)
class Posted:
    """A message its poster was told was posted: the ``n``-th it sent."""

    n: int
    client_id: str
    id: str
    position: str


@dataclass
class Poster:
    """A client posting numbered messages in one room, one at a time."""

    client: BidClient
    room: str
    posted: list[Posted] = field(default_factory=list)
    retries: int = 0

    async def run(self, stop: asyncio.Event) -> None:
        for n in range(MAX_REQUESTS):
            if stop.is_set():
                return
            client_id = f"{self.client.user}-{n}"
            text = f"{self.client.user} says {n}"
            message = {"type": "chat.send", "room": self.room, "text": text, "client_id": client_id}
            reply, tries = await answered(self.client, message)
            self.retries += tries - 1
            assert reply["ok"], reply
            data = reply["data"]
            self.posted.append(Posted(n, client_id, data["id"], data["position"]))
            await asyncio.sleep(PAUSE)


@dataclass
class Traffic:
    """Bidders and posters running side by side until :meth:`stop`."""

    bidders: list[Bidder]
    posters: list[Poster]
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        runs = [bidder.run for bidder in self.bidders] + [poster.run for poster in self.posters]
        self._tasks = [asyncio.create_task(run(self._stop)) for run in runs]

    async def stop(self) -> None:
        """Let each client finish the request it is on (retries included), then stop."""
        self._stop.set()
        await asyncio.gather(*self._tasks)

    def accepted(self) -> list[Accepted]:
        return [bid for bidder in self.bidders for bid in bidder.accepted]

    def progress(self) -> Counter[str]:
        """Accepted bids per auction and posted messages per room, so far."""
        counts = Counter(bid.auction for bid in self.accepted())
        counts.update(poster.room for poster in self.posters for _ in poster.posted)
        return counts

    async def advanced(self, by: int, within: float) -> None:
        """Wait until every auction and room has ``by`` more bids accepted and messages
        posted than now; fail on a client's failure too.

        Raises:
            AssertionError: not within ``within`` seconds.
        """
        start = self.progress()
        places = {bidder.auction for bidder in self.bidders} | {p.room for p in self.posters}
        deadline = Deadline(within)
        while any(self.progress()[place] < start[place] + by for place in places):
            for task in self._tasks:
                if task.done():
                    task.result()  # a client's failure, raised here
                    raise AssertionError("a client stopped before the traffic did")
            if deadline.expired():
                raise AssertionError(f"traffic stuck at {self.progress()} (from {start})")
            await asyncio.sleep(0.05)

    @property
    def retries(self) -> int:
        return sum(b.retries for b in self.bidders) + sum(p.retries for p in self.posters)


async def chat_history(redis: RedisClient, keys: PartitionKeys, room: str) -> list[dict[str, str]]:
    """A room's messages in Redis, oldest first: each entry's fields plus its ``position``."""
    entries = cast("list[tuple[bytes, dict[bytes, bytes]]]", await redis.xrange(keys.log(room)))
    return [
        {"position": entry_id.decode(), **{k.decode(): v.decode() for k, v in fields.items()}}
        for entry_id, fields in entries
    ]


def check_chat(history: list[dict[str, str]], posters: Sequence[Poster]) -> None:
    """Every acknowledged message is in the room's history once, at the position its poster
    was told, each poster's in the order sent, and the history holds nothing else."""
    client_ids = [message["client_id"] for message in history]
    assert len(client_ids) == len(set(client_ids)), "a message was posted twice"
    at = {message["client_id"]: message for message in history}
    for poster in posters:
        for posted in poster.posted:
            stored = at.get(posted.client_id)
            assert stored is not None, f"acknowledged {posted} is not in the history"
            assert (stored["id"], stored["position"]) == (posted.id, posted.position), stored
        mine = [
            message["client_id"] for message in history if message["user"] == poster.client.user
        ]
        assert mine == [posted.client_id for posted in poster.posted], poster.client.user
    acknowledged = sum(len(poster.posted) for poster in posters)
    assert len(history) == acknowledged, f"{len(history)} messages, {acknowledged} acknowledged"


def check_delivery(watcher: BidClient, channel: str, positions: Sequence[str]) -> bool:
    """What ``watcher`` received of ``channel``, against the positions of its history: each
    event once, in order, none that is not in the history; and all of them, unless it was
    told by a ``recovery`` message that a gap could not be filled. Whether it was told."""
    events = watcher.events[channel]
    # Only events with a position are kept in a history (a chat room's typing is not).
    received = [event["position"] for event in events if event["position"] is not None]
    twice = sorted(position for position, count in Counter(received).items() if count > 1)
    assert not twice, f"{channel}: events {twice} arrived twice: {_trace(watcher, channel)}"
    index = {position: n for n, position in enumerate(positions)}
    assert all(position in index for position in received), f"{channel}: not in its history"
    order = [index[position] for position in received]
    assert order == sorted(order), f"{channel}: events out of order"
    notices = [
        frame
        for frame in watcher.frames
        if frame.get("type") == "recovery" and frame.get("channel") == channel
    ]
    if not notices:
        assert received == list(positions), f"{channel}: a gap with no recovery notice"
    return bool(notices)


def _trace(watcher: BidClient, channel: str) -> list[tuple[str, Any]]:
    """What ``watcher`` received of ``channel``, in order: events' and notices' positions."""
    return [
        (frame["type"], frame.get("position"))
        for frame in watcher.frames
        if frame.get("channel") == channel
    ]
