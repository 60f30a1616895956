"""Chat end to end with three partitions: two gateways, two chat instances with
``RT_CHAT_PARTITIONS=3``, rooms in every partition."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from common.keys import Partitions
from tests.chat.support import ChatClient, name, rooms_in, start_chat
from tests.support.processes import ManagedProcess, start_gateway, wait_all_ready


P = 3
PARTITIONS = Partitions("chat", P)
CHAT_ENV = {"RT_CHAT_PARTITIONS": str(P), "RT_CHAT_SEND_BURST": "50"}


@pytest.fixture(scope="module")
def gateways(bus_url: str, log_dir: Path) -> Iterator[tuple[ManagedProcess, ManagedProcess]]:
    """Two gateways and two chat instances of three partitions on the module's Redis."""
    processes = [
        *(
            start_gateway(bus_url, log_dir=log_dir, gateway_id=gateway_id, wait=False)
            for gateway_id in ("gw-parts-1", "gw-parts-2")
        ),
        *(
            start_chat(bus_url, log_dir=log_dir, instance=instance, env=CHAT_ENV, wait=False)
            for instance in ("chat-parts-a", "chat-parts-b")
        ),
    ]
    try:
        wait_all_ready(processes)
        yield processes[0], processes[1]
    finally:
        for process in processes:
            process.stop()


def _rooms(prefix: str) -> list[str]:
    """One new room in each partition."""
    base = name(prefix) + "-"
    return [rooms_in(PARTITIONS, n, base, 1)[0] for n in PARTITIONS]


async def test_rooms_of_every_partition_chat_across_gateways(
    gateways: tuple[ManagedProcess, ManagedProcess], bus: Redis
) -> None:
    """Messages posted in rooms of three partitions through two gateways reach both members,
    each room's in its order, each posted once however often it is sent."""
    rooms = _rooms("room")
    first, second = gateways
    async with (
        await ChatClient.open(first.ws_url, name("alice")) as alice,
        await ChatClient.open(second.ws_url, name("bob")) as bob,
    ):
        for room in rooms:
            await alice.ok("chat.join", room=room)
            await bob.ok("chat.join", room=room)
        positions: dict[str, list[str]] = {room: [] for room in rooms}
        for n in range(3):
            for room in rooms:
                positions[room].append(await alice.post(room, f"{room} {n}", f"c{n}"))
        # Sent again (a client that lost the replies): the same answers, nothing posted.
        for room in rooms:
            assert await alice.post(room, "again", "c0") == positions[room][0]
        for client in (alice, bob):
            for room in rooms:
                events = await client.messages(f"chat:{room}", 3)
                assert [e["position"] for e in events] == positions[room]
                assert [e["data"]["text"] for e in events] == [f"{room} {n}" for n in range(3)]
    # Each room's history in its partition, named here as docs/chat.md names it.
    for room in rooms:
        assert await bus.xlen(f"chat:{{chat.{PARTITIONS.of(room)}}}:log:{room}") == 3


async def test_a_reconnected_client_recovers_each_rooms_own_messages(
    gateways: tuple[ManagedProcess, ManagedProcess],
) -> None:
    """After a reconnect, a join with since and a subscribe with since give each room of
    three partitions the messages it missed, and only those."""
    rooms = _rooms("missed")
    first, second = gateways
    async with await ChatClient.open(first.ws_url, name("alice")) as alice:
        bob_user = name("bob")
        async with await ChatClient.open(second.ws_url, bob_user) as bob:
            seen = {room: (await bob.ok("chat.join", room=room))["position"] for room in rooms}
        for room in rooms:
            await alice.ok("chat.join", room=room)
            for n in range(2):
                await alice.post(room, f"{room} missed {n}", f"m{n}")
        async with await ChatClient.open(first.ws_url, bob_user) as bob:
            joined = await bob.ok("chat.join", room=rooms[0], since=seen[rooms[0]])
            assert joined["recovered"] is True
            texts = [message["text"] for message in joined["messages"]]
            assert texts == [f"{rooms[0]} missed {n}" for n in range(2)]
            for room in rooms[1:]:
                answer = await bob.ok("subscribe", channel=f"chat:{room}", since=seen[room])
                assert answer["recovered"] is True
                events = await bob.messages(f"chat:{room}", 2)
                assert [e["data"]["text"] for e in events] == [
                    f"{room} missed {n}" for n in range(2)
                ]
