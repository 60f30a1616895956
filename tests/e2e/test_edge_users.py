"""Attacks at the edge by users: connection floods per user, token brute force per address,
oversized requests, unknown fields, and the channel authorization table.
"""

from __future__ import annotations

import functools
import json
import uuid

import pytest
from redis.asyncio import Redis

from common.keys import request_stream
from tests.e2e.conftest import Launcher
from tests.support.client import (
    assert_open,
    call,
    connect,
    connect_user,
    expect_close,
    make_token,
    recv_json,
    recv_until,
    send_json,
)
from tests.support.processes import ManagedProcess, wait_all_ready
from tests.support.stub_service import channel_key, handled_key
from tests.support.waiting import wait_until


def has_ref(ref: object, frame: dict[str, object]) -> bool:
    return frame.get("ref") == ref


# Users and authentication failures.


@pytest.fixture(scope="module")
def user_gateway(launcher: Launcher) -> ManagedProcess:
    """Two connections per user, three failed tokens per address and then two a second;
    a chat stub behind it whose requests may have 2 KiB."""
    gateway = launcher.gateway(
        {
            "RT_MAX_CONNECTIONS_PER_USER": "2",
            "RT_AUTH_FAILURE_BURST": "3",
            "RT_AUTH_FAILURE_RATE": "2",
            "RT_MAX_REQUEST_BYTES": "chat=2048",
        },
        wait=False,
    )
    stubs = [launcher.stub("chat", wait=False), launcher.stub("bids", wait=False)]
    wait_all_ready([gateway, *stubs])
    return gateway


async def test_concurrent_connections_per_user_are_capped(user_gateway: ManagedProcess) -> None:
    """A user's third connection is refused (rate_limited, 4429); a freed one makes room."""
    user = f"many-{uuid.uuid4().hex[:6]}"
    first = await connect_user(user_gateway.ws_url, user)
    second = await connect_user(user_gateway.ws_url, user)
    try:
        third = await connect(user_gateway.ws_url)
        await send_json(third, {"type": "auth", "token": make_token(user), "ref": "a"})
        reply = await recv_json(third)
        assert reply["error"]["code"] == "rate_limited", reply
        code, _ = await expect_close(third)
        assert code == 4429
        other = await connect_user(user_gateway.ws_url, "someone-else")
        await other.close()
        await first.close()

        async def room() -> bool:
            try:
                ws = await connect_user(user_gateway.ws_url, user)
            except AssertionError:
                return False
            await ws.close()
            return True

        await wait_until(room, what="a connection of the user freed")
        assert (
            await user_gateway.metric("rt_gateway_refused_total", {"reason": "user_connections"})
            >= 1
        )
    finally:
        await first.close()
        await second.close()


async def test_token_brute_force_is_slowed_per_address(user_gateway: ManagedProcess) -> None:
    """After three bad tokens from an address, its tries are refused unchecked for a while;
    users at other addresses are not affected."""
    attacker = ("127.0.3.1", 0)
    ws = await connect(user_gateway.ws_url, local_addr=attacker)
    for n in range(3):
        await send_json(ws, {"type": "auth", "token": f"guess-{n}", "ref": n})
        assert (await recv_json(ws))["error"]["code"] == "unauthenticated"
    assert (await expect_close(ws))[0] == 4401
    # Even a valid token is not checked now: the address must wait.
    ws = await connect(user_gateway.ws_url, local_addr=attacker)
    await send_json(ws, {"type": "auth", "token": make_token("attacker"), "ref": "x"})
    reply = await recv_json(ws)
    assert reply["error"]["code"] == "rate_limited", reply
    assert (await expect_close(ws))[0] == 4429
    legit = await connect_user(user_gateway.ws_url, "legit", local_addr=("127.0.3.2", 0))
    await legit.close()
    assert await user_gateway.metric("rt_gateway_refused_total", {"reason": "auth_failures"}) >= 1

    async def forgiven() -> bool:
        try:
            ws = await connect_user(user_gateway.ws_url, "attacker", local_addr=attacker)
        except AssertionError:
            return False
        await ws.close()
        return True

    await wait_until(forgiven, what="the address allowed to try again")


# Requests.


async def test_a_request_beyond_its_services_size_is_refused(user_gateway: ManagedProcess) -> None:
    """A chat request above its 2 KiB (in UTF-8 bytes) gets too_large; the connection stays."""
    async with await connect_user(user_gateway.ws_url, "big") as ws:
        small = await call(ws, {"type": "chat.echo", "text": "x" * 1500, "ref": 1})
        assert small["ok"] is True
        for ref, text in ((2, "x" * 2100), (3, "é" * 1100)):  # 1100 characters, 2200 bytes
            # Not escaped to ASCII: the gateway counts bytes of UTF-8, not characters.
            await ws.send(
                json.dumps({"type": "chat.echo", "text": text, "ref": ref}, ensure_ascii=False)
            )
            reply, _ = await recv_until(ws, functools.partial(has_ref, ref))
            assert reply["ok"] is False
            assert reply["error"]["code"] == "too_large"
            assert reply["error"]["limit"] == 2048
        # bids keeps its default of 1 KiB.
        reply = await call(ws, {"type": "bids.echo", "pad": "x" * 1100, "ref": 4})
        assert reply["error"]["code"] == "too_large"
        await assert_open(ws)
    assert (
        await user_gateway.metric("rt_gateway_refused_total", {"reason": "request_too_large"}) >= 3
    )


