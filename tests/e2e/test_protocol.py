"""Every client message of protocol v1, against a real gateway, Redis and stub chat service."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import jwt
import pytest
from redis.asyncio import Redis

from common.envelope import Event
from tests.e2e.conftest import Launcher
from tests.support.client import (
    assert_open,
    authenticate,
    call,
    connect,
    connect_user,
    make_token,
    recv_json,
    recv_until,
    send_json,
)
from tests.support.owners import publish
from tests.support.processes import ManagedProcess, wait_all_ready
from tests.support.stub_service import channel_key


@pytest.fixture(scope="module")
def gateway(launcher: Launcher) -> ManagedProcess:
    """One gateway with the test settings and a stub chat service behind it."""
    gateway = launcher.gateway(wait=False)
    stub = launcher.stub("chat", wait=False)
    wait_all_ready([gateway, stub])
    return gateway


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _event(channel: str, position: str | None, data: dict[str, object] | None = None) -> Event:
    return Event(channel, "said", data if data is not None else {"n": position}, position=position)


async def test_auth_message_gets_welcome(gateway: ManagedProcess) -> None:
    """An auth message with a valid token gets a welcome naming the user, gateway and ref."""
    async with await connect(gateway.ws_url) as ws:
        await send_json(ws, {"type": "auth", "token": make_token("alice"), "ref": "a1"})
        welcome = await recv_json(ws)
    assert welcome["type"] == "welcome"
    assert welcome["ref"] == "a1"
    assert welcome["user"] == "alice"
    # The configured id is a prefix: each run of a gateway has an id of its own.
    assert welcome["gateway"].startswith(gateway.env["RT_GATEWAY_ID"] + "-")
    assert isinstance(welcome["connection"], str)
    assert welcome["connection"].startswith(welcome["gateway"])


async def test_authorization_header_gets_welcome(gateway: ManagedProcess) -> None:
    """A Bearer token on the upgrade request authenticates: the first frame is a welcome."""
    async with await connect(gateway.ws_url, token=make_token("bob")) as ws:
        welcome = await recv_json(ws)
        assert welcome["type"] == "welcome"
        assert welcome["user"] == "bob"
        assert welcome["ref"] is None
        reply = await call(ws, {"type": "subscribe", "channel": _name("presence:hdr"), "ref": 1})
        assert reply["ok"] is True


async def test_ping_with_ref_gets_pong_with_ref(gateway: ManagedProcess) -> None:
    """A ping gets a pong echoing its ref, string or integer, even before authentication."""
    async with await connect(gateway.ws_url) as ws:
        await send_json(ws, {"type": "ping", "ref": "p-1"})
        assert await recv_json(ws) == {"type": "pong", "ref": "p-1"}
        await send_json(ws, {"type": "ping", "ref": 42})
        assert await recv_json(ws) == {"type": "pong", "ref": 42}


async def test_ping_without_ref_gets_pong_with_null_ref(gateway: ManagedProcess) -> None:
    """A ping without a ref gets a pong whose ref is null."""
    async with await connect_user(gateway.ws_url, "carol") as ws:
        await send_json(ws, {"type": "ping"})
        assert await recv_json(ws) == {"type": "pong", "ref": None}


@pytest.mark.also_on_cluster
async def test_presence_subscription_receives_published_events(
    gateway: ManagedProcess, bus: Redis
) -> None:
    """A presence subscription is answered with a null position and delivers bus events."""
    channel = _name("presence:lobby")
    async with await connect_user(gateway.ws_url, "dave") as ws:
        reply = await call(ws, {"type": "subscribe", "channel": channel, "ref": "s"})
        assert reply == {
            "type": "reply",
            "ref": "s",
            "ok": True,
            "data": {"channel": channel, "position": None},
        }
        await publish(bus, Event(channel, "joined", {"user": "erin"}))
        event = await recv_json(ws)
    assert event == {
        "type": "event",
        "channel": channel,
        "event": "joined",
        "position": None,
        "data": {"user": "erin"},
    }


async def test_unsubscribe_stops_events(gateway: ManagedProcess, bus: Redis) -> None:
    """After unsubscribe is acknowledged, events of that channel no longer arrive."""
    left, kept = _name("presence:left"), _name("presence:kept")
    async with await connect_user(gateway.ws_url, "frank") as ws:
        for ref, channel in (("s1", left), ("s2", kept)):
            assert (await call(ws, {"type": "subscribe", "channel": channel, "ref": ref}))["ok"]
        reply = await call(ws, {"type": "unsubscribe", "channel": left, "ref": "u"})
        assert reply == {"type": "reply", "ref": "u", "ok": True, "data": {"channel": left}}
        # Both go through the gateway's one pub/sub connection in publish order, so had the
        # first been delivered it would arrive before the second.
        await publish(bus, _event(left, None, {"which": "left"}))
        await publish(bus, _event(kept, None, {"which": "kept"}))
        event = await recv_json(ws)
    assert event["channel"] == kept
    assert event["data"] == {"which": "kept"}


async def test_chat_subscription_without_since_gets_position_then_live_events(
    gateway: ManagedProcess, bus: Redis
) -> None:
    """A chat subscription is answered with the owner's position and no replay, then live events."""
    channel = _name("chat:room")
    await bus.set(channel_key("chat", channel), json.dumps({"position": "7-0"}))
    async with await connect_user(gateway.ws_url, "grace") as ws:
        reply = await call(ws, {"type": "subscribe", "channel": channel, "ref": "s"})
        assert reply["data"] == {"channel": channel, "position": "7-0"}
        await publish(bus, _event(channel, "8-0"))
        event = await recv_json(ws)
    assert (event["type"], event["position"], event["data"]) == ("event", "8-0", {"n": "8-0"})


