"""Read-your-writes: once a connection holds a reply, its later presence requests see it.

Real gateways, chat service, presence instances and Redis. With several presence instances
(each reading one entry at a time) a read may be handled before the notification sent just
ahead of it on the stream, so these tests fail if a read does not carry what it must see.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from common.keys import partition_prefix
from tests.chat.support import ChatClient, name
from tests.presence.support import Cluster, settled
from tests.support.client import authenticate, connect, make_token
from tests.support.processes import ManagedProcess, wait_all_ready
from tests.support.waiting import wait_until


ROUNDS = 100
_MANY_ROOMS = {
    "RT_CHAT_MAX_ROOMS": str(10 * ROUNDS),
    "RT_CHAT_CREATE_BURST": str(10 * ROUNDS),
}


@pytest.fixture(scope="module")
def gateways(cluster: Cluster) -> tuple[ManagedProcess, ManagedProcess]:
    """Two gateways, the chat service, one presence instance and a stub owner of auctions."""
    processes = [
        cluster.gateway(wait=False),
        cluster.gateway(wait=False),
        # One user joins ROUNDS new rooms in a row: far above chat's creation limits.
        cluster.service("chat_service", "chat", _MANY_ROOMS, wait=False),
        cluster.presence(wait=False),
        cluster.owner("bids", wait=False),
    ]
    wait_all_ready(processes)
    return processes[0], processes[1]


def presence_instances(cluster: Cluster, count: int) -> None:
    """Start or stop presence instances until the module runs ``count`` of them."""
    running = [p for p in cluster.processes if p.module == "presence_service"]
    for extra in running[count:]:
        extra.stop()
        cluster.processes.remove(extra)
    wait_all_ready([cluster.presence(wait=False) for _ in range(count - len(running))])


@pytest.fixture(params=[1, 3], ids=["1-instance", "3-instances"])
async def clients(
    request: pytest.FixtureRequest,
    cluster: Cluster,
    gateways: tuple[ManagedProcess, ManagedProcess],
) -> AsyncIterator[list[ChatClient]]:
    """With 1 or 3 presence instances, a connection of one new user to each gateway."""
    presence_instances(cluster, request.param)
    user = name("user")
    connections = [await ChatClient.open(gateway.ws_url, user) for gateway in gateways]
    yield connections
    await asyncio.gather(*(client.close() for client in connections))


async def test_presence_sees_a_join_as_soon_as_its_reply_arrives(
    clients: list[ChatClient],
) -> None:
    """join, then at once a presence watch, list and count: never refused, the user listed."""
    for round_ in range(ROUNDS):
        client = clients[round_ % 2]
        room = name("room")
        await client.ok("chat.join", room=room)
        await client.ok("subscribe", channel=f"presence:chat:{room}")
        listing = await client.ok("presence.list", channel=f"chat:{room}")
        assert listing["users"] == [{"user": client.user, "connections": 1}], (round_, listing)
        counted = await client.ok("presence.count", channel=f"chat:{room}")
        assert counted["count"] == 1, (round_, counted)


async def test_presence_forgets_an_unsubscribe_as_soon_as_its_reply_arrives(
    clients: list[ChatClient],
) -> None:
    """subscribe, list, unsubscribe, count at once: the count no longer has the user."""
    for round_ in range(ROUNDS // 2):
        client = clients[round_ % 2]
        channel = f"auction:{name('a')}"
        await client.ok("subscribe", channel=channel)
        before = await client.ok("presence.list", channel=channel)
        assert [entry["user"] for entry in before["users"]] == [client.user], (round_, before)
        await client.ok("unsubscribe", channel=channel)
        after = await client.ok("presence.count", channel=channel)
        assert after["count"] == 0, (round_, after)


async def test_presence_forgets_a_leave_as_soon_as_its_reply_arrives(
    clients: list[ChatClient],
) -> None:
    """chat.leave at once after chat.join: presence refuses the room to the one who left."""
    for round_ in range(ROUNDS // 2):
        client = clients[round_ % 2]
        room = name("room")
        await client.ok("chat.join", room=room)
        await client.ok("chat.leave", room=room)
        reply = await client.request("presence.list", channel=f"chat:{room}")
        assert reply["ok"] is False, (round_, reply)
        assert reply["error"]["code"] == "forbidden", (round_, reply)


@pytest.mark.parametrize("how", ["unsubscribe", "chat.leave"])
async def test_a_watch_of_a_guarded_room_ends_with_the_room(
    gateways: tuple[ManagedProcess, ManagedProcess], how: str
) -> None:
    """Unsubscribed from a room (or leaving it), a connection sees none of its presence events."""
    gateway = gateways[0]
    room = name("room")
    watch = f"presence:chat:{room}"
    async with (
        await ChatClient.open(gateway.ws_url, name("left")) as left,
        await ChatClient.open(gateway.ws_url, name("stays")) as stays,
        await ChatClient.open(gateway.ws_url, name("comer")) as comer,
    ):
        for client in (left, stays):
            await client.ok("chat.join", room=room)
            await client.ok("subscribe", channel=watch)
        if how == "unsubscribe":
            await left.ok("unsubscribe", channel=f"chat:{room}")
        else:
            await left.ok("chat.leave", room=room)
        ended = await left.next(lambda frame: frame.get("type") == "unsubscribed")
        assert ended["channel"] == watch, ended
        # The gateway told the client before the reply that caused it.
        assert not [f for f in left.unread if f.get("type") == "reply"], left.unread
        reply = await left.request("unsubscribe", channel=watch)
        assert reply["error"]["code"] == "not_subscribed", reply
        left.unread.clear()  # the events from before it

        await comer.ok("chat.join", room=room)
        await stays.next(lambda f: f.get("channel") == watch and f["data"]["user"] == comer.user)
        # One gateway fans each event out in one pass: had `left` still been subscribed,
        # the event would have been queued to it before this reply.
        await left.request("presence.count", channel="auction:none")
        assert not [f for f in left.unread if f.get("channel") == watch], left.unread


async def unsubscribe_while_joining(client: ChatClient, channels: list[str]) -> bool:
    """Send a join of ``channels``, then unsubscribe the first until that succeeds or the
    join's reply comes; whether an unsubscribe succeeded first."""
    await client.send({"type": "bids.join", "ref": "join", "channels": channels})
    for _ in range(500):
        reply = await client.request("unsubscribe", channel=channels[0])
        joined = any(frame.get("ref") == "join" for frame in client.unread)
        if reply["ok"]:
            assert not joined, "an unsubscribe succeeded after the join's reply"
            break
        if joined:
            break
    join = await client.reply("join")
    assert join["ok"] is True, join
    return bool(reply["ok"])