async def test_unknown_fields_and_types_never_reach_the_bus(
    user_gateway: ManagedProcess, bus: Redis
) -> None:
    """A field its service does not read, or an action it does not have, is refused at the
    gateway: the service never sees the request, and the stream never holds it."""
    user = f"fields-{uuid.uuid4().hex[:6]}"
    async with await connect_user(user_gateway.ws_url, user) as ws:
        send = {"type": "chat.send", "room": "r", "text": "hi", "client_id": "c1"}
        padded = await call(ws, {**send, "pad": "x" * 1500, "ref": 1})
        assert padded["error"]["code"] == "bad_request"
        assert padded["error"]["field"] == "pad"
        unknown = await call(ws, {"type": "chat.shout", "room": "r", "ref": 2})
        assert unknown["error"]["code"] == "unknown_type"
        assert "chat.send" in unknown["error"]["message"]
        # Sent last on the same stream: once it is handled, the others would have been.
        assert (await call(ws, {"type": "chat.echo", "ref": 3}))["ok"] is True
        await assert_open(ws)
    handled = [json.loads(raw) for raw in await bus.lrange(handled_key("chat"), 0, -1)]
    assert [record["type"] for record in handled if record["user"] == user] == ["chat.echo"]


async def test_handled_requests_are_trimmed_from_the_stream(
    user_gateway: ManagedProcess, bus: Redis
) -> None:
    """Once handled, requests leave the service's stream: it holds what is pending."""
    stream = request_stream("chat", 0)
    count = 200
    async with await connect_user(user_gateway.ws_url, "streamer") as ws:
        for n in range(count):
            await send_json(ws, {"type": "chat.echo", "pad": "x" * 1500, "ref": n})
        replies = 0
        while replies < count:
            frame = await recv_json(ws)
            replies += frame.get("type") == "reply"

    async def trimmed() -> bool:
        return int(await bus.xlen(stream)) <= 1

    await wait_until(trimmed, what="the handled requests trimmed")
    assert int(await bus.xlen(stream)) <= 1


# Channel authorization (docs/security.md): who may subscribe to what.

#: Names no client may subscribe to, whatever follows: the bus's own and unknown namespaces.
REFUSED_CHANNELS = [
    ("gw:leases", "invalid_channel"),
    ("gw:gw-edge-1:replies", "invalid_channel"),
    ("svc:chat:requests", "invalid_channel"),
    ("ch:chat:general", "invalid_channel"),
    ("ch:presence:lobby", "invalid_channel"),
    ("bids:auction:1", "invalid_channel"),  # a service's own keys are no namespace
    ("secret:x", "invalid_channel"),
    ("Chat:general", "invalid_channel"),
    ("chat", "invalid_channel"),
    ("chat:", "invalid_channel"),
    ("chat:a b", "invalid_channel"),
]


async def test_channel_authorization_table(user_gateway: ManagedProcess, bus: Redis) -> None:
    """Each namespace's rule holds through a real gateway; bus names are never subscribable."""
    room = f"chat:private-{uuid.uuid4().hex[:6]}"
    await bus.set(channel_key("chat", room), json.dumps({"deny": True}))
    async with await connect(user_gateway.ws_url) as anonymous:
        reply = await call(anonymous, {"type": "subscribe", "channel": "presence:x", "ref": 0})
        assert reply["error"]["code"] == "unauthenticated"
    async with await connect_user(user_gateway.ws_url, "reader") as ws:
        for n, (channel, code) in enumerate(REFUSED_CHANNELS):
            reply = await call(ws, {"type": "subscribe", "channel": channel, "ref": n})
            assert (reply["ok"], reply.get("error", {}).get("code")) == (False, code), channel
        allowed = [
            "presence:lobby",  # any authenticated user
            "auction:a1",  # any authenticated user; the owner gives the position
            "chat:open",  # the owner (chat) decides, and allows
            "presence:chat:open",  # while subscribed to chat:open
            "presence:auction:a1",  # auctions are not guarded
        ]
        for channel in allowed:
            reply = await call(ws, {"type": "subscribe", "channel": channel, "ref": channel})
            assert reply["ok"] is True, (channel, reply)
        guarded = [
            (room, "forbidden"),  # the owner refuses this user
            (f"presence:{room}", "forbidden"),  # not without the room itself
        ]
        for channel, code in guarded:
            reply = await call(ws, {"type": "subscribe", "channel": channel, "ref": channel})
            assert reply["error"]["code"] == code, (channel, reply)
