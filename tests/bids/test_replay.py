"""Subscribing with ``since``: what a reconnecting client missed is replayed, no gap, no double."""

from __future__ import annotations

import asyncio

import pytest

from tests.bids.support import BidClient, Launcher, create_auction
from tests.support.processes import ManagedProcess
from tests.support.waiting import wait_until


REPLAY_LIMIT = 50


@pytest.fixture(scope="module")
def processes(launcher: Launcher) -> tuple[ManagedProcess, ManagedProcess]:
    """A gateway and a bids instance that replays at most 50 events."""
    gateways, instances = launcher.stack(bids_env={"RT_BIDS_REPLAY_LIMIT": str(REPLAY_LIMIT)})
    return gateways[0], instances[0]


class Writer:
    """Places rising bids one after the other until stopped."""

    def __init__(self, client: BidClient, auction: str) -> None:
        self.client = client
        self.auction = auction
        self.seq = 0
        self.stopping = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        amount = 0
        while not self.stopping.is_set() and amount < 2000:
            amount += 1
            reply = await self.client.place(self.auction, amount, f"w{amount}")
            assert reply["ok"], reply
            self.seq = reply["data"]["seq"]
            await asyncio.sleep(0.002)  # pacing, so that bids span the reconnect

    async def reached(self, seq: int) -> None:
        async def done() -> bool:
            return self.seq >= seq

        await wait_until(done, within=20.0, what=f"the writer's seq {seq}")

    async def stop(self) -> int:
        self.stopping.set()
        async with asyncio.timeout(10):
            await self.task
        return self.seq


def _positions(client: BidClient, auction: str) -> list[int]:
    return [int(event["position"]) for event in client.events[f"auction:{auction}"]]


async def test_reconnect_with_since_has_no_gap_and_no_duplicate(
    processes: tuple[ManagedProcess, ManagedProcess], name: str
) -> None:
    """Events before the disconnect plus those after the resubscribe follow on exactly."""
    gateway, instance = processes
    await create_auction(instance, id=name, starting_price=1, increment=1)
    writer = Writer(await BidClient.open(gateway, f"{name}-writer"), name)
    reader = await BidClient.open(gateway, f"{name}-reader")
    start = int((await reader.subscribe(name))["data"]["position"])
    await reader.wait_events(name, 10, within=20.0)
    await reader.close()
    before = _positions(reader, name)
    last = before[-1]
    await writer.reached(last + 20)
    again = await BidClient.open(gateway, f"{name}-reader")
    reply = await again.subscribe(name, since=str(last))
    assert reply["ok"], reply
    assert reply["data"]["recovered"] is True
    assert int(reply["data"]["position"]) > last
    await writer.reached(int(reply["data"]["position"]) + 20)
    final = await writer.stop()
    await again.wait_events(name, final - last, within=10.0)
    after = _positions(again, name)
    assert before + after == list(range(start + 1, final + 1))
    await asyncio.gather(again.close(), writer.client.close())


async def test_since_too_far_back_is_not_recovered(
    processes: tuple[ManagedProcess, ManagedProcess], name: str
) -> None:
    """More missed events than the replay limit: recovered is false and nothing is replayed."""
    gateway, instance = processes
    await create_auction(instance, id=name, starting_price=1, increment=1)
    writer = await BidClient.open(gateway, f"{name}-writer")
    for amount in range(1, REPLAY_LIMIT + 12):
        assert (await writer.place(name, amount, f"w{amount}"))["ok"]
    reader = await BidClient.open(gateway, f"{name}-reader")
    reply = await reader.subscribe(name, since="0")
    assert reply["data"] == {
        "channel": f"auction:{name}",
        "position": str(REPLAY_LIMIT + 11),
        "recovered": False,
    }
    assert (await writer.place(name, 500, "live"))["ok"]
    (live,) = await reader.wait_events(name, 1)
    assert live["position"] == str(REPLAY_LIMIT + 12)
    await asyncio.gather(reader.close(), writer.close())


async def test_since_at_or_past_the_position(
    processes: tuple[ManagedProcess, ManagedProcess], name: str
) -> None:
    """since equal to the position recovers nothing missed; since beyond it is not recovered."""
    gateway, instance = processes
    await create_auction(instance, id=name)
    client = await BidClient.open(gateway, f"{name}-ann")
    assert (await client.place(name, 100, "k"))["ok"]
    current = await client.subscribe(name, since="1")
    assert (current["data"]["position"], current["data"]["recovered"]) == ("1", True)
    assert (await client.request({"type": "unsubscribe", "channel": f"auction:{name}"}))["ok"]
    future = await client.subscribe(name, since="99")
    assert (future["data"]["position"], future["data"]["recovered"]) == ("1", False)
    assert (await client.place(name, 110, "k2"))["ok"]
    (event,) = await client.wait_events(name, 1)
    assert event["position"] == "2"
    await client.close()


async def test_replay_of_a_closed_auction_ends_with_its_close(
    processes: tuple[ManagedProcess, ManagedProcess], name: str
) -> None:
    """A client that missed the end of an auction gets its last bids and auction.closed."""
    gateway, instance = processes
    await create_auction(instance, id=name, duration_s=0.5)
    client = await BidClient.open(gateway, f"{name}-ann")
    assert (await client.place(name, 100, "k1"))["ok"]
    assert (await client.place(name, 120, "k2"))["ok"]

    async def closed() -> bool:
        view = await client.request({"type": "bids.get", "auction": name})
        return bool(view["data"]["status"] == "closed")

    await wait_until(closed, what="the auction closed")
    reply = await client.subscribe(name, since="1")
    assert reply["data"]["recovered"] is True
    assert reply["data"]["position"] == "3"
    events = await client.wait_events(name, 2)
    assert [(e["event"], e["position"]) for e in events] == [
        ("bid.placed", "2"),
        ("auction.closed", "3"),
    ]
    assert events[1]["data"] == {"winner": client.user, "amount": 120}
    await client.close()
