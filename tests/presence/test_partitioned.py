"""The presence service end to end with three partitions: two instances, two gateways routing
each notification and read to its channel's partition, and a gateway killed with users in
channels of every partition."""

from __future__ import annotations

import asyncio
import signal

import pytest
from redis.asyncio import Redis

from common.keys import Partitions
from tests.presence.store_support import channel_in
from tests.presence.support import (
    LEASE_TTL,
    Cluster,
    Watcher,
    close_all,
    presence_request,
    settled,
    subscribe,
)
from tests.support.client import DEADLINE, connect_user, gateway_id_of
from tests.support.processes import ManagedProcess, wait_all_ready


P = 3
PARTITIONS = Partitions("presence", P)


@pytest.fixture(scope="module")
def gateways(cluster: Cluster) -> tuple[ManagedProcess, ManagedProcess]:
    """Two gateways, two presence instances of three partitions, and a stub auction owner."""
    env = {"RT_PRESENCE_PARTITIONS": str(P)}
    processes = [
        cluster.gateway(wait=False),
        cluster.gateway(wait=False),
        cluster.presence(env, wait=False),
        cluster.presence(env, wait=False),
        cluster.owner("bids", wait=False),
    ]
    wait_all_ready(processes)
    return processes[0], processes[1]


def channels(stem: str) -> list[str]:
    """One auction channel in each partition."""
    return [channel_in(PARTITIONS, n, f"auction:{stem}") for n in PARTITIONS]


async def test_reads_see_subscriptions_in_every_partition(
    gateways: tuple[ManagedProcess, ManagedProcess],
) -> None:
    """Subscribed to a channel of each partition, a connection is listed in each at once."""
    gw1, gw2 = gateways
    ws = await connect_user(gw1.ws_url, "ann")
    other = await connect_user(gw2.ws_url, "bob")
    try:
        for channel in channels("read"):
            await subscribe(ws, channel)
            listed = await presence_request(ws, "list", channel=channel)
            assert listed["data"]["users"] == [{"user": "ann", "connections": 1}], listed
            counted = await presence_request(other, "count", channel=channel)
            assert counted["data"]["count"] == 1, counted
    finally:
        await close_all(ws, other)


async def test_a_closed_connection_leaves_each_partitions_channel_once(
    gateways: tuple[ManagedProcess, ManagedProcess], bus: Redis
) -> None:
    """Its drops, one per partition, end each channel's presence with one leave."""
    gw1, _ = gateways
    watched = channels("close")
    watchers = [await Watcher.open(gw1.ws_url, channel) for channel in watched]
    ws = await connect_user(gw1.ws_url, "cy")
    try:
        for channel in watched:
            await subscribe(ws, channel)
        await ws.close()
        await settled(bus, partitions=P)
        for watcher in watchers:
            assert await watcher.barrier() == [("join", "cy"), ("leave", "cy")]
            assert await watcher.users() == {}
    finally:
        await close_all(ws, *(watcher.ws for watcher in watchers))


async def test_a_killed_gateway_is_reaped_in_every_partition_once(
    cluster: Cluster, gateways: tuple[ManagedProcess, ManagedProcess], bus: Redis
) -> None:
    """Two instances reap a SIGKILLed gateway: each of its users leaves each channel once."""
    gw1, _ = gateways
    doomed = cluster.gateway()
    watched = channels("kill")
    watchers = [await Watcher.open(gw1.ws_url, channel) for channel in watched]
    users = [f"k{i}" for i in range(6)]
    doomed_clients = await asyncio.gather(*(connect_user(doomed.ws_url, u) for u in users))
    safe = await connect_user(gw1.ws_url, users[0])  # k0 stays, through the other gateway
    try:
        for ws in [*doomed_clients, safe]:
            for channel in watched:
                await subscribe(ws, channel)
        await settled(bus, partitions=P)
        for watcher in watchers:
            await watcher.barrier()
            watcher.take()
        doomed_id = await gateway_id_of(doomed.ws_url)
        doomed.signal(signal.SIGKILL)
        gone = sorted(("leave", user) for user in users[1:])
        for watcher in watchers:
            await watcher.until(
                lambda events: len(events) >= len(gone), within=LEASE_TTL + DEADLINE
            )
        await settled(bus, partitions=P)
        for watcher in watchers:
            assert sorted(await watcher.barrier()) == gone
            assert await watcher.users() == {users[0]: 1}
        assert await bus.zscore("gw:leases", doomed_id) is None
    finally:
        doomed.stop()
        await close_all(*doomed_clients, safe, *(watcher.ws for watcher in watchers))
