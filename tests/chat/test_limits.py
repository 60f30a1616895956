"""Abuse resistance of chat: room quota, creation rate, member cap and expiry of empty rooms."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.chat.support import ChatClient, name, room_keys, start_chat
from tests.support.client import DEADLINE, Frame
from tests.support.processes import ManagedProcess, start_gateway, wait_all_ready
from tests.support.waiting import Deadline, wait_until


QUOTA = 5
BURST = 3
MAX_MEMBERS = 4
EMPTY_TTL_S = 1.0
LIMITS_ENV = {
    "RT_CHAT_MAX_ROOMS": str(QUOTA),
    "RT_CHAT_CREATE_BURST": str(BURST),
    # A token every half second: a test creating QUOTA rooms waits about a second.
    "RT_CHAT_CREATE_RATE": "2",
    "RT_CHAT_MAX_MEMBERS": str(MAX_MEMBERS),
    "RT_CHAT_EMPTY_ROOM_TTL": str(EMPTY_TTL_S),
}


@pytest.fixture(scope="module")
def gateway(bus_url: str, log_dir: Path) -> Iterator[ManagedProcess]:
    """A gateway and a chat instance with small limits and a one-second empty-room TTL."""
    processes = [
        start_gateway(bus_url, log_dir=log_dir, gateway_id="gw-limits", wait=False),
        start_chat(bus_url, log_dir=log_dir, instance="chat-limits", env=LIMITS_ENV, wait=False),
    ]
    try:
        wait_all_ready(processes)
        yield processes[0]
    finally:
        for process in processes:
            process.stop()


async def _create_room(client: ChatClient, room: str) -> Frame:
    """Join ``room`` (creating it) once the creation rate allows; return the reply."""
    deadline = Deadline(DEADLINE)
    while True:
        reply = await client.request("chat.join", room=room)
        if reply["ok"] or reply["error"]["code"] != "rate_limited":
            return reply
        assert not deadline.expired(), reply
        # The pause the refusal asks for, not a wait for a condition.
        await asyncio.sleep(reply["error"]["retry_after_ms"] / 1000)


async def test_creating_rooms_faster_than_the_rate_is_refused(gateway: ManagedProcess) -> None:
    """Past the burst a user's new rooms get rate_limited, while joining existing rooms works."""
    async with await ChatClient.open(gateway.ws_url, name("fast")) as client:
        rooms = [name("burst") for _ in range(BURST + 1)]
        replies = [await client.request("chat.join", room=room) for room in rooms]
        assert [reply["ok"] for reply in replies] == [True] * BURST + [False], replies
        error = replies[-1]["error"]
        assert error["code"] == "rate_limited"
        assert 0 < error["retry_after_ms"] <= 500
        assert error["room"] == rooms[-1]
        refused = await client.request("chat.create", room=name("burst"), private=True)
        assert refused["error"]["code"] == "rate_limited", refused
        again = await client.ok("chat.join", room=rooms[0])
        assert again["created"] is False


async def test_the_room_quota_is_reached_and_freed_by_expiry(
    gateway: ManagedProcess, bus: Redis
) -> None:
    """A user who created QUOTA rooms gets too_many_rooms until one of them expires."""
    async with await ChatClient.open(gateway.ws_url, name("hoarder")) as client:
        rooms = [name("kept") for _ in range(QUOTA - 1)]
        for room in rooms:
            assert (await _create_room(client, room))["ok"]
            # A message keeps the room (and its place in the quota) past the empty-room TTL.
            await client.post(room, "keep me", "c1")
        empty = name("empty")
        assert (await _create_room(client, empty))["ok"]
        over = await _create_room(client, name("over"))
        assert over["ok"] is False
        assert over["error"]["code"] == "too_many_rooms"
        assert over["error"]["limit"] == QUOTA
        private = await client.request("chat.create", room=name("over"), private=True)
        assert private["error"]["code"] == "too_many_rooms", private

        async def expired() -> bool:
            return await bus.exists(room_keys(empty).room(empty)) == 0

        await wait_until(expired, within=EMPTY_TTL_S + DEADLINE, what="the empty room gone")
        assert (await _create_room(client, name("freed")))["ok"]


async def test_an_empty_room_expires_but_rooms_with_messages_or_members_stay(
    gateway: ManagedProcess, bus: Redis
) -> None:
    """After the TTL an empty public room is gone; one with a message, or a private one, stays."""
    empty, busy, private = name("empty"), name("busy"), name("private")
    async with await ChatClient.open(gateway.ws_url, name("owner")) as client:
        assert (await client.ok("chat.join", room=empty))["created"] is True
        assert (await client.ok("chat.join", room=busy))["created"] is True
        await client.post(busy, "hello", "m1")
        await client.ok("chat.create", room=private, private=True)
        assert await bus.pttl(room_keys(empty).room(empty)) > 0
        assert await bus.pttl(room_keys(busy).room(busy)) == -1

        async def expired() -> bool:
            return await bus.exists(room_keys(empty).room(empty)) == 0

        await wait_until(expired, within=EMPTY_TTL_S + DEADLINE, what="the empty room gone")
        assert await bus.exists(room_keys(busy).room(busy), room_keys(private).room(private)) == 2
        gone = await client.request("chat.send", room=empty, text="anyone?", client_id="m2")
        assert gone["error"]["code"] == "room_not_found", gone
        history = await client.ok("chat.history", room=busy)
        assert [message["text"] for message in history["messages"]] == ["hello"]


async def test_a_private_room_has_at_most_max_members(gateway: ManagedProcess, bus: Redis) -> None:
    """Members beyond RT_CHAT_MAX_MEMBERS (creator included) are refused and none is added."""
    room = name("club")
    async with await ChatClient.open(gateway.ws_url, name("founder")) as client:
        members = [name("m") for _ in range(MAX_MEMBERS - 1)]
        created = await client.ok("chat.create", room=room, private=True, members=members)
        assert created["member_count"] == MAX_MEMBERS
        more = await client.request(
            "chat.create", room=room, private=True, members=[members[0], name("extra")]
        )
        assert more["error"]["code"] == "too_many_members", more
        assert more["error"]["limit"] == MAX_MEMBERS
        assert await bus.scard(room_keys(room).members(room)) == MAX_MEMBERS
        same = await client.ok("chat.create", room=room, private=True, members=members[:1])
        assert same["member_count"] == MAX_MEMBERS
        listed = [name("m") for _ in range(MAX_MEMBERS + 1)]
        oversized = await client.request(
            "chat.create", room=name("club"), private=True, members=listed
        )
        assert oversized["error"]["code"] == "bad_request", oversized
