"""Chat end to end: two gateways, two chat service instances, a private Redis, real clients."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.chat.support import ChatClient, name, position_key, start_chat
from tests.support.client import Frame
from tests.support.processes import ManagedProcess, metric_value, start_gateway, wait_all_ready
from tests.support.waiting import wait_until


@dataclass
class Cluster:
    first: ManagedProcess
    second: ManagedProcess
    chats: tuple[ManagedProcess, ManagedProcess]

    async def client(self, gateway: int, prefix: str) -> ChatClient:
        """A connection through the first (0) or second (1) gateway, as a new user."""
        url = (self.first, self.second)[gateway].ws_url
        return await ChatClient.open(url, name(prefix))


CHAT_ENV = {"RT_CHAT_SEND_BURST": "30", "RT_CHAT_SEND_RATE": "5", "RT_CHAT_MAX_TEXT": "2000"}


@pytest.fixture(scope="module")
def cluster(bus_url: str, log_dir: Path) -> Iterator[Cluster]:
    """Two gateways and two chat instances sharing the module's Redis."""
    processes: list[ManagedProcess] = []
    try:
        for gateway_id in ("gw-chat-1", "gw-chat-2"):
            processes.append(
                start_gateway(bus_url, log_dir=log_dir, gateway_id=gateway_id, wait=False)
            )
        for instance in ("chat-a", "chat-b"):
            processes.append(
                start_chat(
                    bus_url,
                    log_dir=log_dir,
                    instance=instance,
                    env=CHAT_ENV,
                    wait=False,
                )
            )
        wait_all_ready(processes)
        yield Cluster(processes[0], processes[1], (processes[2], processes[3]))
    finally:
        for process in processes:
            process.stop()


@pytest.mark.also_on_cluster
async def test_two_clients_on_two_gateways_chat(cluster: Cluster) -> None:
    """Messages posted through either gateway reach both members, sender included, in order."""
    room = name("room")
    channel = f"chat:{room}"
    async with await cluster.client(0, "alice") as a, await cluster.client(1, "bob") as b:
        joined = await a.ok("chat.join", room=room)
        assert (joined["channel"], joined["position"], joined["messages"]) == (channel, "0-0", [])
        await b.ok("chat.join", room=room)
        sent = await a.ok("chat.send", room=room, text="hello bob", client_id="a1")
        assert set(sent) == {"id", "position"}
        answer = await b.ok("chat.send", room=room, text="hi alice", client_id="b1")
        for client in (a, b):
            events = await client.messages(channel, 2)
            assert [e["data"]["text"] for e in events] == ["hello bob", "hi alice"]
            assert [e["position"] for e in events] == [sent["position"], answer["position"]]
            first = events[0]["data"]
            assert first == {
                "id": sent["id"],
                "user": a.user,
                "text": "hello bob",
                "ts": first["ts"],
                "client_id": "a1",
            }
            assert abs(first["ts"] - time.time() * 1000) < 60_000


async def test_leave_stops_delivery_to_that_connection(cluster: Cluster) -> None:
    """After chat.leave the connection gets no more of the room's messages; others still do."""
    room = name("leave")
    channel = f"chat:{room}"
    async with await cluster.client(0, "alice") as a, await cluster.client(1, "bob") as b:
        await a.ok("chat.join", room=room)
        await b.ok("chat.join", room=room)
        left = await b.ok("chat.leave", room=room)
        assert left == {"room": room, "channel": channel}
        # The gateway already dropped the subscription: the client has nothing to undo.
        refused = await b.request("unsubscribe", channel=channel)
        assert refused["error"]["code"] == "not_subscribed"
        await a.post(room, "after bob left", "a1")
        await a.post(room, "still here", "a2")
        assert [e["data"]["text"] for e in await a.messages(channel, 2)] == [
            "after bob left",
            "still here",
        ]
        # Alice has both posts; had bob's gateway still delivered them, they would have
        # reached bob before the reply to a request he sends afterwards.
        assert (await b.request("chat.history", room=room))["ok"] is True
        assert [f for f in b.unread if f.get("type") == "event"] == []


async def test_private_room_refuses_a_non_member(cluster: Cluster) -> None:
    """A private room refuses a non-member's join, history, send and subscribe with forbidden."""
    room = name("private")
    async with (
        await cluster.client(0, "alice") as a,
        await cluster.client(1, "bob") as b,
        await cluster.client(1, "carol") as c,
    ):
        created = await a.ok("chat.create", room=room, private=True, members=[b.user])
        assert (created["created"], created["member_count"]) == (True, 2)
        refusals = [
            await c.request("chat.join", room=room),
            await c.request("chat.history", room=room),
            await c.request("chat.send", room=room, text="let me in", client_id="c1"),
            await c.request("subscribe", channel=f"chat:{room}"),
        ]
        for refusal in refusals:
            assert refusal["ok"] is False
            assert refusal["error"]["code"] == "forbidden", refusal
        assert (await b.ok("chat.join", room=room))["private"] is True
        await b.post(room, "members only", "b1")
        history = await a.ok("chat.history", room=room)
        assert [m["text"] for m in history["messages"]] == ["members only"]
        taken = await c.request("chat.create", room=room, private=False)
        assert taken["error"]["code"] == "room_exists"
        assert c.unread == []


