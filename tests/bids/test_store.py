"""The store and its Lua scripts against a real Redis, without processes."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from bids_service.rules import MAX_AMOUNT, AuctionSpec, PlaceCommand, parse_auction_spec
from bids_service.store import PLACE_CHUNK, BidStore
from common.codec import load_bus
from common.envelope import Event
from common.keys import Partitions
from tests.bids.support import history, make_store, state
from tests.support.waiting import wait_until


@pytest.fixture
async def store(redis: Redis) -> BidStore:
    """A store with its scripts loaded."""
    made = make_store(redis)
    await made.load()
    return made


def _spec(**fields: object) -> AuctionSpec:
    body = {"title": "t", "starting_price": 1, "increment": 1, "duration_s": 60, **fields}
    return parse_auction_spec(body, extend_window=0, extend_by=0)


async def test_many_bids_span_several_script_calls_in_order(store: BidStore, redis: Redis) -> None:
    """More bids than one script call takes are judged in order across calls."""
    await store.create("a", _spec())
    count = PLACE_CHUNK * 2 + 7
    bids = [(PlaceCommand("a", amount, f"k{amount}"), "ann") for amount in range(1, count + 1)]
    bids.append((PlaceCommand("a", 5, "late"), "bob"))
    verdicts = await store.place(bids)
    assert [verdict.seq for verdict, _ in verdicts[:-1]] == list(range(1, count + 1))
    assert all(fresh for _, fresh in verdicts)
    assert (verdicts[-1][0].code, verdicts[-1][0].minimum) == ("bid_too_low", count + 1)
    assert (await state(redis, "a"))["bids"] == str(count)


async def test_scripts_are_reloaded_after_a_script_flush(store: BidStore, redis: Redis) -> None:
    """A Redis that lost its script cache (NOSCRIPT) gets the scripts again, bids still judged."""
    await store.create("a", _spec())
    await redis.script_flush()
    ((verdict, fresh),) = await store.place([(PlaceCommand("a", 3, "k"), "ann")])
    assert verdict.ok
    assert fresh
    await redis.script_flush()
    assert (await store.replay("a", 0)) is not None


async def test_large_amounts_survive_lua_exactly(store: BidStore, redis: Redis) -> None:
    """Amounts of 15 digits are stored, published and replied without rounding."""
    await store.create("a", _spec(starting_price=MAX_AMOUNT - 5, increment=MAX_AMOUNT))
    ((verdict, _),) = await store.place([(PlaceCommand("a", MAX_AMOUNT - 1, "k"), "ann")])
    assert verdict.amount == MAX_AMOUNT - 1
    assert (await state(redis, "a"))["current"] == str(MAX_AMOUNT - 1)
    (event,) = await history(redis, "a")
    assert event["data"]["amount"] == MAX_AMOUNT - 1
    ((again, _),) = await store.place([(PlaceCommand("a", MAX_AMOUNT, "k2"), "bob")])
    assert (again.code, again.minimum) == ("bid_too_low", 2 * MAX_AMOUNT - 1)


async def test_closing_publishes_a_valid_event_with_nulls(store: BidStore, redis: Redis) -> None:
    """An auction closed with no bid publishes auction.closed with null winner and amount."""
    await store.create("a", _spec(duration_s=0.05))
    pubsub = redis.pubsub()
    await pubsub.subscribe(Partitions("bids").event_channel("auction:a"))

    async def due() -> bool:
        return await store.due(10) == ["a"]

    await wait_until(due, what="the auction due")
    closed = await store.close(["a"])
    # How late it closed: after its end, by no more than the wait for it to be due.
    assert list(closed) == ["a"]
    assert 0 <= closed["a"] < 10
    assert await store.close(["a"]) == {}
    message = None
    async with asyncio.timeout(5):
        while message is None:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
    await pubsub.aclose()  # type: ignore[no-untyped-call]
    event = Event.from_wire(load_bus(message["data"]))
    assert (event.event, event.position, event.id) == ("auction.closed", "1", "a/1")
    assert event.data == {"winner": None, "amount": None}
    assert await store.due(10) == []


async def test_one_users_bids_in_one_call_share_one_bucket(redis: Redis) -> None:
    """Within one script call a user's bids draw on one bucket; other users have their own."""
    limited = make_store(redis, bid_rate=0.01, bid_burst=2)
    await limited.load()
    await limited.create("a", _spec())
    bids = [(PlaceCommand("a", amount, f"k{amount}"), "ann") for amount in (1, 2, 3)]
    bids.append((PlaceCommand("a", 4, "k4"), "bob"))
    verdicts = [verdict for verdict, _ in await limited.place(bids)]
    assert [verdict.ok for verdict in verdicts] == [True, True, False, True]
    assert verdicts[2].code == "rate_limited"
    assert (verdicts[2].retry_after_ms or 0) > 90_000
    ((later, _),) = await limited.place([(PlaceCommand("a", 5, "k5"), "ann")])
    assert later.code == "rate_limited"
    assert (await state(redis, "a"))["bids"] == "3"