@pytest.mark.also_on_cluster
async def test_subscription_since_replays_then_live_events_without_duplicates(
    gateway: ManagedProcess, bus: Redis
) -> None:
    """With since, the reply comes first, then replayed events, then only newer live events."""
    channel = _name("chat:replay")
    history = [{"event": "said", "position": str(n), "data": {"n": str(n)}} for n in range(1, 6)]
    # The stub publishes these before it replies: the gateway holds them meanwhile, and must
    # drop 4 and 5 (already in the replay) and deliver 6 after the replay.
    live = [{"event": "said", "position": str(n), "data": {"n": str(n)}} for n in (4, 5, 6)]
    script = {"position": "5", "events": history, "live": live}
    await bus.set(channel_key("chat", channel), json.dumps(script))
    async with await connect_user(gateway.ws_url, "heidi") as ws:
        await send_json(ws, {"type": "subscribe", "channel": channel, "since": "2", "ref": "s"})
        reply = await recv_json(ws)
        assert reply == {
            "type": "reply",
            "ref": "s",
            "ok": True,
            "data": {"channel": channel, "position": "5", "recovered": True},
        }
        await publish(bus, _event(channel, "7"))
        await send_json(ws, {"type": "ping", "ref": "end"})
        # The pong may overtake event 7 (it does not travel through Redis): read both.
        frames = [await recv_json(ws) for _ in range(6)]
    events = [frame for frame in frames if frame["type"] == "event"]
    assert [event["position"] for event in events] == ["3", "4", "5", "6", "7"]
    assert all(event["channel"] == channel for event in events)
    assert [event["data"] for event in events] == [{"n": n} for n in ("3", "4", "5", "6", "7")]
    assert {"type": "pong", "ref": "end"} in frames


@pytest.mark.also_on_cluster
async def test_request_is_routed_to_the_service_and_answered(gateway: ManagedProcess) -> None:
    """A service request reaches the stub through its stream; the reply echoes ref and user."""
    async with await connect(gateway.ws_url) as ws:
        await authenticate(ws, make_token("ivan"))
        reply = await call(
            ws, {"type": "chat.echo", "ref": "r-1", "text": "hello", "user": "mallory"}
        )
    assert reply == {
        "type": "reply",
        "ref": "r-1",
        "ok": True,
        "data": {
            # The frame minus type and ref is the request's data; the user comes from the
            # token, never from the frame.
            "echo": {"text": "hello", "user": "mallory"},
            "user": "ivan",
            "type": "chat.echo",
        },
    }


async def test_request_without_ref_gets_reply_with_null_ref(gateway: ManagedProcess) -> None:
    """A service request without a ref is answered with a null ref."""
    async with await connect_user(gateway.ws_url, "judy") as ws:
        await send_json(ws, {"type": "chat.echo", "n": 1})
        reply, _ = await recv_until(ws, lambda f: f.get("type") == "reply")
        assert reply["ref"] is None
        assert reply["data"]["echo"] == {"n": 1}
        await assert_open(ws)


