"""Health and metrics endpoints of the gateway and of a service process."""

from __future__ import annotations

import uuid

import pytest
from redis.asyncio import Redis

from common.envelope import Event
from common.keys import reply_channel
from tests.e2e.conftest import Launcher
from tests.support.client import call, connect_user, gateway_id_of, recv_json, send_json
from tests.support.owners import owner, publish
from tests.support.processes import ManagedProcess, wait_all_ready
from tests.support.waiting import wait_until


@pytest.fixture(scope="module")
def processes(launcher: Launcher) -> tuple[ManagedProcess, ManagedProcess]:
    """A gateway and a stub chat service."""
    gateway = launcher.gateway(wait=False)
    stub = launcher.stub("chat", wait=False)
    wait_all_ready([gateway, stub])
    return gateway, stub


@pytest.mark.parametrize("which", ["gateway", "service"])
async def test_livez_answers_ok(
    processes: tuple[ManagedProcess, ManagedProcess], which: str
) -> None:
    """/livez answers 200 on the gateway and on a service."""
    process = processes[0] if which == "gateway" else processes[1]
    assert await process.get_async("/livez") == (200, "ok\n")


@pytest.mark.parametrize("which", ["gateway", "service"])
async def test_readyz_answers_ready(
    processes: tuple[ManagedProcess, ManagedProcess], which: str
) -> None:
    """/readyz answers 200 on the gateway and on a service while Redis is up."""
    process = processes[0] if which == "gateway" else processes[1]
    assert await process.get_async("/readyz") == (200, "ready\n")


async def test_gateway_metrics_count_connections_and_messages(
    processes: tuple[ManagedProcess, ManagedProcess],
) -> None:
    """The gateway's /metrics counts open connections, messages in by kind and messages out."""
    gateway = processes[0]
    status, body = await gateway.get_async("/metrics")
    assert status == 200
    for name in (
        "rt_gateway_connections",
        "rt_gateway_messages_out_total",
        "rt_gateway_events_total",
        "rt_gateway_deliveries_total",
        "rt_gateway_late_replies_total",
        "rt_gateway_bus_errors_total",
        "rt_gateway_channels",
    ):
        assert f"\n{name} " in body, name
    pings = await gateway.metric("rt_gateway_messages_in_total", {"kind": "ping"})
    sent = await gateway.metric("rt_gateway_messages_out_total")
    async with await connect_user(gateway.ws_url, "alice") as ws:
        assert await gateway.metric("rt_gateway_connections") == 1
        for n in range(3):
            await send_json(ws, {"type": "ping", "ref": n})
            await recv_json(ws)
        reply = await call(ws, {"type": "chat.echo", "ref": "e"})
        assert reply["ok"] is True
        assert await gateway.metric("rt_gateway_messages_in_total", {"kind": "ping"}) == pings + 3
        # The welcome, three pongs and the reply.
        assert await gateway.metric("rt_gateway_messages_out_total") == sent + 5
        labels = {"service": "chat", "outcome": "ok"}
        assert await gateway.metric("rt_gateway_requests_total", labels) >= 1

    async def closed() -> bool:
        return await gateway.metric("rt_gateway_connections") == 0

    await wait_until(closed, what="the connection count back to 0")


async def test_gateway_metrics_count_bus_errors(
    processes: tuple[ManagedProcess, ManagedProcess], bus: Redis
) -> None:
    """Undecodable bus messages are counted as bus errors and do not stop later deliveries."""
    gateway = processes[0]
    channel = f"presence:junk-{uuid.uuid4().hex[:8]}"
    errors = await gateway.metric("rt_gateway_bus_errors_total")
    async with await connect_user(gateway.ws_url, "alice") as ws:
        assert (await call(ws, {"type": "subscribe", "channel": channel, "ref": "s"}))["ok"]
        await bus.publish(owner(channel).event_channel(channel), b"\xc1 not msgpack")
        await bus.publish(reply_channel(await gateway_id_of(gateway.ws_url)), b"\x93\x01\x02\x03")
        await publish(bus, Event(channel, "fine", {"n": 1}))
        event = await recv_json(ws)
        assert (event["event"], event["data"]) == ("fine", {"n": 1})
    assert await gateway.metric("rt_gateway_bus_errors_total") == errors + 2


async def test_service_metrics_count_handled_requests(
    processes: tuple[ManagedProcess, ManagedProcess],
) -> None:
    """The service's /metrics counts the requests it handled, by type and result."""
    gateway, stub = processes
    labels = {"service": "chat", "type": "chat.echo", "result": "ok"}
    before = await stub.metric("rt_service_requests_total", labels)
    async with await connect_user(gateway.ws_url, "alice") as ws:
        assert (await call(ws, {"type": "chat.echo", "ref": 1}))["ok"] is True
    assert await stub.metric("rt_service_requests_total", labels) == before + 1
    status, body = await stub.get_async("/metrics")
    assert status == 200
    assert "rt_service_stream_pending" in body
    assert "rt_service_request_seconds" in body
