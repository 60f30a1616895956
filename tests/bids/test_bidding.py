"""Placing bids through a real gateway: the accepted path, every refusal, and bad input."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.bids.support import BidClient, Launcher, create_auction, history, state
from tests.support.processes import ManagedProcess


@pytest.fixture(scope="module")
def processes(launcher: Launcher) -> tuple[ManagedProcess, ManagedProcess]:
    """One gateway and one bids instance for the module."""
    gateways, instances = launcher.stack()
    return gateways[0], instances[0]


@pytest.fixture
async def client(
    processes: tuple[ManagedProcess, ManagedProcess], name: str
) -> AsyncIterator[BidClient]:
    """A connection of the user ``<name>-ann``."""
    connection = await BidClient.open(processes[0], f"{name}-ann")
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
def admin_instance(processes: tuple[ManagedProcess, ManagedProcess]) -> ManagedProcess:
    return processes[1]


@pytest.mark.also_on_cluster
async def test_accepted_bid_is_replied_published_and_stored(
    client: BidClient, admin_instance: ManagedProcess, bus: Redis, name: str
) -> None:
    """An accepted bid is replied with its seq and end, published, and becomes the highest."""
    auction = await create_auction(admin_instance, id=name, starting_price=500, increment=25)
    subscribed = await client.subscribe(name)
    assert subscribed["data"]["position"] == "0"
    reply = await client.place(name, 500, "k1")
    assert reply["ok"], reply
    assert reply["data"] == {
        "accepted": True,
        "seq": 1,
        "amount": 500,
        "ends_at": auction["ends_at"],
    }
    (event,) = await client.wait_events(name, 1)
    assert event["event"] == "bid.placed"
    assert event["position"] == "1"
    data = event["data"]
    assert (data["amount"], data["bidder"], data["seq"]) == (500, client.user, 1)
    assert data["ends_at"] == auction["ends_at"]
    assert abs(data["placed_at"] - time.time() * 1000) < 60_000
    got = await client.request({"type": "bids.get", "auction": name})
    view = got["data"]
    assert (view["current"], view["bidder"], view["minimum"], view["bids"]) == (
        500,
        client.user,
        525,
        1,
    )
    assert (view["status"], view["seq"], view["position"]) == ("open", 1, "1")
    stored = await state(bus, name)
    assert (stored["current"], stored["bidder"], stored["seq"]) == ("500", client.user, "1")
    (entry,) = await history(bus, name)
    assert entry["key"] == "k1"
    assert entry["event"] == "bid.placed"


@pytest.mark.also_on_cluster
async def test_bid_below_the_minimum_is_refused_with_the_minimum(
    client: BidClient, admin_instance: ManagedProcess, bus: Redis, name: str
) -> None:
    """bid_too_low carries the lowest amount accepted now: the start, then highest + increment."""
    await create_auction(admin_instance, id=name, starting_price=500, increment=25)
    low = await client.place(name, 499, "k1")
    assert not low["ok"]
    assert low["error"]["code"] == "bid_too_low"
    assert low["error"]["minimum"] == 500
    assert "500" in low["error"]["message"]
    assert (await client.place(name, 600, "k2"))["ok"]
    low = await client.place(name, 624, "k3")
    assert low["error"]["code"] == "bid_too_low"
    assert low["error"]["minimum"] == 625
    assert (await client.place(name, 625, "k4"))["data"]["seq"] == 2
    assert [entry["data"]["amount"] for entry in await history(bus, name)] == [600, 625]


async def test_bid_on_an_unknown_auction(client: BidClient, name: str) -> None:
    """A bid on an auction that does not exist is refused with auction_not_found."""
    for auction in (name, "no such auction"):
        reply = await client.place(auction, 100, f"k-{auction}")
        assert reply["error"]["code"] == "auction_not_found", reply
        assert "no auction" in reply["error"]["message"]


async def test_bid_on_a_closed_auction(
    client: BidClient, admin_instance: ManagedProcess, name: str
) -> None:
    """Once the auction closed (auction.closed seen), a bid is refused with auction_closed."""
    await create_auction(admin_instance, id=name, duration_s=0.3)
    await client.subscribe(name)
    closed = await client.wait_event(name, "auction.closed")
    assert closed["data"] == {"winner": None, "amount": None}
    reply = await client.place(name, 1000, "late")
    assert reply["error"]["code"] == "auction_closed"
    view = (await client.request({"type": "bids.get", "auction": name}))["data"]
    assert view["status"] == "closed"
    assert view["winner"] is None


@pytest.mark.parametrize("amount", ["100", 100.5, 0, -10, True, 10**15 + 1, [100], {"value": 100}])
async def test_invalid_amounts(
    client: BidClient, admin_instance: ManagedProcess, name: str, amount: Any
) -> None:
    """Anything but a positive integer up to 10**15 minor units is an invalid_amount."""
    await create_auction(admin_instance, id=name)
    reply = await client.place(name, amount, "k")
    assert reply["error"]["code"] == "invalid_amount", reply
    assert "'amount'" in reply["error"]["message"]


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"amount": 100, "key": "k"}, "missing field 'auction'"),
        ({"auction": 12, "amount": 100, "key": "k"}, "'auction' must be a string"),
        ({"auction": "{name}", "key": "k"}, "missing field 'amount'"),
        ({"auction": "{name}", "amount": 100}, "missing field 'key'"),
        ({"auction": "{name}", "amount": 100, "key": ""}, "'key' must be a string"),
        ({"auction": "{name}", "amount": 100, "key": "k" * 200}, "'key' must be a string"),
        ({"auction": "{name}", "amount": 100, "key": ["k"]}, "'key' must be a string"),
        ({"auction": "{name}", "amount": 100, "key": "k", "user": "eve"}, "unknown field 'user'"),
    ],
)
async def test_malformed_bids_are_bad_requests(
    client: BidClient, admin_instance: ManagedProcess, name: str, fields: dict[str, Any], words: str
) -> None:
    """A bid with a missing, mistyped or unknown field gets bad_request naming the field."""
    await create_auction(admin_instance, id=name)
    message = {
        key: value.format(name=name) if isinstance(value, str) else value
        for key, value in fields.items()
    }
    reply = await client.request({"type": "bids.place", **message})
    assert reply["error"]["code"] == "bad_request", reply
    assert words in reply["error"]["message"]


@pytest.mark.also_on_cluster
async def test_a_key_reused_for_another_bid_is_a_bad_request(
    client: BidClient, admin_instance: ManagedProcess, bus: Redis, name: str
) -> None:
    """Reusing an idempotency key with another amount or auction is refused, changing nothing."""
    await create_auction(admin_instance, id=name)
    await create_auction(admin_instance, id=f"{name}-b")
    assert (await client.place(name, 100, "same"))["ok"]
    for auction, amount in ((name, 200), (f"{name}-b", 100)):
        reply = await client.place(auction, amount, "same")
        assert reply["error"]["code"] == "bad_request", reply
        assert reply["error"]["field"] == "key"
    assert len(await history(bus, name)) == 1
    assert await history(bus, f"{name}-b") == []


async def test_get_list_and_unknown_actions(
    client: BidClient, admin_instance: ManagedProcess, name: str
) -> None:
    """bids.get and bids.list describe auctions; other actions get clear errors."""
    await create_auction(admin_instance, id=name, title="Lamp", starting_price=700, increment=50)
    await client.place(name, 800, "k")
    listed = await client.request({"type": "bids.list"})
    rows = {row["id"]: row for row in listed["data"]["auctions"]}
    assert set(rows[name]) == {"id", "title", "current", "minimum", "ends_at", "status"}
    assert (rows[name]["title"], rows[name]["current"], rows[name]["minimum"]) == ("Lamp", 800, 850)
    assert rows[name]["status"] == "open"
    missing = await client.request({"type": "bids.get", "auction": f"{name}-nope"})
    assert missing["error"]["code"] == "auction_not_found"
    no_field = await client.request({"type": "bids.get"})
    assert no_field["error"]["code"] == "bad_request"
    extra = await client.request({"type": "bids.list", "page": 2})
    assert extra["error"]["code"] == "bad_request"
    assert "'page'" in extra["error"]["message"]
    unknown = await client.request({"type": "bids.cancel", "auction": name})
    assert unknown["error"]["code"] == "unknown_type"
    assert "bids.place" in unknown["error"]["message"]


async def test_closed_auctions_leave_the_list(
    client: BidClient, admin_instance: ManagedProcess, name: str
) -> None:
    """bids.list shows open auctions only."""
    await create_auction(admin_instance, id=name, duration_s=0.2)
    await client.subscribe(name)
    await client.wait_event(name, "auction.closed")
    listed = await client.request({"type": "bids.list"})
    assert name not in {row["id"] for row in listed["data"]["auctions"]}


async def test_subscribe_errors(
    client: BidClient, admin_instance: ManagedProcess, name: str
) -> None:
    """Subscribing to an unknown auction, or with a malformed since, is refused clearly."""
    unknown = await client.subscribe(name)
    assert unknown["error"]["code"] == "auction_not_found"
    await create_auction(admin_instance, id=name)
    bad_since = await client.subscribe(name, since="yesterday")
    assert bad_since["error"]["code"] == "bad_request"
    assert "'since'" in bad_since["error"]["message"]
    assert (await client.subscribe(name))["ok"]
