"""Chat end to end under loss: retention overflow, and the chat service down while clients send.

The module has its own gateway (RT_REQUEST_TIMEOUT short, so that clients hear
service_unavailable soon) and its own chat instance (retention 20), which one test stops and
starts again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.chat.support import ChatClient, cut_pubsub, name, start_chat
from tests.support.processes import (
    ManagedProcess,
    metric_value,
    start_gateway,
    wait_all_ready,
)
from tests.support.waiting import wait_until


CHAT_ENV = {
    "RT_CHAT_RETENTION": "20",
    "RT_CHAT_REPLAY_LIMIT": "20",
    "RT_CHAT_JOIN_MESSAGES": "10",
    "RT_CHAT_SEND_BURST": "50",
}


@dataclass
class Setup:
    gateway: ManagedProcess
    other_gateway: ManagedProcess
    chat: ManagedProcess
    redis_url: str
    log_dir: Path

    def restart_chat(self) -> None:
        """Start the chat instance again, as it was (same instance id and settings)."""
        self.chat = start_chat(
            self.redis_url, log_dir=self.log_dir, instance="chat-recovery", env=CHAT_ENV
        )


@pytest.fixture(scope="module")
def setup(bus_url: str, log_dir: Path) -> Iterator[Setup]:
    """Two gateways with a 1 s request timeout and one chat instance with retention 20."""
    gateway_env = {"RT_REQUEST_TIMEOUT": "1"}
    processes = [
        start_gateway(
            bus_url,
            log_dir=log_dir,
            gateway_id=gateway_id,
            env=gateway_env,
            wait=False,
        )
        for gateway_id in ("gw-recovery-1", "gw-recovery-2")
    ]
    chat = start_chat(bus_url, log_dir=log_dir, instance="chat-recovery", env=CHAT_ENV, wait=False)
    state = Setup(processes[0], processes[1], chat, bus_url, log_dir)
    try:
        wait_all_ready([*processes, chat])
        yield state
    finally:
        for process in [*processes, state.chat]:
            process.stop()


async def test_retention_overflow_is_not_recovered(setup: Setup) -> None:
    """Once retention trimmed a message after since, recovery says recovered: false."""
    room = name("overflow")
    channel = f"chat:{room}"
    async with await ChatClient.open(setup.gateway.ws_url, name("alice")) as alice:
        await alice.ok("chat.join", room=room)
        positions = [await alice.post(room, f"m{n}", f"c{n}") for n in range(25)]
    # Retention 20 kept m5..m24: since = m4 (the newest trimmed) still recovers everything.
    async with await ChatClient.open(setup.other_gateway.ws_url, name("bob")) as bob:
        await bob.send({"type": "subscribe", "channel": channel, "since": positions[4], "ref": 1})
        reply = await bob.reply(1)
        assert (reply["ok"], reply["data"]["recovered"]) == (True, True)
        events = await bob.messages(channel, 20)
        assert [e["position"] for e in events] == positions[5:]
    async with await ChatClient.open(setup.other_gateway.ws_url, name("carol")) as carol:
        await carol.send({"type": "subscribe", "channel": channel, "since": positions[3], "ref": 1})
        reply = await carol.reply(1)
        assert (reply["ok"], reply["data"]["recovered"]) == (True, False)
        # Not recovered: the newest 10 (RT_CHAT_JOIN_MESSAGES) come instead.
        events = await carol.messages(channel, 10)
        assert [e["position"] for e in events] == positions[15:]
        joined = await carol.ok("chat.join", room=room, since="0-0")
        assert joined["recovered"] is False
        assert [m["text"] for m in joined["messages"]] == [f"m{n}" for n in range(15, 25)]
        history = await carol.ok("chat.history", room=room, limit=100)
        assert [m["position"] for m in history["messages"]] == positions[5:]
        assert history["more"] is False


async def test_sends_queued_while_the_service_is_down_are_processed_once_in_order(
    setup: Setup,
) -> None:
    """Sends made while chat is stopped time out, then are posted once, in order, on restart."""
    room = name("outage")
    channel = f"chat:{room}"
    async with (
        await ChatClient.open(setup.gateway.ws_url, name("alice")) as alice,
        await ChatClient.open(setup.other_gateway.ws_url, name("bob")) as bob,
    ):
        await alice.ok("chat.join", room=room)
        await bob.ok("chat.join", room=room)
        assert await asyncio.to_thread(setup.chat.stop) == 0
        for n in range(10):
            await alice.send(
                {"type": "chat.send", "ref": n, "room": room, "text": f"m{n}", "client_id": f"c{n}"}
            )
        for n in range(10):
            reply = await alice.reply(n, within=5.0)
            assert (reply["ok"], reply["error"]["code"]) == (False, "service_unavailable")
        await asyncio.to_thread(setup.restart_chat)
        events = await bob.messages(channel, 10)
        assert [e["data"]["text"] for e in events] == [f"m{n}" for n in range(10)]
        history = await bob.ok("chat.history", room=room)
        assert [m["text"] for m in history["messages"]] == [f"m{n}" for n in range(10)]
        # The client retries what timed out: every retry gets the first post's answer.
        for n in range(10):
            retried = await alice.ok("chat.send", room=room, text=f"m{n}", client_id=f"c{n}")
            assert retried == {"id": events[n]["data"]["id"], "position": events[n]["position"]}
        again = await bob.ok("chat.history", room=room)
        assert again["messages"] == history["messages"]


async def test_a_gateway_whose_bus_connection_drops_recovers_what_was_posted_meanwhile(
    setup: Setup,
) -> None:
    """Messages posted while a gateway's pub/sub connection is down still reach its clients."""
    room = name("blip")
    channel = f"chat:{room}"
    redis = Redis.from_url(setup.redis_url)
    async with (
        await ChatClient.open(setup.gateway.ws_url, name("bob")) as bob,
        await ChatClient.open(setup.other_gateway.ws_url, name("alice")) as alice,
    ):
        await bob.ok("chat.join", room=room)
        await alice.ok("chat.join", room=room)
        await alice.post(room, "before", "c-before")
        assert [e["data"]["text"] for e in await bob.messages(channel, 1)] == ["before"]
        # Cut the first gateway's pub/sub connection (and only it); Redis keeps running, so
        # the posts below are published while that gateway is reconnecting.
        await cut_pubsub(redis, "gw-recovery-1")
        texts = [f"gap {n}" for n in range(10)]
        for n, text in enumerate(texts):
            await alice.post(room, text, f"c-gap-{n}")
        events = await bob.messages(channel, len(texts))
        assert [e["data"]["text"] for e in events] == texts
        # Exactly once: the next message bob gets is the next one posted.
        await alice.post(room, "after", "c-after")
        assert [e["data"]["text"] for e in await bob.messages(channel, 1)] == ["after"]

    async def recovered() -> bool:
        _, text = await setup.gateway.get_async("/metrics")
        return metric_value(text, "rt_gateway_recoveries_total", {"outcome": "ok"}) >= 1

    await wait_until(recovered, what="the gateway's recovery counted")
    await redis.aclose()