async def test_presence_subscription_with_since_is_not_recovered(gateway: ManagedProcess) -> None:
    """A since on a channel without history is answered with recovered false."""
    channel = _name("presence:since")
    async with await connect_user(gateway.ws_url, "kim") as ws:
        reply = await call(ws, {"type": "subscribe", "channel": channel, "since": "3", "ref": 1})
    assert reply["data"] == {"channel": channel, "position": None, "recovered": False}


async def test_subscription_refused_by_the_owner_is_an_error_reply(
    gateway: ManagedProcess, bus: Redis
) -> None:
    """A subscription the owning service refuses gets its error, and no events follow."""
    refused, other = _name("chat:private"), _name("presence:other")
    await bus.set(channel_key("chat", refused), json.dumps({"deny": True}))
    async with await connect_user(gateway.ws_url, "leo") as ws:
        reply = await call(ws, {"type": "subscribe", "channel": refused, "ref": "s"})
        assert reply["ok"] is False
        assert reply["error"]["code"] == "forbidden"
        assert (await call(ws, {"type": "subscribe", "channel": other, "ref": "o"}))["ok"]
        await publish(bus, _event(refused, "1"))
        await publish(bus, _event(other, None, {"which": "other"}))
        event = await recv_json(ws)
        assert event["channel"] == other
        reply = await call(ws, {"type": "unsubscribe", "channel": refused, "ref": "u"})
        assert reply["error"]["code"] == "not_subscribed"


async def test_second_auth_for_the_same_user_extends_the_session(
    gateway: ManagedProcess,
) -> None:
    """A later auth of the same user is acknowledged and replaces the expiry of the first."""
    first = make_token("mia", ttl=2)
    expiry = jwt.decode(first, options={"verify_signature": False})["exp"]
    async with await connect(gateway.ws_url) as ws:
        await authenticate(ws, first)
        reply = await call(ws, {"type": "auth", "token": make_token("mia"), "ref": "again"})
        assert reply["ok"] is True
        assert reply["data"]["user"] == "mia"
        # Until past the first token's expiry (and a margin), the connection keeps answering.
        for n in range(100):
            await assert_open(ws, ref=f"alive-{n}")
            if time.time() > expiry + 0.5:
                break
            await asyncio.sleep(0.2)
        else:
            raise AssertionError("the first token never expired")


async def test_every_ref_gets_a_reply_when_unsubscribing_a_pending_subscription(
    gateway: ManagedProcess, bus: Redis
) -> None:
    """An unsubscribe sent while the owner prepares the subscribe still leaves one reply per ref."""
    channel = _name("chat:pending")
    await bus.set(channel_key("chat", channel), json.dumps({"delay": 0.3, "position": "1"}))
    async with await connect_user(gateway.ws_url, "nina") as ws:
        await send_json(ws, {"type": "subscribe", "channel": channel, "ref": "s"})
        await send_json(ws, {"type": "unsubscribe", "channel": channel, "ref": "u"})
        await send_json(ws, {"type": "chat.slow", "delay": 0.5, "ref": "later"})
        # The stub answers in order: the subscribe, then chat.slow; so by the reply to
        # "later" the subscribe has long been answered.
        _, skipped = await recv_until(ws, lambda f: f.get("ref") == "later", within=5)
        refs = [str(frame["ref"]) for frame in skipped if frame["type"] == "reply"]
        assert sorted(refs) == ["s", "u"]


async def test_presence_of_an_owner_guarded_channel_needs_its_subscription(
    gateway: ManagedProcess, bus: Redis
) -> None:
    """Watching presence:chat:<room> needs a live subscription to chat:<room> first."""
    channel = _name("chat:private")
    await bus.set(channel_key("chat", channel), json.dumps({"position": "1-0"}))
    async with await connect_user(gateway.ws_url, "ivan") as ws:
        watch = {"type": "subscribe", "channel": f"presence:{channel}", "ref": "early"}
        refused = await call(ws, watch)
        assert refused["error"]["code"] == "forbidden"
        assert (await call(ws, {"type": "subscribe", "channel": channel, "ref": "room"}))["ok"]
        allowed = await call(ws, {**watch, "ref": "late"})
        assert allowed["ok"] is True, allowed
        # An auction's presence is public, like the auction itself.
        public = {"type": "subscribe", "channel": "presence:auction:a1", "ref": "public"}
        assert (await call(ws, public))["ok"] is True
