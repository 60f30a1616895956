"""A Redis Cluster master killed under bids and chat traffic: its replica takes over, and
nothing a client was told is lost or doubled.

The master killed (``kill -9`` by PID) is the one that serves the chat room's partition
and a bids partition (their slots, by the cluster's slot map); the traffic's clients send
each request again while it is refused (tests/e2e/traffic.py), so that every bid gets a
verdict and every message is posted once the replica serves. The gateway's and the
services' ``/readyz`` say 503 while their shard is down, 200 once it is back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from common.redis_client import RedisClient
from devtools.redis_cluster import LocalCluster
from loadtests.invariants import check_invariants
from tests.bids.support import BidClient, create_auction, history, spread
from tests.chat.support import name, room_keys
from tests.e2e.cluster_stack import (
    BIDS,
    KEYS,
    Stack,
    opened_clients,
    routed_to_every_partition,
    started_stack,
    traffic_of,
)
from tests.e2e.traffic import chat_history, check_chat, check_delivery
from tests.support.bus_redis import ONLY_ON_CLUSTER
from tests.support.processes import ManagedProcess
from tests.support.waiting import MS, wait_until


pytestmark = ONLY_ON_CLUSTER

#: The failure's detection (the node timeout, 3 s), the vote and the promotion, then the
#: processes' reconnections: seconds; generous for a loaded machine.
FAILOVER_DEADLINE = 60_000 * MS
#: Bids accepted and messages posted in each auction and room before the kill, and after
#: the cluster serves again.
ROUNDS = 5


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest, bus_url: str, log_dir: Path) -> Iterator[Stack]:
    """A gateway (requests time out after 2 s), a bids instance of three partitions and a
    chat instance."""
    env = {"RT_REQUEST_TIMEOUT": "2"}
    with started_stack(request, bus_url, log_dir, gateways=1, bids=1, gateway_env=env) as stack:
        yield stack


@pytest.fixture
async def clients(stack: Stack) -> AsyncIterator[list[BidClient]]:
    """Nine connections through the gateway: a watcher, two posters, six bidders."""
    async with opened_clients(stack, 9) as opened:
        yield opened


@pytest.fixture
def restored(redis_cluster: LocalCluster) -> Iterator[LocalCluster]:
    """The session's cluster, whole again after the test (the killed node back, a replica)."""
    try:
        yield redis_cluster
    finally:
        redis_cluster.restore(within=FAILOVER_DEADLINE)


class Readiness:
    """Every process's ``/readyz`` status, polled from :meth:`start` on until :meth:`stop`."""

    def __init__(self, processes: list[ManagedProcess]) -> None:
        self.processes = processes
        self.statuses: dict[str, list[int]] = {process.name: [] for process in processes}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._poll())

    async def _poll(self) -> None:
        while True:
            answers = await asyncio.gather(
                *(process.get_async("/readyz", within=1.0) for process in self.processes)
            )
            for process, (status, _) in zip(self.processes, answers, strict=True):
                self.statuses[process.name].append(status)
            await asyncio.sleep(0.05)

    def down_then_up(self) -> bool:
        """Whether every process said 503, and later 200."""
        for statuses in self.statuses.values():
            if 503 not in statuses or 200 not in statuses[statuses.index(503) :]:
                return False
        return True

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def test_a_killed_master_fails_over_under_traffic_losing_and_doubling_nothing(
    stack: Stack, bus: RedisClient, restored: LocalCluster, clients: list[BidClient]
) -> None:
    """kill -9 of the master of the room's and an auction's slots under traffic: its replica
    serves them; every accepted bid and posted message is in its history once, in order;
    subscribers get the events after the failover, the gap replayed or announced; every
    /readyz goes 503, then 200."""
    cluster, bus_url = restored, stack.bids[0].env["RT_REDIS_URL"]
    room = name("room")
    chat_keys = room_keys(room)
    auctions = spread(BIDS, name("auction"))
    victim = cluster.master_serving(chat_keys.log(room))
    (replica,) = cluster.replicas_of(victim)
    assert any(cluster.master_serving(KEYS.history(a)) == victim for a in auctions), (
        "no bids partition on the room's shard"
    )
    for auction in auctions:
        await create_auction(stack.bids[0], id=auction)
    await routed_to_every_partition(bus, clients[:1], auctions)
    watcher = clients[0]
    assert (await watcher.request({"type": "chat.join", "room": room}))["ok"]
    for auction in auctions:
        assert (await watcher.subscribe(auction))["ok"]

    traffic = traffic_of(clients[1:], room, auctions)
    readiness = Readiness(stack.processes)
    traffic.start()
    try:
        await traffic.advanced(ROUNDS, within=30_000 * MS)
        victim.kill()
        killed_at = time.monotonic()
        readiness.start()

        def promoted() -> bool:
            return cluster.master_serving(chat_keys.log(room)) == replica

        await wait_until(promoted, "the replica promoted", within=FAILOVER_DEADLINE)
        await wait_until(
            readiness.down_then_up, "every /readyz 503, then 200", within=FAILOVER_DEADLINE
        )
        back_after = time.monotonic() - killed_at
        await traffic.advanced(ROUNDS, within=FAILOVER_DEADLINE)
    finally:
        await traffic.stop()
        await readiness.stop()
    assert traffic.retries > 0, "no request met the outage"
    report = await asyncio.to_thread(
        check_invariants, bus_url, auctions, traffic.accepted(), partitions=3, cluster=True
    )
    assert report.ok, report.summary()
    messages = await chat_history(bus, chat_keys, room)
    check_chat(messages, traffic.posters)

    # The subscriptions are back: the last events reach the watcher, and each channel's gap
    # was replayed or announced.
    positions = {f"chat:{room}": [message["position"] for message in messages]}
    for auction in auctions:
        positions[f"auction:{auction}"] = [e["position"] for e in await history(bus, auction, KEYS)]

    def every_last_event_seen() -> bool:
        return all(
            any(e["position"] == wanted[-1] for e in watcher.events[channel])
            for channel, wanted in positions.items()
        )

    await wait_until(every_last_event_seen, "the last event of every channel at the watcher")
    recoveries = {
        outcome: await stack.gateways[0].metric("rt_gateway_recoveries_total", {"outcome": outcome})
        for outcome in ("ok", "inexact", "retried", "failed")
    }
    announced = [c for c, wanted in positions.items() if check_delivery(watcher, c, wanted)]
    print(
        f"served again {back_after:.1f} s after the kill; {traffic.retries} requests sent "
        f"again; the gateway's replays {recoveries}; gaps announced rather than replayed: "
        f"{announced or 'none'}"
    )
