"""The presence service end to end under churn and failures: three instances sharing
interleaved traffic, a gateway killed with SIGKILL, a gateway restarted with SIGTERM.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import Counter

from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection

from common.keys import partition_prefix
from tests.presence.support import (
    GRACE,
    LEASE_TTL,
    SWEEP_INTERVAL,
    Cluster,
    Watcher,
    close_all,
    settled,
    subscribe,
    unsubscribe,
)
from tests.support.client import DEADLINE, connect_user, expect_close, gateway_id_of
from tests.support.processes import ManagedProcess, metric_value, wait_all_ready
from tests.support.waiting import wait_until


async def test_three_instances_with_interleaved_traffic_end_in_the_right_state(
    cluster: Cluster, gateways: tuple[ManagedProcess, ManagedProcess], bus: Redis
) -> None:
    """Concurrent subscribes and unsubscribes handled by three instances end in the true state."""
    gw1, gw2 = gateways
    extra = [cluster.presence(wait=False), cluster.presence(wait=False)]
    instances = [*(p for p in cluster.processes if p.module == "presence_service")]
    wait_all_ready(extra)
    channels = [f"auction:x{i}" for i in range(3)]
    watchers = [await Watcher.open(gw1.ws_url, channel) for channel in channels]
    users = ["kim", "kim", "lee", "lee", "max", "ned", "oli", "pat"]
    clients = [await connect_user((gw1, gw2)[i % 2].ws_url, user) for i, user in enumerate(users)]
    rng = random.Random(5)
    joined: list[set[str]] = [set() for _ in clients]

    async def churn(index: int) -> None:
        for _ in range(24):
            channel = rng.choice(channels)
            if channel in joined[index]:
                await unsubscribe(clients[index], channel)
                joined[index].discard(channel)
            else:
                await subscribe(clients[index], channel)
                joined[index].add(channel)

    try:
        await asyncio.gather(*(churn(i) for i in range(len(clients))))
        expected = {
            channel: dict(Counter(users[i] for i in range(len(clients)) if channel in joined[i]))
            for channel in channels
        }
        await settled(bus, within=10)
        for watcher in watchers:
            assert await watcher.users() == expected[watcher.channel]
            events = await watcher.barrier()
            _assert_alternating(events, present=set(expected[watcher.channel]))
        # The instances did share the work.
        busy = 0
        for instance in instances:
            _, body = await instance.get_async("/metrics")
            if metric_value(body, "rt_service_requests_total", _TRACK_OK) > 0:
                busy += 1
        assert busy >= 2
        await close_all(*clients)
        await settled(bus)
        for watcher in watchers:
            events = await watcher.barrier()
            _assert_alternating(events, present=set())
            assert await watcher.users() == {}
    finally:
        await close_all(*clients, *(w.ws for w in watchers))
        for instance in extra:
            instance.stop()


_TRACK_OK = {"service": "presence", "type": "track", "result": "ok"}


def _assert_alternating(events: list[tuple[str, str]], present: set[str]) -> None:
    """Per user: join, leave, join... starting with a join; ending joined iff present."""
    state: dict[str, bool] = {}
    for event, user in events:
        was_in = state.get(user, False)
        assert event == ("leave" if was_in else "join"), (user, events)
        state[user] = not was_in
    assert {user for user, is_in in state.items() if is_in} == present, events


async def test_sigkill_of_a_gateway_leaves_each_of_its_users_once(
    cluster: Cluster, gateways: tuple[ManagedProcess, ManagedProcess], bus: Redis
) -> None:
    """A gateway killed with 50 connections costs each user there one leave, none if elsewhere."""
    gw1, _ = gateways
    doomed = cluster.gateway()
    channel = "auction:k1"
    watcher = await Watcher.open(gw1.ws_url, channel)
    single = [f"s{i:02}" for i in range(30)]  # one connection each on the doomed gateway
    double = [f"d{i:02}" for i in range(10)]  # two connections each on it
    elsewhere = single[25:] + double[5:]  # also connected through the surviving gateway
    on_doomed = [*single, *double, *double]
    assert len(on_doomed) == 50
    doomed_clients = await asyncio.gather(*(connect_user(doomed.ws_url, u) for u in on_doomed))
    safe_clients = await asyncio.gather(*(connect_user(gw1.ws_url, u) for u in elsewhere))
    try:
        await asyncio.gather(*(subscribe(ws, channel) for ws in [*doomed_clients, *safe_clients]))
        await settled(bus)
        assert len(await watcher.users()) == 40
        await watcher.barrier()
        watcher.take()

        doomed_id = await gateway_id_of(doomed.ws_url)
        killed_at = time.monotonic()
        doomed.signal(signal.SIGKILL)
        gone = sorted(set(on_doomed) - set(elsewhere))
        assert len(gone) == 30
        await watcher.until(lambda events: len(events) >= len(gone), within=LEASE_TTL + DEADLINE)
        elapsed = time.monotonic() - killed_at
        assert elapsed < LEASE_TTL + SWEEP_INTERVAL + 3.0, elapsed
        await settled(bus)
        events = await watcher.barrier()
        assert sorted(events) == [("leave", user) for user in gone]
        assert await watcher.users() == {user: 1 for user in elsewhere}
        assert await bus.zscore("gw:leases", doomed_id) is None
    finally:
        doomed.stop()
        await close_all(*doomed_clients, *safe_clients, watcher.ws)


async def test_sigterm_restart_with_reconnects_makes_no_leave_or_join(
    cluster: Cluster, gateways: tuple[ManagedProcess, ManagedProcess], bus: Redis
) -> None:
    """Clients of a gateway stopped with SIGTERM that reconnect in the grace cause no event."""
    gw1, _ = gateways
    old = cluster.gateway(wait=False)
    new = cluster.gateway(wait=False)
    wait_all_ready([old, new])
    channel = "auction:r1"
    watcher = await Watcher.open(gw1.ws_url, channel)
    back = [f"r{i}" for i in range(6)]
    first = await asyncio.gather(*(connect_user(old.ws_url, u) for u in [*back, "quitter"]))
    again: list[ClientConnection] = []
    try:
        await asyncio.gather(*(subscribe(ws, channel) for ws in first))
        await settled(bus)
        await watcher.barrier()
        watcher.take()

        old.signal(signal.SIGTERM)
        codes = await asyncio.gather(*(expect_close(ws) for ws in first))
        assert [code for code, _ in codes] == [1012] * len(first)
        stopped_at = time.monotonic()
        # Half come back through the surviving gateway, half through the new one.
        again = list(
            await asyncio.gather(
                *(connect_user((gw1, new)[i % 2].ws_url, u) for i, u in enumerate(back))
            )
        )
        await asyncio.gather(*(subscribe(ws, channel) for ws in again))
        assert old.wait(DEADLINE) == 0

        await watcher.until(lambda events: ("leave", "quitter") in events, within=GRACE + 5)
        assert time.monotonic() - stopped_at >= GRACE - 1.0
        await wait_until(
            lambda: _no_lingering(bus), within=GRACE + DEADLINE, what="graces all over"
        )
        await settled(bus)
        assert await watcher.barrier() == [("leave", "quitter")]
        assert await watcher.users() == {user: 1 for user in back}
    finally:
        await close_all(*first, *again, watcher.ws)


async def _no_lingering(bus: Redis) -> bool:
    return await bus.zcard(partition_prefix("presence", 0) + "lingering") == 0
