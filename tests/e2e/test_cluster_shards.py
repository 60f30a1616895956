"""On a Redis Cluster, a chat room and auctions whose keys live on different shards: chat and
bids both work through two gateways, and three bids instances over three partitions judge
each auction's bids in one order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from common.redis_client import RedisClient
from devtools.redis_cluster import LocalCluster
from loadtests.invariants import check_invariants
from tests.bids.model import Auction
from tests.bids.support import (
    BidClient,
    create_auction,
    history,
    replay_through_model,
    spread,
    state,
)
from tests.chat.support import name, room_keys
from tests.e2e.cluster_stack import (
    BIDS,
    INCREMENT,
    KEYS,
    STARTING_PRICE,
    Stack,
    opened_clients,
    routed_to_every_partition,
    started_stack,
    traffic_of,
)
from tests.e2e.traffic import chat_history, check_chat, check_delivery
from tests.support.bus_redis import ONLY_ON_CLUSTER
from tests.support.waiting import MS, wait_until


pytestmark = ONLY_ON_CLUSTER

#: Bids accepted and messages posted in each auction and room before the traffic stops.
ROUNDS = 10


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest, bus_url: str, log_dir: Path) -> Iterator[Stack]:
    """Two gateways, three bids instances of three partitions, one chat instance."""
    with started_stack(request, bus_url, log_dir, gateways=2, bids=3) as started:
        yield started


@pytest.fixture
async def clients(stack: Stack) -> AsyncIterator[list[BidClient]]:
    """Ten connections, alternating between the gateways: a watcher, then the traffic's."""
    async with opened_clients(stack, 10) as opened:
        yield opened


def _exists_on(cluster: LocalCluster, key: str) -> bool:
    """Whether ``key`` is stored on the master of its slot (asked directly, no redirection)."""
    server = cluster.master_serving(key)
    with redis.Redis.from_url(server.url, **cluster.client_options()) as node:
        return bool(node.exists(key))


async def test_a_room_and_auctions_on_other_shards_all_work_in_one_order_each(
    stack: Stack, bus: RedisClient, redis_cluster: LocalCluster, clients: list[BidClient]
) -> None:
    """Chat in a room of one shard and bids on auctions of three partitions, two on other
    shards, race through two gateways and three bids instances: each message is posted
    once, each auction's bids are as if judged one at a time, every watcher sees each
    channel's events once, in order."""
    cluster, bus_url = redis_cluster, stack.bids[0].env["RT_REDIS_URL"]
    room = name("room")
    chat_keys = room_keys(room)
    auctions = spread(BIDS, name("auction"))
    room_shard = cluster.master_serving(chat_keys.log(room))
    auction_shards = {cluster.master_serving(KEYS.history(a)) for a in auctions}
    assert len(auction_shards) == BIDS.count, "the bids partitions are not on three shards"
    assert auction_shards - {room_shard}, "no auction on another shard than the room"

    created = {a: await create_auction(stack.bids[0], id=a) for a in auctions}
    # Before any subscription: a gateway subscribes to the event channel of the partition
    # it routes the channel to.
    await routed_to_every_partition(bus, clients[:2], auctions)
    watcher = clients[0]
    assert (await watcher.request({"type": "chat.join", "room": room}))["ok"]
    for auction in auctions:
        assert (await watcher.subscribe(auction))["ok"]

    traffic = traffic_of(clients[1:], room, auctions)
    traffic.start()
    try:
        await traffic.advanced(ROUNDS, within=60_000 * MS)
    finally:
        await traffic.stop()
    assert traffic.retries == 0, "a request was not handled at once on a whole cluster"

    # Each auction's and the room's keys are where the slot map says: on different shards.
    assert _exists_on(cluster, chat_keys.log(room))
    assert all(_exists_on(cluster, KEYS.history(a)) and _exists_on(cluster, KEYS.auction(a))
               for a in auctions)  # fmt: skip
    report = await asyncio.to_thread(
        check_invariants, bus_url, auctions, traffic.accepted(), partitions=3, cluster=True
    )
    assert report.ok, report.summary()
    for auction in auctions:
        events = await history(bus, auction, KEYS)
        spec = Auction(auction, STARTING_PRICE, INCREMENT, created[auction]["ends_at"])
        model = replay_through_model(spec, events)
        final = await state(bus, auction, KEYS)
        assert (int(final["current"]), final["bidder"], int(final["seq"])) == (
            model.current,
            model.bidder,
            model.seq,
        )
        await watcher.wait_events(auction, len(events), within=10_000 * MS)
        assert not check_delivery(watcher, f"auction:{auction}", [e["position"] for e in events])
    messages = await chat_history(bus, chat_keys, room)
    check_chat(messages, traffic.posters)

    async def every_message_seen() -> bool:
        seen = [e for e in watcher.events[f"chat:{room}"] if e["event"] == "message"]
        return len(seen) >= len(messages)

    await wait_until(every_message_seen, "the room's messages at the watcher")
    assert not check_delivery(watcher, f"chat:{room}", [m["position"] for m in messages])

    # The three instances shared the bids.
    handled = [
        await instance.metric(
            "rt_service_requests_total", {"service": "bids", "type": "bids.place", "result": "ok"}
        )
        for instance in stack.bids
    ]
    assert sum(1 for count in handled if count) >= 2, handled
