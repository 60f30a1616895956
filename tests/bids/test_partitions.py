"""The store on three partitions against a real Redis: each auction's keys, verdicts, bucket
and events in its own partition, and the closer and the list over all of them."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from bids_service.keys import BidKeys, auction_channel
from bids_service.rules import AuctionSpec, PlaceCommand, parse_auction_spec
from bids_service.store import PLACE_CHUNK, BidStore
from common.codec import load_bus
from common.keys import Partitions
from common.partitions import partition_tag
from tests.bids.support import history, make_store, spread, state
from tests.support.waiting import wait_until


PARTITIONS = 3


@pytest.fixture
async def store(redis: Redis) -> BidStore:
    """A store on three partitions, its scripts loaded."""
    made = make_store(redis, partitions=PARTITIONS)
    await made.load()
    return made


def _spec(**fields: object) -> AuctionSpec:
    end = fields if "ends_at" in fields else {"duration_s": 60, **fields}
    body = {"title": "t", "starting_price": 1, "increment": 1, **end}
    return parse_auction_spec(body, extend_window=0, extend_by=0)


def _slot(name: str) -> int:
    return key_slot(name.encode())


async def _redis_ms(redis: Redis) -> int:
    seconds, micros = await redis.time()
    return seconds * 1000 + micros // 1000


def test_the_names_of_one_partition_carry_its_tag_first() -> None:
    """Partition n's keys start bids:{bids.n}: and its events ch:{bids.n}:, one slot in all."""
    keys = BidKeys(Partitions("bids", PARTITIONS))
    auction = spread(keys.partitions, "x")[2]
    names = keys.of(auction)
    assert names.partition == 2
    assert keys.auction(auction) == f"bids:{{bids.2}}:auction:{auction}"
    assert keys.history(auction) == f"bids:{{bids.2}}:history:{auction}"
    assert names.open == "bids:{bids.2}:open"
    assert names.verdict("ann", "k") == "bids:{bids.2}:verdict:3:ann:k"
    assert names.rate("ann") == "bids:{bids.2}:rate:ann"
    channel = names.event_channel(auction)
    assert channel == keys.partitions.event_channel(auction_channel(auction))
    assert channel == names.events + auction_channel(auction)
    every = [names.open, names.auction(auction), names.rate("ann"), channel]
    assert {_slot(name) for name in every} == {_slot(partition_tag("bids", 2))}
    assert BidKeys(Partitions("bids")).auction("a") == "bids:{bids.0}:auction:a"
    with pytest.raises(ValueError, match="'chat'"):
        BidKeys(Partitions("chat"))


async def test_a_read_of_bids_on_every_partition_is_judged_in_order(
    store: BidStore, redis: Redis
) -> None:
    """Bids mixing partitions, more than one call each, get their verdicts in their order,
    each auction's in its partition's keys and on its partition's channel."""
    auctions = spread(store.keys.partitions, "a")
    for auction in auctions:
        await store.create(auction, _spec())
    pubsub = redis.pubsub()
    await pubsub.psubscribe("ch:*")
    async with asyncio.timeout(10):
        # Subscribed before the first bid, not merely asked to be.
        while await pubsub.get_message(timeout=1.0) is None:
            pass
    rounds = PLACE_CHUNK + 3
    bids = [
        (PlaceCommand(auction, amount, f"{auction}-{amount}"), "ann")
        for amount in range(1, rounds + 1)
        for auction in auctions
    ]
    verdicts = await store.place(bids)
    assert [(verdict.auction, verdict.seq) for verdict, _ in verdicts] == [
        (command.auction, command.amount) for command, _ in bids
    ]
    assert all(verdict.ok and fresh for verdict, fresh in verdicts)
    for auction in auctions:
        names = store.keys.of(auction)
        assert (await state(redis, auction, store.keys))["seq"] == str(rounds)
        assert len(await history(redis, auction, store.keys)) == rounds
        assert await redis.exists(names.verdict("ann", f"{auction}-1")) == 1
    # Nothing of the service outside a partition's prefix, and each key where its name says.
    for key in [key.decode() async for key in redis.scan_iter(match="bids:*")]:
        assert key.startswith(tuple(names.prefix for names in store.keys)), key
    seen: Counter[str] = Counter()
    async with asyncio.timeout(10):
        while sum(seen.values()) < len(bids):
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None:
                envelope = load_bus(message["data"])
                auction = envelope["channel"].removeprefix("auction:")
                assert message["channel"].decode() == store.keys.of(auction).event_channel(auction)
                assert _slot(message["channel"].decode()) == _slot(store.keys.auction(auction))
                seen[auction] += 1
    await pubsub.aclose()  # type: ignore[no-untyped-call]
    assert seen == dict.fromkeys(auctions, rounds)