async def test_unknown_room_is_not_found(cluster: Cluster) -> None:
    """Sending to or reading a room nobody joined or created gives room_not_found."""
    room = name("nowhere")
    async with await cluster.client(0, "alice") as client:
        for reply in (
            await client.request("chat.send", room=room, text="anyone?", client_id="x"),
            await client.request("chat.history", room=room),
            await client.request("subscribe", channel=f"chat:{room}"),
        ):
            assert reply["error"]["code"] == "room_not_found", reply


@pytest.mark.also_on_cluster
async def test_client_id_deduplicates_across_a_reconnect(cluster: Cluster) -> None:
    """A send retried with the same client_id after a reconnect posts once and gets one reply."""
    room = name("dedupe")
    async with await cluster.client(1, "watcher") as watcher:
        await watcher.ok("chat.join", room=room)
        lost = await cluster.client(0, "alice")
        await lost.ok("chat.join", room=room)
        # The reply is never read: the connection goes away as if the network failed.
        await lost.send(
            {"type": "chat.send", "ref": 1, "room": room, "text": "once", "client_id": "m-1"}
        )
        posted = (await watcher.messages(f"chat:{room}", 1))[0]
        await lost.close()
        async with await ChatClient.open(cluster.second.ws_url, lost.user) as again:
            retried = await again.ok("chat.send", room=room, text="once", client_id="m-1")
            assert retried == {"id": posted["data"]["id"], "position": posted["position"]}
            fresh = await again.ok("chat.send", room=room, text="twice", client_id="m-2")
            assert fresh["id"] != retried["id"]
        history = await watcher.ok("chat.history", room=room)
        assert [(m["text"], m["client_id"]) for m in history["messages"]] == [
            ("once", "m-1"),
            ("twice", "m-2"),
        ]


@pytest.mark.also_on_cluster
async def test_history_pages_back(cluster: Cluster) -> None:
    """chat.history pages back through 25 messages with before/limit, oldest first per page."""
    room = name("paging")
    async with await cluster.client(0, "alice") as client:
        await client.ok("chat.join", room=room)
        positions = [await client.post(room, f"m{n}", f"c{n}") for n in range(25)]
        texts: list[str] = []
        seen: list[str] = []
        before = None
        for _ in range(10):
            page = await client.ok("chat.history", room=room, limit=10, before=before)
            assert len(page["messages"]) <= 10
            texts[:0] = [m["text"] for m in page["messages"]]
            seen[:0] = [m["position"] for m in page["messages"]]
            if not page["more"]:
                break
            before = page["messages"][0]["position"]
        assert texts == [f"m{n}" for n in range(25)]
        assert seen == positions


async def test_typing_reaches_others_and_is_not_stored(cluster: Cluster) -> None:
    """A typing event reaches the room (position null), repeats are dropped, none is stored."""
    room = name("typing")
    channel = f"chat:{room}"
    async with await cluster.client(0, "alice") as a, await cluster.client(1, "bob") as b:
        await a.ok("chat.join", room=room)
        await b.ok("chat.join", room=room)
        assert await b.ok("chat.typing", room=room) == {"sent": True}
        typing = await a.next(lambda f: f.get("type") == "event")
        assert typing == {
            "type": "event",
            "channel": channel,
            "event": "typing",
            "position": None,
            "data": {"user": b.user},
        }
        assert await b.ok("chat.typing", room=room) == {"sent": False}
        await b.post(room, "done typing", "b1")
        # The next event after the first typing is the message: the repeat was dropped.
        event = await a.next(lambda f: f.get("type") == "event")
        assert (event["event"], event["data"]["text"]) == ("message", "done typing")
        history = await a.ok("chat.history", room=room)
        assert [m["text"] for m in history["messages"]] == ["done typing"]


