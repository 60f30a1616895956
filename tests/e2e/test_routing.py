"""Routing between two gateways and a service: requests, replies, refusals and fan-out."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import pytest
from redis.asyncio import Redis

from common.codec import load_bus
from common.envelope import Event
from tests.e2e.conftest import Launcher
from tests.support.client import (
    DEADLINE,
    Frame,
    assert_open,
    call,
    connect_user,
    gateway_id_of,
    recv_json,
    recv_until,
    send_json,
)
from tests.support.owners import publish
from tests.support.processes import ManagedProcess, wait_all_ready
from tests.support.stub_service import channel_key


@pytest.fixture(scope="module")
def gateways(launcher: Launcher) -> tuple[ManagedProcess, ManagedProcess]:
    """Two gateways on the same Redis, and one stub chat service behind both."""
    first = launcher.gateway(wait=False)
    second = launcher.gateway(wait=False)
    stub = launcher.stub("chat", wait=False)
    wait_all_ready([first, second, stub])
    return first, second


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _has_ref(ref: int) -> Callable[[Frame], bool]:
    return lambda frame: frame.get("ref") == ref


async def test_service_error_becomes_an_error_reply(
    gateways: tuple[ManagedProcess, ManagedProcess],
) -> None:
    """A ServiceError raised by the service reaches the client as an error reply with details."""
    async with await connect_user(gateways[0].ws_url, "alice") as ws:
        reply = await call(ws, {"type": "chat.fail", "code": "room_closed", "ref": "f"})
        assert reply == {
            "type": "reply",
            "ref": "f",
            "ok": False,
            "error": {"code": "room_closed", "message": "refused by the stub", "detail": 42},
        }
        assert (await call(ws, {"type": "chat.echo", "ref": "after"}))["ok"] is True


async def test_unknown_action_is_refused_by_the_service(
    gateways: tuple[ManagedProcess, ManagedProcess],
) -> None:
    """A request for an action the service does not have is refused by it with unknown_type."""
    async with await connect_user(gateways[0].ws_url, "alice") as ws:
        reply = await call(ws, {"type": "chat.nothing", "ref": "n"})
    assert reply["ok"] is False
    assert reply["error"]["code"] == "unknown_type"


async def test_slow_reply_within_the_timeout_is_delivered(
    gateways: tuple[ManagedProcess, ManagedProcess],
) -> None:
    """A reply that takes a while but comes before RT_REQUEST_TIMEOUT is delivered."""
    async with await connect_user(gateways[0].ws_url, "alice") as ws:
        reply = await call(ws, {"type": "chat.slow", "delay": 0.5, "ref": "s"})
    assert (reply["ok"], reply["data"]) == (True, {"slept": 0.5})


@pytest.mark.also_on_cluster
async def test_server_side_subscription_precedes_the_reply(
    gateways: tuple[ManagedProcess, ManagedProcess], bus: Redis
) -> None:
    """A reply carrying a subscription subscribes the connection before it is delivered."""
    channel = _name("chat:joined")
    async with await connect_user(gateways[0].ws_url, "alice") as ws:
        reply = await call(ws, {"type": "chat.join", "channel": channel, "ref": "j"})
        assert reply["data"] == {"joined": channel}
        await publish(bus, Event(channel, "said", {"text": "hi"}, position="1"))
        event = await recv_json(ws)
        assert (event["channel"], event["data"]) == (channel, {"text": "hi"})
        reply = await call(ws, {"type": "unsubscribe", "channel": channel, "ref": "u"})
        assert reply["ok"] is True


@pytest.mark.also_on_cluster
async def test_a_join_catches_up_from_the_position_of_its_reply(
    gateways: tuple[ManagedProcess, ManagedProcess], bus: Redis
) -> None:
    """Events the owner had after the join's position follow its reply, in order, once."""
    channel = _name("chat:caught")
    history = [{"event": "said", "position": str(n), "data": {"n": n}} for n in range(5, 9)]
    await bus.set(channel_key("chat", channel), json.dumps({"position": "8", "events": history}))
    async with await connect_user(gateways[0].ws_url, "alice") as ws:
        await send_json(ws, {"type": "chat.join", "channel": channel, "position": "6", "ref": "j"})
        frames = [await recv_json(ws) for _ in range(3)]
        assert frames[0]["ref"] == "j", frames
        assert [(f["type"], f["position"]) for f in frames[1:]] == [("event", "7"), ("event", "8")]
        await assert_open(ws)


