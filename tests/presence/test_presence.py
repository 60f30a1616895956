"""The presence service end to end: real gateways, presence instances, Redis and clients."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection

from common.announcer import RegistryReader
from common.codec import load_bus, pack_bus
from common.envelope import Reply, Request, parse_envelope
from common.keys import reply_channel
from common.partitions import channel_entity
from tests.presence.support import (
    Watcher,
    close_all,
    presence_request,
    settled,
    subscribe,
    unsubscribe,
)
from tests.support.client import DEADLINE, connect_user
from tests.support.processes import ManagedProcess, metric_value
from tests.support.waiting import wait_until


async def users_of(ws: ClientConnection, channel: str) -> dict[str, int]:
    reply = await presence_request(ws, "list", channel=channel)
    assert reply["ok"] is True, reply
    return {entry["user"]: entry["connections"] for entry in reply["data"]["users"]}


@pytest.mark.also_on_cluster
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


@pytest.mark.also_on_cluster
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
        await wait_until(lambda: _users_are(watcher, {"carol": 2}), what="two connections")
        await first.close()
        await wait_until(lambda: _users_are(watcher, {"carol": 1}), what="one connection")
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


@pytest.mark.also_on_cluster
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

        await wait_until(gauges_show_state, what="the gauges at 2 channels and 2 users")
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
        # The stream a gateway sends it to: the partition of the channel's entity.
        registry = RegistryReader(bus, 1.0)
        await registry.read()
        entity = channel_entity("presence:chat:room2")
        stream = registry.view.current.entity_stream("presence", entity)
        answers = {}
        for user in ("quinn", "rita"):
            asked = Request(
                "subscribe", {"channel": "presence:chat:room2"}, "gw-asking", "gw-asking.1", user
            )
            await bus.xadd(stream, {"e": pack_bus(asked.to_wire())})
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
