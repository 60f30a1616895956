"""Bids processes on three partitions (``RT_BIDS_PARTITIONS=3``): requests through a gateway,
the admin API, the seeding and the closer each find an auction in its own partition."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from bids_service.keys import BidKeys
from bids_service.seed import DEMO_AUCTIONS
from common.keys import Partitions, request_stream
from tests.bids.support import (
    BidClient,
    Launcher,
    admin,
    create_auction,
    history,
    spread,
    state,
)
from tests.support.client import DEADLINE
from tests.support.processes import ManagedProcess
from tests.support.waiting import wait_until


KEYS = BidKeys(Partitions("bids", 3))


@pytest.fixture(scope="module")
def stack(launcher: Launcher) -> tuple[ManagedProcess, list[ManagedProcess]]:
    """A gateway and two bids instances on three partitions, seeding the demo auctions,
    closing every 50 ms."""
    env = {"RT_BIDS_PARTITIONS": "3", "RT_BIDS_SEED_DEMO": "1", "RT_BIDS_CLOSE_INTERVAL": "0.05"}
    (gateway,), instances = launcher.stack(instances=2, bids_env=env)
    return gateway, instances


@pytest.fixture
def instance(stack: tuple[ManagedProcess, list[ManagedProcess]]) -> ManagedProcess:
    return stack[1][0]


async def test_bids_on_every_partition_through_a_gateway(
    stack: tuple[ManagedProcess, list[ManagedProcess]], bus: Redis, name: str
) -> None:
    """Bids on auctions of three partitions go to their partitions' streams, are judged once
    each, and their events reach a subscriber; bids.list and bids.get see every partition."""
    gateway, instances = stack
    auctions = spread(KEYS.partitions, name, per_partition=2)
    for auction in auctions:
        await create_auction(instances[0], id=auction)
    added = [
        int((await bus.xinfo_stream(request_stream("bids", n)))["entries-added"]) for n in range(3)
    ]
    watcher = await BidClient.open(gateway, f"{name}-watcher")
    for auction in auctions:
        assert (await watcher.subscribe(auction))["ok"]
    bidder = await BidClient.open(gateway, f"{name}-ann")
    replies = []
    # One round at a time: two instances read each partition, so two bids on one auction in
    # flight together may be judged in either order (docs/bids.md "Partitions").
    for amount in (100, 110):
        futures = [
            await bidder.send(
                {
                    "type": "bids.place",
                    "auction": auction,
                    "amount": amount,
                    "key": f"{auction}-{amount}",
                }
            )
            for auction in auctions
        ]
        async with asyncio.timeout(DEADLINE):
            replies += [await future for future in futures]
    assert [reply["data"]["seq"] for reply in replies] == [1] * 6 + [2] * 6, replies
    for auction in auctions:
        events = await watcher.wait_events(auction, 2)
        assert [(event["event"], event["position"]) for event in events] == [
            ("bid.placed", "1"),
            ("bid.placed", "2"),
        ]
        view = await bidder.request({"type": "bids.get", "auction": auction})
        assert (view["data"]["current"], view["data"]["bidder"]) == (110, bidder.user)
        again = await bidder.place(auction, 110, f"{auction}-110")
        assert again["data"]["seq"] == 2
        assert len(await history(bus, auction, KEYS)) == 2
    # Each partition's stream carried its auctions' requests: a subscribe and three bids each.
    for n in range(3):
        stream = await bus.xinfo_stream(request_stream("bids", n))
        assert int(stream["entries-added"]) - added[n] >= 2 * 4
    listed = await bidder.request({"type": "bids.list"})
    assert set(auctions) <= {row["id"] for row in listed["data"]["auctions"]}
    await asyncio.gather(watcher.close(), bidder.close())


async def test_auctions_of_every_partition_are_created_read_and_closed_once(
    instance: ManagedProcess, bus: Redis, name: str
) -> None:
    """Auctions created through the admin API land in their partitions, read back there, and
    the closer closes those of every partition, each once."""
    auctions = spread(KEYS.partitions, name, per_partition=2)
    for auction in auctions:
        created = await create_auction(instance, id=auction, duration_s=0.5)
        assert (created["id"], created["status"]) == (auction, "open")
        status, _, view = await admin(instance, "GET", f"/auctions/{auction}")
        assert (status, view["id"]) == (200, auction)
        # In its partition's keys, and in no other partition's.
        assert [await bus.exists(names.auction(auction)) for names in KEYS] == [
            int(names == KEYS.of(auction)) for names in KEYS
        ]

    async def all_closed() -> bool:
        states = [await state(bus, auction, KEYS) for auction in auctions]
        return all(fields["status"] == "closed" for fields in states)

    await wait_until(all_closed, "every auction closed")
    for auction in auctions:
        events = await history(bus, auction, KEYS)
        assert [event["event"] for event in events] == ["auction.closed"]
    for names in KEYS:
        assert not [m async for m in bus.zscan_iter(names.open) if m[0].decode() in auctions]


async def test_the_demo_auctions_are_seeded_in_their_partitions(
    instance: ManagedProcess, bus: Redis
) -> None:
    """Seeding creates each demo auction in its own partition's keys, open."""
    for body in DEMO_AUCTIONS:
        auction = str(body["id"])
        assert (await state(bus, auction, KEYS))["status"] == "open"
        assert await bus.zscore(KEYS.of(auction).open, auction) is not None
