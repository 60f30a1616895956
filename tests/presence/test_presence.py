"""The presence service end to end: real gateways, presence instances, Redis and clients."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import Counter

import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection

from common.codec import load_bus, pack_bus
from common.envelope import Reply, Request, parse_envelope
from common.keys import reply_channel, request_stream
from tests.presence.support import (
    GRACE,
    LEASE_TTL,
    SWEEP_INTERVAL,
    Cluster,
    Watcher,
    presence_request,
    settled,
    subscribe,
    unsubscribe,
)
from tests.support.client import DEADLINE, connect_user, expect_close, gateway_id_of, wait_for
from tests.support.processes import ManagedProcess, metric_value, wait_all_ready


@pytest.fixture(scope="module")
def gateways(cluster: Cluster) -> tuple[ManagedProcess, ManagedProcess]:
    """Two gateways, one presence instance and stub owners of auctions and chat rooms."""
    processes = [
        cluster.gateway(wait=False),
        cluster.gateway(wait=False),
        cluster.presence(wait=False),
        cluster.owner("bids", wait=False),
        cluster.owner("chat", wait=False),
    ]
    wait_all_ready(processes)
    return processes[0], processes[1]


@pytest.fixture(scope="module")
def presence(cluster: Cluster, gateways: tuple[ManagedProcess, ManagedProcess]) -> ManagedProcess:
    """The module's first presence instance."""
    return next(p for p in cluster.processes if p.module == "presence_service")


async def close_all(*connections: ClientConnection) -> None:
    await asyncio.gather(*(ws.close() for ws in connections))


async def users_of(ws: ClientConnection, channel: str) -> dict[str, int]:
    reply = await presence_request(ws, "list", channel=channel)
    assert reply["ok"] is True, reply
    return {entry["user"]: entry["connections"] for entry in reply["data"]["users"]}


async def test_join_and_leave_across_two_gateways(
    gateways: tuple[ManagedProcess, ManagedProcess], bus: Redis
) -> None:
    """Users subscribing through either gateway are seen joining and leaving, once each."""
    gw1, gw2 = gateways
    watcher = await Watcher.open(gw1.ws_url, "auction:a1")
    alice = await connect_user(gw2.ws_url, "alice")
    bob = await connect_user(gw1.ws_url, "bob")
    try:
        await subscribe(alice, "auction:a1")
        await watcher.until(lambda events: len(events) >= 1)
        await subscribe(bob, "auction:a1")
        await watcher.until(lambda events: len(events) >= 2)
        await unsubscribe(alice, "auction:a1")
        await watcher.until(lambda events: len(events) >= 3)
        await bob.close()
        await watcher.until(lambda events: len(events) >= 4)
        await settled(bus)
        assert await watcher.barrier() == [
            ("join", "alice"),
            ("join", "bob"),
            ("leave", "alice"),
            ("leave", "bob"),
        ]
    finally:
        await close_all(watcher.ws, alice, bob)


async def test_user_with_two_connections_leaves_when_both_are_gone(
    gateways: tuple[ManagedProcess, ManagedProcess], bus: Redis
) -> None:
    """A user connected through both gateways joins once and leaves only when both close."""
    gw1, gw2 = gateways
    watcher = await Watcher.open(gw1.ws_url, "auction:a2")
    first = await connect_user(gw1.ws_url, "carol")
    second = await connect_user(gw2.ws_url, "carol")
    try:
        await subscribe(first, "auction:a2")
        await subscribe(second, "auction:a2")
        await wait_for(lambda: _users_are(watcher, {"carol": 2}), what="two connections")
        await first.close()
        await wait_for(lambda: _users_are(watcher, {"carol": 1}), what="one connection")
        await settled(bus)
        assert await watcher.barrier() == [("join", "carol")]
        await second.close()
        await watcher.until(lambda events: ("leave", "carol") in events)
        await settled(bus)
        assert await watcher.barrier() == [("join", "carol"), ("leave", "carol")]
        assert await watcher.users() == {}
    finally:
        await close_all(watcher.ws, first, second)


async def _users_are(watcher: Watcher, expected: dict[str, int]) -> bool:
    return await watcher.users() == expected


async def test_list_and_count_are_the_same_through_either_gateway(
    gateways: tuple[ManagedProcess, ManagedProcess], bus: Redis
) -> None:
    """presence.list and presence.count answer the same state whichever gateway is asked."""
    gw1, gw2 = gateways
    clients = [
        await connect_user(gw1.ws_url, "dave"),
        await connect_user(gw2.ws_url, "dave"),
        await connect_user(gw2.ws_url, "erin"),
        await connect_user(gw1.ws_url, "frank"),
    ]
    try:
        for ws in clients:
            await subscribe(ws, "auction:a3")
        await settled(bus)
        expected = [
            {"user": "dave", "connections": 2},
            {"user": "erin", "connections": 1},
            {"user": "frank", "connections": 1},
        ]
        for ws in (clients[0], clients[2]):  # one through each gateway
            listed = await presence_request(ws, "list", channel="auction:a3")
            assert listed["ok"] is True, listed
            assert listed["data"] == {"channel": "auction:a3", "users": expected, "count": 3}
            counted = await presence_request(ws, "count", channel="auction:a3")
            assert counted["data"] == {"channel": "auction:a3", "count": 3}
        empty = await presence_request(clients[1], "count", channel="auction:nobody")
        assert empty["data"] == {"channel": "auction:nobody", "count": 0}
    finally:
        await close_all(*clients)