async def test_an_unsubscribe_while_a_join_subscribes_leaves_no_ghost(
    gateways: tuple[ManagedProcess, ManagedProcess],
) -> None:
    """An unsubscribe answered while a server-side join is under way is not undone by it."""
    async with await ChatClient.open(gateways[0].ws_url, name("ghost")) as client:
        for _ in range(5):
            # Many channels: the gateway subscribes to each on the bus in turn, a window of
            # milliseconds in which the client's unsubscribe of the first one is handled.
            channels = [f"auction:{name('ghost')}" for _ in range(80)]
            if await unsubscribe_while_joining(client, channels):
                break
            for channel in channels:
                await client.ok("unsubscribe", channel=channel)
        else:
            pytest.fail("no unsubscribe was handled while the gateway joined, in 5 tries")
        # The unsubscribe stands: the channel is not subscribed, and presence says so.
        counted = await client.ok("presence.count", channel=channels[0])
        assert counted["count"] == 0, counted
        again = await client.request("subscribe", channel=channels[0])
        assert again["ok"] is True, again
        second = await client.ok("presence.count", channel=channels[1])
        assert second["count"] == 1, second


async def test_a_connection_that_left_everything_is_forgotten_when_it_closes(
    gateways: tuple[ManagedProcess, ManagedProcess], bus: Redis
) -> None:
    """Its presence record goes at the close, not when the gateway's lease would expire."""
    ws = await connect(gateways[0].ws_url)
    welcome = await authenticate(ws, make_token(name("passer")))
    connection, gateway = welcome["connection"], welcome["gateway"]
    async with ChatClient(ws, welcome["user"]) as client:
        channel = f"auction:{name('a')}"
        await client.ok("subscribe", channel=channel)
        await client.ok("unsubscribe", channel=channel)
        await settled(bus)
        # One partition: its keys are under partition 0's prefix.
        prefix = partition_prefix("presence", 0)
        assert await bus.sismember(f"{prefix}gw:{gateway}", connection)

    async def forgotten() -> bool:
        gone = not await bus.sismember(f"{prefix}gw:{gateway}", connection)
        return gone and await bus.hexists(f"{prefix}conn:{connection}", "dt")

    await wait_until(forgotten, what="the closed connection's presence record ended")
