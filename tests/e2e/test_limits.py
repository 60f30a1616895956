"""Per-connection and per-gateway limits: frame size, slow readers, rates, counts."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection

from common.envelope import Event
from tests.e2e.conftest import Launcher
from tests.support.client import (
    DEADLINE,
    Frame,
    StalledClient,
    assert_open,
    call,
    connect,
    connect_user,
    expect_close,
    make_token,
    read_until_close,
    recv_json,
    send_json,
)
from tests.support.owners import publish
from tests.support.processes import ManagedProcess, wait_all_ready
from tests.support.waiting import Deadline, wait_until


MAX_MESSAGE_BYTES = 1024
RATE_LIMIT = 5
RATE_BURST = 10
MAX_INFLIGHT = 2
MAX_SUBSCRIPTIONS = 3
MAX_CONNECTIONS = 3


@pytest.fixture(scope="module")
def limited_gateway(launcher: Launcher) -> ManagedProcess:
    """A gateway with small limits, and a stub chat service behind it."""
    gateway = launcher.gateway(
        {
            "RT_MAX_MESSAGE_BYTES": str(MAX_MESSAGE_BYTES),
            "RT_RATE_LIMIT": str(RATE_LIMIT),
            "RT_RATE_BURST": str(RATE_BURST),
            "RT_MAX_INFLIGHT": str(MAX_INFLIGHT),
            "RT_MAX_SUBSCRIPTIONS": str(MAX_SUBSCRIPTIONS),
            "RT_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
            "RT_REQUEST_TIMEOUT": "3",
        },
        wait=False,
    )
    stub = launcher.stub("chat", wait=False)
    wait_all_ready([gateway, stub])
    return gateway


@pytest.fixture
async def gateway(limited_gateway: ManagedProcess) -> ManagedProcess:
    """The limited gateway once the connections of earlier tests are gone (it allows 3)."""

    async def idle() -> bool:
        return await limited_gateway.metric("rt_gateway_connections") == 0

    await wait_until(idle, what="no connection left on the limited gateway")
    return limited_gateway


@pytest.fixture(scope="module")
def outbox_gateway(launcher: Launcher) -> ManagedProcess:
    """A gateway whose per-connection outbound backlog is small."""
    return launcher.gateway(
        {
            "RT_OUTBOX_MAX_MESSAGES": "16",
            "RT_OUTBOX_MAX_BYTES": str(128 * 1024),
            # Long enough for the stalled client to read its way to the close frame.
            "RT_CLOSE_TIMEOUT": "10",
        }
    )


async def test_oversized_frame_closes_1009(gateway: ManagedProcess) -> None:
    """A frame larger than RT_MAX_MESSAGE_BYTES closes the connection with 1009."""
    async with await connect_user(gateway.ws_url, "alice") as ws:
        await send_json(ws, {"type": "ping", "ref": "x" * 100})  # well below the limit
        assert (await recv_json(ws))["type"] == "pong"
        await send_json(ws, {"type": "ping", "pad": "x" * (MAX_MESSAGE_BYTES + 100)})
        code, _ = await expect_close(ws)
    assert code == 1009


async def test_invalid_utf8_closes_1007_without_a_traceback_in_the_log(
    gateway: ManagedProcess,
) -> None:
    """A text frame that is not UTF-8 closes with 1007, counted, and logs no traceback."""
    before = await gateway.metric("rt_gateway_closes_total", {"code": "1007"})
    async with await connect_user(gateway.ws_url, "mallory") as ws:
        await ws.send(b'{"type":"ping","ref":"\xff\xfe"}', text=True)
        code, _ = await expect_close(ws)
    assert code == 1007

    async def counted() -> bool:
        return await gateway.metric("rt_gateway_closes_total", {"code": "1007"}) == before + 1

    await wait_until(counted, what="the 1007 close counted")
    # The client's fault is not the gateway's error: no traceback per bad frame.
    assert "Invalid UTF-8" not in gateway.log_path.read_text(errors="replace")


async def test_burst_beyond_the_rate_gets_rate_limited(gateway: ManagedProcess) -> None:
    """Messages beyond RT_RATE_BURST get rate_limited errors, and the connection stays open."""
    async with await connect_user(gateway.ws_url, "alice") as ws:
        # The auth took one token: RATE_BURST - 1 pings pass, the rest of the burst is refused.
        for n in range(RATE_BURST + 2):
            await send_json(ws, {"type": "ping", "ref": n})
        frames = [await recv_json(ws) for _ in range(RATE_BURST + 2)]
        pongs = [frame for frame in frames if frame["type"] == "pong"]
        refused = [frame for frame in frames if frame["type"] == "reply"]
        assert len(pongs) in (RATE_BURST - 1, RATE_BURST)  # a token may refill meanwhile
        assert len(refused) == len(frames) - len(pongs)
        for frame in refused:
            assert frame["ok"] is False
            assert frame["error"]["code"] == "rate_limited"
        # Every message is answered once, a refusal echoing the ref like any error reply.
        assert sorted(frame["ref"] for frame in frames) == list(range(RATE_BURST + 2))
        # Tokens come back at RATE_LIMIT per second.
        deadline = Deadline(DEADLINE)
        while True:
            # One token's refill time between tries: the pace the rule sets, not a wait.
            await asyncio.sleep(1 / RATE_LIMIT)
            await send_json(ws, {"type": "ping", "ref": "again"})
            frame = await recv_json(ws)
            if frame["type"] == "pong" or deadline.expired():
                break
        assert frame == {"type": "pong", "ref": "again"}


async def test_ignoring_rate_limited_closes_4429(gateway: ManagedProcess) -> None:
    """A client that goes on sending after RT_RATE_BURST refusals in a row is closed with 4429."""
    async with await connect_user(gateway.ws_url, "alice") as ws:
        for n in range(4 * RATE_BURST):
            await send_json(ws, {"type": "ping", "ref": n})
        frames, code, _ = await read_until_close(ws)
    refused = [frame for frame in frames if frame["type"] == "reply"]
    assert all(frame["error"]["code"] == "rate_limited" for frame in refused), refused
    assert code == 4429
    assert len(refused) == RATE_BURST
    assert await gateway.metric("rt_gateway_closes_total", {"code": "4429"}) >= 1


async def test_max_inflight_refuses_extra_requests(gateway: ManagedProcess) -> None:
    """A request beyond RT_MAX_INFLIGHT awaiting replies is refused; later ones pass again."""
    async with await connect_user(gateway.ws_url, "alice") as ws:
        for n in range(MAX_INFLIGHT):
            await send_json(ws, {"type": "chat.slow", "delay": 0.3, "ref": f"slow-{n}"})
        await send_json(ws, {"type": "chat.echo", "ref": "extra"})
        frames = [await recv_json(ws) for _ in range(MAX_INFLIGHT + 1)]
        assert frames[0]["ref"] == "extra"
        assert frames[0]["ok"] is False
        assert frames[0]["error"]["code"] == "rate_limited"
        assert [(f["ref"], f["ok"]) for f in frames[1:]] == [
            (f"slow-{n}", True) for n in range(MAX_INFLIGHT)
        ]
        reply = await call(ws, {"type": "chat.echo", "ref": "after"})
        assert reply["ok"] is True


async def test_max_subscriptions_refuses_extra_channels(gateway: ManagedProcess) -> None:
    """A subscription beyond RT_MAX_SUBSCRIPTIONS gets too_many_subscriptions; freeing one helps."""
    channels = [f"presence:many-{uuid.uuid4().hex[:8]}-{n}" for n in range(MAX_SUBSCRIPTIONS + 1)]
    async with await connect_user(gateway.ws_url, "alice") as ws:
        for n, channel in enumerate(channels[:-1]):
            reply = await call(ws, {"type": "subscribe", "channel": channel, "ref": n})
            assert reply["ok"] is True
        extra = {"type": "subscribe", "channel": channels[-1], "ref": "extra"}
        reply = await call(ws, extra)
        assert reply["ok"] is False
        assert reply["error"]["code"] == "too_many_subscriptions"
        reply = await call(ws, {"type": "unsubscribe", "channel": channels[0], "ref": "u"})
        assert reply["ok"] is True
        assert (await call(ws, extra))["ok"] is True


async def test_max_connections_closes_1013(gateway: ManagedProcess) -> None:
    """A connection beyond RT_MAX_CONNECTIONS is closed with 1013; a freed slot is reusable."""
    clients = [await connect_user(gateway.ws_url, f"user{n}") for n in range(MAX_CONNECTIONS)]
    try:
        async with await connect(gateway.ws_url) as extra:
            code, _ = await expect_close(extra)
        assert code == 1013
        assert await gateway.metric("rt_gateway_closes_total", {"code": "1013"}) >= 1
        await clients.pop().close()

        async def slot_free() -> bool:
            return await gateway.metric("rt_gateway_connections") < MAX_CONNECTIONS

        await wait_until(slot_free, what="a connection slot freed")
        async with await connect_user(gateway.ws_url, "late") as ws:
            await assert_open(ws)
    finally:
        for client in clients:
            await client.close()


async def _read_events(ws: ClientConnection, into: list[Frame], count: int) -> None:
    while len(into) < count:
        frame = await recv_json(ws, within=3 * DEADLINE)
        if frame["type"] == "event":
            into.append(frame)


async def test_slow_reader_is_closed_4408_while_readers_keep_receiving(
    outbox_gateway: ManagedProcess, bus: Redis
) -> None:
    """A client that stops reading is closed with 4408; a reading client gets every event."""
    gateway = outbox_gateway
    channel = f"presence:firehose-{uuid.uuid4().hex[:8]}"
    payload = "x" * 16_384
    chunk, max_events = 16, 2_000
    reader = await connect_user(gateway.ws_url, "reader")
    stalled = await StalledClient.open(gateway.ws_url, make_token("stalled"))
    try:
        assert (await stalled.recv_json())["type"] == "welcome"
        await stalled.send_json({"type": "subscribe", "channel": channel, "ref": "s"})
        assert (await stalled.recv_json())["ok"] is True
        assert (await call(reader, {"type": "subscribe", "channel": channel, "ref": "s"}))["ok"]
        await gateway.metric_reaches("rt_gateway_subscriptions", 2)
        # From here on the stalled client reads nothing until the end of the test.
        received: list[Frame] = []
        published = 0

        async def connections() -> float:
            return await gateway.metric("rt_gateway_connections")

        while published < max_events:
            for _ in range(chunk):
                event = Event(channel, "tick", {"i": published, "pad": payload})
                await publish(bus, event)
                published += 1
            # Keep the reader caught up, so that only the stalled client falls behind.
            await _read_events(reader, received, published)
            if await connections() < 2:
                break
        assert await connections() == 1, f"the stalled client was not closed after {published}"
        for _ in range(chunk):  # the gateway goes on serving the reader
            await publish(bus, Event(channel, "tick", {"i": published, "pad": payload}))
            published += 1
        await _read_events(reader, received, published)
        assert [frame["data"]["i"] for frame in received] == list(range(published))
        await assert_open(reader)
        # What the gateway had queued is still in the socket, then its close frame.
        assert await stalled.read_until_closed(within=3 * DEADLINE) == 4408
        assert await gateway.metric("rt_gateway_closes_total", {"code": "4408"}) == 1
        assert await gateway.metric("rt_gateway_outbox_dropped_frames_total") >= 1
    finally:
        stalled.close()
        await reader.close()