async def test_a_join_whose_catch_up_cannot_be_exact_says_so(
    gateways: tuple[ManagedProcess, ManagedProcess], bus: Redis
) -> None:
    """An owner whose history no longer reaches the join's position makes a recovery notice."""
    channel = _name("chat:trimmed")
    await bus.set(channel_key("chat", channel), json.dumps({"position": "9", "recovered": False}))
    async with await connect_user(gateways[0].ws_url, "alice") as ws:
        await send_json(ws, {"type": "chat.join", "channel": channel, "position": "6", "ref": "j"})
        reply, notice = await recv_json(ws), await recv_json(ws)
        assert reply["ref"] == "j", reply
        assert notice == {
            "type": "recovery",
            "channel": channel,
            "position": "9",
            "recovered": False,
        }


@pytest.mark.also_on_cluster
async def test_event_reaches_subscribers_on_both_gateways(
    gateways: tuple[ManagedProcess, ManagedProcess], bus: Redis
) -> None:
    """One event published on the bus reaches the subscribers of every gateway."""
    channel = _name("presence:shared")
    first = await connect_user(gateways[0].ws_url, "alice")
    second = await connect_user(gateways[1].ws_url, "bob")
    try:
        for ws in (first, second):
            assert (await call(ws, {"type": "subscribe", "channel": channel, "ref": "s"}))["ok"]
        await publish(bus, Event(channel, "joined", {"user": "carol"}))
        for ws in (first, second):
            event = await recv_json(ws)
            assert (event["channel"], event["event"], event["data"]) == (
                channel,
                "joined",
                {"user": "carol"},
            )
    finally:
        await first.close()
        await second.close()


async def test_reply_goes_only_to_the_gateway_holding_the_connection(
    gateways: tuple[ManagedProcess, ManagedProcess], bus: Redis
) -> None:
    """The service publishes each reply on the reply channel of the requester's gateway only."""
    first, second = gateways
    first_id = await gateway_id_of(first.ws_url)
    late_before = await second.metric("rt_gateway_late_replies_total")
    marker = uuid.uuid4().hex
    watcher = bus.pubsub()
    try:
        await watcher.psubscribe("gw:*:replies")
        confirmation = await watcher.get_message(timeout=DEADLINE)
        assert confirmation is not None
        assert confirmation["type"] == "psubscribe"
        async with await connect_user(first.ws_url, "alice") as ws:
            reply = await call(ws, {"type": "chat.echo", "ref": "r", "marker": marker})
            assert reply["data"]["echo"] == {"marker": marker}
        # The reply has been delivered, so it was published; read what the watcher got, up
        # to a quiet half second (a reply to the other gateway would be in the same batch).
        seen: list[str] = []
        for _ in range(1000):
            message = await watcher.get_message(timeout=0.5)
            if message is None:
                break
            if marker in str(load_bus(message["data"])):
                seen.append(message["channel"].decode())
    finally:
        await watcher.aclose()  # type: ignore[no-untyped-call]
    assert seen == [f"gw:{first_id}:replies"]
    assert await second.metric("rt_gateway_late_replies_total") == late_before


@pytest.mark.also_on_cluster
async def test_concurrent_requests_on_both_gateways_get_their_own_replies(
    gateways: tuple[ManagedProcess, ManagedProcess],
) -> None:
    """Interleaved requests from clients of two gateways each get the reply to their own ref."""
    clients = [
        await connect_user(gateways[0].ws_url, "alice"),
        await connect_user(gateways[1].ws_url, "bob"),
    ]
    try:
        for n in range(10):
            for index, ws in enumerate(clients):
                await send_json(ws, {"type": "chat.echo", "ref": n, "from": index})
        for index, ws in enumerate(clients):
            for n in range(10):
                reply, skipped = await recv_until(ws, _has_ref(n))
                assert skipped == []
                assert reply["data"]["echo"] == {"from": index}
                assert reply["data"]["user"] == ("alice", "bob")[index]
    finally:
        for ws in clients:
            await ws.close()
