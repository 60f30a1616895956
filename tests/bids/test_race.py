"""Fifty bidders racing on one auction through two gateways and three bids instances."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from redis.asyncio import Redis

from loadtests.invariants import Accepted, check_invariants
from tests.bids.model import Auction
from tests.bids.support import (
    BidClient,
    Launcher,
    create_auction,
    history,
    replay_through_model,
    state,
)
from tests.support.bus_redis import is_cluster
from tests.support.processes import ManagedProcess


BIDDERS = 50
ATTEMPTS = 6


@pytest.fixture(scope="module")
def processes(launcher: Launcher) -> tuple[list[ManagedProcess], list[ManagedProcess]]:
    """Two gateways and three bids instances sharing the request stream."""
    return launcher.stack(gateways=2, instances=3)


async def _bid(
    client: BidClient, auction: str, start: asyncio.Event, seed: int
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Bid the known minimum (or a little more) ATTEMPTS times; return (request, reply) pairs."""
    rng = random.Random(seed)
    minimum = 100
    results = []
    await start.wait()
    for attempt in range(ATTEMPTS):
        amount = minimum + rng.choice((0, 0, 10, 20))
        key = f"{client.user}-{attempt}"
        reply = await client.place(auction, amount, key, within=20.0)
        results.append(({"amount": amount, "key": key}, reply))
        if reply["ok"]:
            minimum = amount + 10
        else:
            assert reply["error"]["code"] == "bid_too_low", reply
            minimum = reply["error"]["minimum"]
    return results


@pytest.mark.also_on_cluster
async def test_racing_bidders_match_a_serial_replay_of_the_accepted_log(
    processes: tuple[list[ManagedProcess], list[ManagedProcess]], bus: Redis, name: str
) -> None:
    """Concurrent bids across instances commit as if serial: rising, none lost or doubled."""
    gateways, instances = processes
    created = await create_auction(
        instances[0], id=name, starting_price=100, increment=10, extend_window=3600, extend_by=61
    )
    watcher = await BidClient.open(gateways[0], f"{name}-watcher")
    assert (await watcher.subscribe(name))["ok"]
    clients = await asyncio.gather(
        *(BidClient.open(gateways[i % 2], f"{name}-bidder{i}") for i in range(BIDDERS))
    )
    start = asyncio.Event()
    tasks = [asyncio.create_task(_bid(c, name, start, seed=i)) for i, c in enumerate(clients)]
    start.set()
    results = await asyncio.gather(*tasks)
    accepted = [
        Accepted(name, reply["data"]["seq"], request["amount"], client.user, request["key"])
        for client, pairs in zip(clients, results, strict=True)
        for request, reply in pairs
        if reply["ok"]
    ]
    assert accepted, "no bid was accepted"

    events = await history(bus, name)
    placed = [event for event in events if event["event"] == "bid.placed"]
    # Every accepted reply is in the log, and the log holds nothing else.
    assert sorted((e["data"]["seq"], e["data"]["amount"], e["data"]["bidder"], e["key"])
                  for e in placed) == sorted(
        (bid.seq, bid.amount, bid.bidder, bid.key) for bid in accepted
    )  # fmt: skip
    amounts = [event["data"]["amount"] for event in placed]
    assert amounts == sorted(amounts)
    assert len(set(amounts)) == len(amounts)

    # Replay the accepted log serially through the reference rules.
    spec = Auction(
        id=name,
        starting_price=100,
        increment=10,
        ends_at=created["ends_at"],
        extend_window=3_600_000,
        extend_by=61_000,
    )
    model = replay_through_model(spec, events)
    final = await state(bus, name)
    assert (int(final["current"]), final["bidder"]) == (model.current, model.bidder)
    assert (int(final["seq"]), int(final["ends_at"])) == (model.seq, model.ends_at)
    assert [(e["event"], e["position"]) for e in events][-1][1] == str(model.seq)

    # The watcher saw every event, in commit order.
    seen = await watcher.wait_events(name, len(events), within=10.0)
    assert [(e["event"], e["position"]) for e in seen] == [
        (e["event"], e["position"]) for e in events
    ]
    url = instances[0].env["RT_REDIS_URL"]
    report = await asyncio.to_thread(
        check_invariants, url, [name], accepted, cluster=is_cluster(url)
    )
    assert report.ok, report.summary()

    # The work was shared: more than one instance judged bids.
    handled = [
        await instance.metric(
            "rt_service_requests_total", {"service": "bids", "type": "bids.place", "result": "ok"}
        )
        for instance in instances
    ]
    assert sum(1 for count in handled if count) >= 2, handled
    await asyncio.gather(watcher.close(), *(client.close() for client in clients))
