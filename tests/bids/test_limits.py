"""Abuse resistance of bidding: a per-user bid rate, and which verdicts are stored for how long."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from tests.bids.support import KEYS, BidClient, Launcher, create_auction
from tests.support.client import DEADLINE
from tests.support.processes import ManagedProcess
from tests.support.waiting import Deadline


#: A bidder may place BURST bids at once, then one per second.
BURST = 3
REFUSAL_TTL_S = 30


@pytest.fixture(scope="module")
def processes(launcher: Launcher) -> tuple[ManagedProcess, ManagedProcess]:
    """A gateway and a bids instance with a small bid bucket and a short refusal TTL."""
    (gateway,), (instance,) = launcher.stack(
        bids_env={
            "RT_BIDS_BID_RATE": "1",
            "RT_BIDS_BID_BURST": str(BURST),
            "RT_BIDS_REFUSAL_TTL": str(REFUSAL_TTL_S),
        }
    )
    return gateway, instance


async def _refused_leaving_no_verdict(
    client: BidClient, bus: Redis, bids: list[tuple[str, str]], code: str
) -> None:
    """Place ``(auction, key)`` bids: each is refused with ``code``, no verdict is stored."""
    for auction, key in bids:
        reply = await client.place(auction, 100, key)
        assert reply["error"]["code"] == code, reply
    pattern = KEYS[0].verdict(client.user, "*")
    assert [key async for key in bus.scan_iter(match=pattern)] == []


async def test_a_bid_on_a_missing_auction_stores_no_verdict(
    processes: tuple[ManagedProcess, ManagedProcess], bus: Redis, name: str
) -> None:
    """Bids on an auction that does not exist are refused and leave no verdict in Redis."""
    gateway, _ = processes
    client = await BidClient.open(gateway, f"{name}-spammer")
    bids = [(f"{name}-nowhere-{n}", f"k{n}") for n in range(BURST)]
    await _refused_leaving_no_verdict(client, bus, bids, "auction_not_found")
    await client.close()


async def test_a_closed_auction_refusal_is_not_stored(
    processes: tuple[ManagedProcess, ManagedProcess], bus: Redis, name: str
) -> None:
    """A bid refused as too late is refused the same when retried, with nothing stored."""
    gateway, instance = processes
    await create_auction(instance, id=name, duration_s=0.3)
    client = await BidClient.open(gateway, f"{name}-late")
    assert (await client.subscribe(name))["ok"]
    await client.wait_event(name, "auction.closed")
    await _refused_leaving_no_verdict(client, bus, [(name, "late-1")] * 2, "auction_closed")
    await client.close()


async def test_verdicts_of_refused_bids_expire_sooner_than_accepted_ones(
    processes: tuple[ManagedProcess, ManagedProcess], bus: Redis, name: str
) -> None:
    """An accepted bid's verdict is kept a day; a too-low bid's only RT_BIDS_REFUSAL_TTL."""
    gateway, instance = processes
    await create_auction(instance, id=name, starting_price=100)
    client = await BidClient.open(gateway, f"{name}-ann")
    assert (await client.place(name, 100, "ok-1"))["ok"]
    low = await client.place(name, 101, "low-1")
    assert low["error"]["code"] == "bid_too_low", low
    accepted_ttl = await bus.pttl(KEYS[0].verdict(client.user, "ok-1"))
    refused_ttl = await bus.pttl(KEYS[0].verdict(client.user, "low-1"))
    assert 86_000_000 < accepted_ttl <= 86_400_000
    assert 0 < refused_ttl <= REFUSAL_TTL_S * 1000
    await client.close()


async def test_a_bidder_over_the_rate_is_refused_until_the_bucket_refills(
    processes: tuple[ManagedProcess, ManagedProcess], bus: Redis, name: str
) -> None:
    """Past the burst a bidder gets rate_limited (nothing stored), retries of judged bids still
    get their verdicts, other bidders are unaffected, and the refused bid passes later."""
    gateway, instance = processes
    await create_auction(instance, id=name, starting_price=100, increment=1)
    ann = await BidClient.open(gateway, f"{name}-ann")
    bob = await BidClient.open(gateway, f"{name}-bob")
    futures = [
        await ann.send({"type": "bids.place", "auction": name, "amount": 100 + n, "key": f"a{n}"})
        for n in range(BURST + 2)
    ]
    async with asyncio.timeout(DEADLINE):
        replies = [await future for future in futures]
    accepted = [reply for reply in replies if reply["ok"]]
    limited = [reply for reply in replies if not reply["ok"]]
    assert len(accepted) == BURST, replies
    assert [reply["error"]["code"] for reply in limited] == ["rate_limited"] * 2, replies
    assert all(0 < reply["error"]["retry_after_ms"] <= 1000 for reply in limited), limited
    assert (await bus.get(KEYS[0].verdict(ann.user, f"a{BURST}"))) is None
    assert await bus.exists(KEYS[0].rate(ann.user)) == 1
    again = await ann.place(name, 100, "a0")
    assert again["data"] == accepted[0]["data"]
    assert (await bob.place(name, 200, "b0"))["ok"]
    deadline = Deadline(DEADLINE)
    while not (retried := await ann.place(name, 300, f"a{BURST}"))["ok"]:
        assert retried["error"]["code"] == "rate_limited", retried
        assert not deadline.expired(), retried
        # The pause the refusal asks for, not a wait for a condition.
        await asyncio.sleep(retried["error"]["retry_after_ms"] / 1000)
    assert retried["data"]["amount"] == 300
    await asyncio.gather(ann.close(), bob.close())