async def test_a_retry_in_a_mixed_read_gets_its_verdict_once(store: BidStore, redis: Redis) -> None:
    """A bid sent again in the same read and in a later one is applied once, in any partition."""
    auctions = spread(store.keys.partitions, "a")
    for auction in auctions:
        await store.create(auction, _spec())
    bids = [(PlaceCommand(auction, 7, f"k-{auction}"), "ann") for auction in auctions]
    first = await store.place([*bids, *bids])
    assert [fresh for _, fresh in first] == [True] * len(auctions) + [False] * len(auctions)
    again = await store.place(list(reversed(bids)))
    assert [verdict for verdict, _ in again] == [verdict for verdict, _ in reversed(first[:3])]
    assert not any(fresh for _, fresh in again)
    for auction in auctions:
        assert (await state(redis, auction, store.keys))["bids"] == "1"


async def test_a_key_reused_is_told_apart_within_a_partition_only(store: BidStore) -> None:
    """A verdict is kept in its auction's partition: a key reused on another auction of that
    partition finds it; on an auction of another partition it is a new bid (docs/bids.md)."""
    ids = spread(store.keys.partitions, "a", per_partition=2)
    near, far, other = ids[0], ids[1], ids[PARTITIONS]
    assert store.keys.of(near) == store.keys.of(other) != store.keys.of(far)
    for auction in (near, other, far):
        await store.create(auction, _spec())
    verdicts = await store.place(
        [(PlaceCommand(auction, 5, "same"), "ann") for auction in (near, other, far)]
    )
    (first, _), (same_partition, replayed), (other_partition, fresh) = verdicts
    assert first.ok
    assert (same_partition, replayed) == (first, False)  # rules.verdict_outcome: bad_request
    assert (other_partition.auction, other_partition.ok, fresh) == (far, True, True)


async def test_a_bidders_bucket_is_one_per_partition(redis: Redis) -> None:
    """Past the burst a bidder is limited in each partition apart: the bucket is per partition."""
    limited = make_store(redis, partitions=PARTITIONS, bid_rate=0.01, bid_burst=2)
    await limited.load()
    auctions = spread(limited.keys.partitions, "a")
    for auction in auctions:
        await limited.create(auction, _spec())
    bids = [
        (PlaceCommand(auction, amount, f"{auction}-{amount}"), "ann")
        for amount in (1, 2, 3)
        for auction in auctions
    ]
    verdicts = [verdict for verdict, _ in await limited.place(bids)]
    codes = Counter((verdict.auction, verdict.code) for verdict in verdicts)
    expected: dict[tuple[str, str | None], int] = {}
    for auction in auctions:
        expected[auction, None] = 2
        expected[auction, "rate_limited"] = 1
    assert codes == expected
    for names in limited.keys:
        assert await redis.exists(names.rate("ann")) == 1


async def _ending_soon(store: BidStore, auctions: list[str]) -> list[str]:
    """Create ``auctions``, one after the other, each lasting 50 ms longer than the one
    before: they end in their order. Return them."""
    for n, auction in enumerate(auctions):
        assert isinstance(await store.create(auction, _spec(duration_s=0.2 + 0.05 * n)), int)
    return auctions


async def test_the_closer_sweeps_every_partition_longest_overdue_first(
    store: BidStore, redis: Redis
) -> None:
    """due merges the partitions' overdue auctions by end, within the limit; close closes
    each once and takes it off its partition's open set."""
    # Ends ordered against the partitions' order, so that a plain concatenation would differ.
    auctions = await _ending_soon(store, spread(store.keys.partitions, "d", 2)[::-1])

    async def all_due() -> bool:
        return len(await store.due(100)) == len(auctions)

    await wait_until(all_due, "every auction due")
    assert await store.due(100) == auctions
    assert await store.due(4) == auctions[:4]
    closed = await store.close(auctions[:4])
    assert list(closed) == auctions[:4]
    assert await store.close(auctions[:4]) == {}
    assert await store.due(100) == auctions[4:]
    await store.close(auctions[4:])
    assert await store.due(100) == []
    for names in store.keys:
        assert await redis.zcard(names.open) == 0
    for auction in auctions:
        events = await history(redis, auction, store.keys)
        assert [event["event"] for event in events] == ["auction.closed"]


async def test_the_list_merges_every_partition_soonest_end_first(
    store: BidStore, redis: Redis
) -> None:
    """bids.list's auctions come from every partition, by end, at most the limit in all."""
    auctions = spread(store.keys.partitions, "l", 2)[::-1]
    now = await _redis_ms(redis)
    for n, auction in enumerate(auctions):
        await store.create(auction, _spec(ends_at=now + 600_000 + n))
    listed: list[dict[str, Any]] = await store.list_open(100)
    assert [row["id"] for row in listed] == auctions
    assert [row["id"] for row in await store.list_open(4)] == auctions[:4]
    for auction in auctions:
        view = await store.get(auction)
        assert view is not None
        assert view["id"] == auction
        replay = await store.replay(auction, 0)
        assert replay is not None
        assert (replay.position, replay.events) == (0, [])
    assert await store.get("nowhere") is None
    assert await store.replay("nowhere", None) is None