@pytest.mark.also_on_cluster
async def test_reconnect_with_since_through_the_other_gateway_gets_exactly_what_was_missed(
    cluster: Cluster,
) -> None:
    """A client away while 100 messages were posted gets exactly those, in order, then new ones."""
    room = name("recover")
    channel = f"chat:{room}"
    posters = [await cluster.client(0, f"poster{n}") for n in range(4)]
    try:
        for poster in posters:
            await poster.ok("chat.join", room=room)
        async with await cluster.client(0, "bob") as away:
            await away.ok("chat.join", room=room)
            last = await away.post(room, "bob leaves", "bye")
            user = away.user

        async def post(index: int, count: int, label: str) -> list[str]:
            return [
                await posters[index].post(room, f"{label}{index}-{n}", f"{label}{n}")
                for n in range(count)
            ]

        batches = await asyncio.gather(*(post(index, 25, "m") for index in range(4)))
        missed = sorted((p for batch in batches for p in batch), key=position_key)
        assert len(missed) == 100
        async with await ChatClient.open(cluster.second.ws_url, user) as back:
            # New messages are posted while the subscription is being answered.
            await back.send({"type": "subscribe", "channel": channel, "since": last, "ref": "s"})
            new = asyncio.create_task(post(0, 5, "new"))
            reply = await back.reply("s")
            assert back.unread == []
            assert reply["ok"] is True, reply
            assert reply["data"]["recovered"] is True
            new_positions = await new
            events = await back.messages(channel, 105)
            positions = [e["position"] for e in events]
            assert positions[:100] == missed
            assert sorted(positions[100:], key=position_key) == new_positions
            assert positions == sorted(set(positions), key=position_key)
            assert [e["data"]["text"] for e in events[100:]] == [f"new0-{n}" for n in range(5)]
    finally:
        for poster in posters:
            await poster.close()


@pytest.mark.also_on_cluster
async def test_join_with_since_returns_the_missed_messages(cluster: Cluster) -> None:
    """chat.join with since answers the messages after since, recovered, then goes live."""
    room = name("rejoin")
    channel = f"chat:{room}"
    async with await cluster.client(0, "alice") as a:
        await a.ok("chat.join", room=room)
        since = await a.post(room, "seen", "s0")
        missed = [await a.post(room, f"missed{n}", f"m{n}") for n in range(3)]
        async with await cluster.client(1, "bob") as b:
            joined = await b.ok("chat.join", room=room, since=since)
            assert joined["recovered"] is True
            assert [m["position"] for m in joined["messages"]] == missed
            assert joined["position"] == missed[-1]
            live = await a.post(room, "live", "l0")
            events = await b.messages(channel, 1)
            assert [e["position"] for e in events] == [live]


async def test_limits_have_clear_errors(cluster: Cluster) -> None:
    """Empty and over-long texts, bad client ids and a send burst get their own error codes."""
    room = name("limits")
    async with await cluster.client(0, "alice") as client:
        await client.ok("chat.join", room=room)
        empty = await client.request("chat.send", room=room, text="  ", client_id="e")
        assert empty["error"]["code"] == "empty_message"
        long = await client.request("chat.send", room=room, text="x" * 2001, client_id="l")
        assert (long["error"]["code"], long["error"]["max_length"]) == ("message_too_long", 2000)
        bad = await client.request("chat.send", room=room, text="x", client_id="")
        assert bad["error"]["code"] == "bad_request"
        # 40 sends at once against a bucket of 30 refilled at 5 per second.
        for n in range(40):
            await client.send(
                {"type": "chat.send", "ref": n, "room": room, "text": "x", "client_id": f"b{n}"}
            )
        replies: list[Frame] = [await client.reply(n, within=10.0) for n in range(40)]
        limited = [r for r in replies if not r["ok"]]
        assert limited, "no send was rate limited"
        assert {r["error"]["code"] for r in limited} == {"rate_limited"}
        assert all(r["error"]["retry_after_ms"] > 0 for r in limited)
        assert len(limited) <= 40 - 30


async def test_health_and_metrics(cluster: Cluster) -> None:
    """The chat service has /livez, /readyz and metrics of messages, latency and backlog."""
    room = name("metrics")
    async with await cluster.client(0, "alice") as client:
        await client.ok("chat.join", room=room)
        await client.post(room, "counted", "c1")
        await client.post(room, "counted", "c1")
    for chat in cluster.chats:
        assert await chat.get_async("/livez") == (200, "ok\n")
        assert await chat.get_async("/readyz") == (200, "ready\n")

    async def scraped() -> list[str]:
        bodies = []
        for chat in cluster.chats:
            status, body = await chat.get_async("/metrics")
            assert status == 200
            bodies.append(body)
        return bodies

    def total(bodies: list[str], metric: str, labels: dict[str, str]) -> float:
        return sum(metric_value(body, metric, labels) for body in bodies)

    bodies = await scraped()
    assert total(bodies, "rt_chat_messages_total", {"result": "posted"}) >= 1
    assert total(bodies, "rt_chat_messages_total", {"result": "duplicate"}) >= 1
    sends = {"service": "chat", "type": "chat.send"}
    assert total(bodies, "rt_service_request_seconds_count", sends) >= 2
    assert total(bodies, "rt_service_requests_total", {**sends, "result": "ok"}) >= 2

    # The two instances share the work of the consumer group.
    for body in bodies:
        handled = [
            sample.value
            for family in text_string_to_metric_families(body)
            for sample in family.samples
            if sample.name == "rt_service_requests_total"
        ]
        assert sum(handled) > 0

    async def backlog_reported() -> bool:
        names = ("rt_service_stream_pending", "rt_service_stream_lag")
        return all(
            f'{metric}{{service="chat"}}' in body for body in await scraped() for metric in names
        )

    await wait_until(backlog_reported, what="stream pending and lag gauges")
