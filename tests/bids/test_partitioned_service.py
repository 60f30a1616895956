"""A bids process on three partitions (``RT_BIDS_PARTITIONS=3``): the admin API, the seeding
and the closer each find an auction in its own partition."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from bids_service.keys import BidKeys
from bids_service.seed import DEMO_AUCTIONS
from common.keys import Partitions
from tests.bids.support import Launcher, admin, create_auction, history, spread, state
from tests.support.processes import ManagedProcess
from tests.support.waiting import wait_until


KEYS = BidKeys(Partitions("bids", 3))


@pytest.fixture(scope="module")
def instance(launcher: Launcher) -> ManagedProcess:
    """One bids instance on three partitions, seeding the demo auctions, closing every 50 ms."""
    env = {"RT_BIDS_PARTITIONS": "3", "RT_BIDS_SEED_DEMO": "1", "RT_BIDS_CLOSE_INTERVAL": "0.05"}
    return launcher.bids(env)


async def test_auctions_of_every_partition_are_created_read_and_closed_once(
    instance: ManagedProcess, bus: Redis, name: str
) -> None:
    """Auctions created through the admin API land in their partitions, read back there, and
    the closer closes those of every partition, each once."""
    auctions = spread(KEYS.partitions, name, per_partition=2)
    for auction in auctions:
        created = await create_auction(instance, id=auction, duration_s=0.5)
        status, _, view = await admin(instance, "GET", f"/auctions/{auction}")
        assert (status, view["id"], view["status"]) == (200, auction, "open")
        assert await bus.zscore(KEYS.of(auction).open, auction) == created["ends_at"]

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