async def test_private_channels_are_listed_only_to_their_members(
    gateways: tuple[ManagedProcess, ManagedProcess], bus: Redis
) -> None:
    """A chat room's presence is shown to users in it and refused to others; bad names fail."""
    gw1, gw2 = gateways
    member = await connect_user(gw1.ws_url, "gina")
    outsider = await connect_user(gw2.ws_url, "hank")
    try:
        await subscribe(member, "chat:room1")
        await settled(bus)
        assert await users_of(member, "chat:room1") == {"gina": 1}
        refused = await presence_request(outsider, "list", channel="chat:room1")
        assert refused["ok"] is False
        assert refused["error"]["code"] == "forbidden"
        refused = await presence_request(outsider, "count", channel="chat:room1")
        assert refused["error"]["code"] == "forbidden"
        for data, code in [
            ({"channel": "presence:auction:a1"}, "invalid_channel"),
            ({"channel": "nope"}, "invalid_channel"),
            ({}, "bad_request"),
        ]:
            reply = await presence_request(outsider, "list", **data)
            assert reply["ok"] is False
            assert reply["error"]["code"] == code, reply
        unknown = await presence_request(outsider, "forge")
        assert unknown["error"]["code"] == "unknown_type"
    finally:
        await close_all(member, outsider)


async def test_health_and_metrics(
    gateways: tuple[ManagedProcess, ManagedProcess], presence: ManagedProcess, bus: Redis
) -> None:
    """The service answers /livez and /readyz, and /metrics shows channels, users, events, lag."""
    gw1, gw2 = gateways
    assert (await presence.get_async("/livez"))[0] == 200
    assert (await presence.get_async("/readyz"))[0] == 200
    clients = [await connect_user(gw1.ws_url, "ivan"), await connect_user(gw2.ws_url, "judy")]
    try:
        await subscribe(clients[0], "auction:m1")
        await subscribe(clients[1], "auction:m2")
        await subscribe(clients[1], "auction:m1")
        await settled(bus)

        async def gauges_show_state() -> bool:
            _, body = await presence.get_async("/metrics")
            return (
                metric_value(body, "rt_presence_channels") == 2
                and metric_value(body, "rt_presence_users") == 2
            )

        await wait_for(gauges_show_state, what="the gauges at 2 channels and 2 users")
        _, body = await presence.get_async("/metrics")
        assert metric_value(body, "rt_presence_events_total", {"event": "join"}) >= 3
        assert metric_value(body, "rt_presence_events_total", {"event": "leave"}) >= 1
        assert metric_value(body, "rt_presence_notification_lag_seconds_count") >= 3
        applied = {"type": "track", "result": "applied"}
        assert metric_value(body, "rt_presence_notifications_total", applied) >= 3
        assert "rt_service_stream_lag" in body
        assert metric_value(body, "rt_presence_gateways") >= 2
    finally:
        await close_all(*clients)


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
        await wait_for(lambda: _no_lingering(bus), within=GRACE + DEADLINE, what="graces all over")
        await settled(bus)
        assert await watcher.barrier() == [("leave", "quitter")]
        assert await watcher.users() == {user: 1 for user in back}
    finally:
        await close_all(*first, *again, watcher.ws)


async def _no_lingering(bus: Redis) -> bool:
    return await bus.zcard("presence:lingering") == 0


async def test_subscribe_request_for_a_presence_channel_is_checked_like_a_list(
    gateways: tuple[ManagedProcess, ManagedProcess], bus: Redis
) -> None:
    """A gateway asking to subscribe a user to presence:chat:<room> gets null or forbidden."""
    gw1, _ = gateways
    member = await connect_user(gw1.ws_url, "quinn")
    pubsub = bus.pubsub()
    try:
        await subscribe(member, "chat:room2")
        await settled(bus)
        await pubsub.subscribe(reply_channel("gw-asking"))
        async with asyncio.timeout(DEADLINE):
            while (await pubsub.get_message(timeout=DEADLINE)) is None:
                pass  # the subscription's confirmation
        answers = {}
        for user in ("quinn", "rita"):
            asked = Request(
                "subscribe", {"channel": "presence:chat:room2"}, "gw-asking", "gw-asking.1", user
            )
            await bus.xadd(request_stream("presence"), {"e": pack_bus(asked.to_wire())})
            async with asyncio.timeout(DEADLINE):
                message = None
                while message is None:
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=DEADLINE
                    )
            reply = parse_envelope(load_bus(message["data"]))
            assert isinstance(reply, Reply)
            assert reply.request_id == asked.id
            answers[user] = reply
        assert answers["quinn"].data == {"position": None}
        assert answers["rita"].error is not None
        assert answers["rita"].error["code"] == "forbidden"
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await member.close()
