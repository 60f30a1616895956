"""Closing auctions exactly once while three instances race to close them, and anti-sniping."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from tests.bids.support import BidClient, Launcher, create_auction, history, state
from tests.support.processes import ManagedProcess
from tests.support.waiting import wait_until


AUCTIONS = 12


@pytest.fixture(scope="module")
def processes(launcher: Launcher) -> tuple[ManagedProcess, list[ManagedProcess]]:
    """A gateway and three bids instances, each looking for due auctions every 20 ms."""
    gateways, instances = launcher.stack(instances=3, bids_env={"RT_BIDS_CLOSE_INTERVAL": "0.02"})
    return gateways[0], instances


async def _closed_total(instances: list[ManagedProcess]) -> float:
    return sum([await instance.metric("rt_bids_closed_total") for instance in instances])


async def _closer_runs(instances: list[ManagedProcess]) -> list[float]:
    return [await instance.metric("rt_bids_closer_runs_total") for instance in instances]


@pytest.mark.also_on_cluster
async def test_each_auction_closes_exactly_once(
    processes: tuple[ManagedProcess, list[ManagedProcess]], bus: Redis, name: str
) -> None:
    """With three closers racing, each auction gets one auction.closed naming its winner."""
    gateway, instances = processes
    closed_before = await _closed_total(instances)
    ends_at = int(time.time() * 1000) + 1500
    auctions = [f"{name}-{i}" for i in range(AUCTIONS)]
    for auction in auctions:
        await create_auction(instances[0], id=auction, ends_at=ends_at)
    watcher = await BidClient.open(gateway, f"{name}-watcher")
    for auction in auctions:
        assert (await watcher.subscribe(auction))["ok"]
    bidder = await BidClient.open(gateway, f"{name}-ann")
    for auction in auctions[::2]:
        assert (await bidder.place(auction, 250, f"k-{auction}"))["ok"]
    closes = [
        await watcher.wait_event(auction, "auction.closed", within=10.0) for auction in auctions
    ]
    for auction, close in zip(auctions, closes, strict=True):
        has_bid = auctions.index(auction) % 2 == 0
        expected = (
            {"winner": bidder.user, "amount": 250} if has_bid else {"winner": None, "amount": None}
        )
        assert close["data"] == expected
        assert close["position"] == ("2" if has_bid else "1")

    async def all_counted() -> bool:
        return await _closed_total(instances) - closed_before >= AUCTIONS

    await wait_until(all_counted, what="closes counted")
    # Every close is timed from the auction's end (rt_bids_close_lag_seconds).
    lags = [await instance.metric("rt_bids_close_lag_seconds_count") for instance in instances]
    assert sum(lags) >= AUCTIONS
    # Let every instance's closer make a few more passes: none may close anything again.
    runs = await _closer_runs(instances)

    async def more_passes() -> bool:
        now = await _closer_runs(instances)
        return all(after >= before + 3 for before, after in zip(runs, now, strict=True))

    await wait_until(more_passes, what="three more closer passes on every instance")
    assert await _closed_total(instances) - closed_before == AUCTIONS
    for auction in auctions:
        events = [event["event"] for event in await history(bus, auction)]
        assert events.count("auction.closed") == 1
        assert events[-1] == "auction.closed"
        assert (await state(bus, auction))["status"] == "closed"
    for auction in auctions:
        assert [e["event"] for e in watcher.events[f"auction:{auction}"]].count(
            "auction.closed"
        ) == 1
    await asyncio.gather(watcher.close(), bidder.close())


@pytest.mark.also_on_cluster
async def test_a_late_bid_extends_the_auction(
    processes: tuple[ManagedProcess, list[ManagedProcess]], bus: Redis, name: str
) -> None:
    """A bid in the last extend_window seconds moves the end extend_by past it, with an event."""
    gateway, instances = processes
    created = await create_auction(
        instances[0], id=name, duration_s=1.0, extend_window=5, extend_by=1.5
    )
    client = await BidClient.open(gateway, f"{name}-ann")
    await client.subscribe(name)
    reply = await client.place(name, 100, "k1")
    first_end = reply["data"]["ends_at"]
    assert first_end > created["ends_at"]
    placed, extended = await client.wait_events(name, 2)
    assert placed["event"] == "bid.placed"
    assert placed["position"] == "1"
    assert first_end == placed["data"]["placed_at"] + 1500 == placed["data"]["ends_at"]
    assert extended == {
        "type": "event",
        "channel": f"auction:{name}",
        "event": "auction.extended",
        "position": "2",
        "data": {"ends_at": first_end},
    }
    # Past the original end the auction is still open and takes bids (each extending it).
    await asyncio.sleep(max(0.0, (created["ends_at"] + 100) / 1000 - time.time()))
    view = (await client.request({"type": "bids.get", "auction": name}))["data"]
    assert view["status"] == "open"
    assert view["ends_at"] == first_end
    second = await client.place(name, 110, "k2")
    assert second["ok"]
    assert second["data"]["seq"] == 3
    assert second["data"]["ends_at"] > first_end
    closed = await client.wait_event(name, "auction.closed", within=10.0)
    assert closed["data"] == {"winner": client.user, "amount": 110}
    assert closed["position"] == "5"
    stored = await state(bus, name)
    assert int(stored["closed_at"]) >= second["data"]["ends_at"]
    await client.close()


async def test_a_bid_outside_the_window_does_not_extend(
    processes: tuple[ManagedProcess, list[ManagedProcess]], name: str
) -> None:
    """A bid with more than extend_window left leaves the end where it was."""
    gateway, instances = processes
    created = await create_auction(
        instances[0], id=name, duration_s=600, extend_window=30, extend_by=30
    )
    client = await BidClient.open(gateway, f"{name}-ann")
    reply = await client.place(name, 100, "k1")
    assert reply["data"]["ends_at"] == created["ends_at"]
    await client.close()
