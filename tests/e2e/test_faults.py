"""Faults: the gateway stopped, Redis restarted, no service instance running."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import time
import uuid

import pytest
from redis.asyncio import Redis

from common.envelope import Event
from devtools.net import free_port
from devtools.redis_server import RedisServer
from tests.e2e.conftest import Launcher
from tests.support.client import (
    DEADLINE,
    StalledClient,
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
from tests.support.owners import publish
from tests.support.processes import (
    START_TIMEOUT,
    ManagedProcess,
    start_gateway,
    wait_all_ready,
)
from tests.support.registry import announce_built_ins
from tests.support.stub_service import handled_key
from tests.support.waiting import MS, Deadline, wait_until


REQUEST_TIMEOUT = 1.0
SHUTDOWN_GRACE = 3.0
#: How long the gateway and the stub may take to find Redis again (their backoff caps at 2 s).
RECOVERY = 15_000 * MS


@pytest.fixture(scope="module")
def processes(launcher: Launcher) -> tuple[ManagedProcess, ManagedProcess]:
    """A gateway with a short request timeout, and a stub chat service behind it."""
    gateway = launcher.gateway({"RT_REQUEST_TIMEOUT": str(REQUEST_TIMEOUT)}, wait=False)
    stub = launcher.stub("chat", wait=False)
    wait_all_ready([gateway, stub])
    return gateway, stub


@pytest.fixture(scope="module")
def gateway(processes: tuple[ManagedProcess, ManagedProcess]) -> ManagedProcess:
    return processes[0]


async def test_sigterm_closes_connections_1012_and_exits_0(launcher: Launcher) -> None:
    """On SIGTERM the gateway closes every connection with 1012 and exits 0 within the grace."""
    gateway = launcher.gateway({"RT_SHUTDOWN_GRACE": str(SHUTDOWN_GRACE)})
    subscribed = await connect_user(gateway.ws_url, "alice")
    anonymous = await connect(gateway.ws_url)
    # A client that never reads cannot answer the close: it must not hold the shutdown.
    stalled = await StalledClient.open(gateway.ws_url, make_token("stalled"))
    try:
        reply = await call(subscribed, {"type": "subscribe", "channel": "presence:x", "ref": 1})
        assert reply["ok"] is True
        assert (await stalled.recv_json())["type"] == "welcome"
        started = time.monotonic()
        gateway.signal(signal.SIGTERM)
        for ws in (subscribed, anonymous):
            code, _ = await expect_close(ws)
            assert code == 1012
        exit_code = await asyncio.to_thread(gateway.wait, SHUTDOWN_GRACE + 2)
        assert exit_code == 0, gateway.describe()
        assert time.monotonic() - started < SHUTDOWN_GRACE + 1
        assert await stalled.read_until_closed() == 1012
    finally:
        stalled.close()
        await subscribed.close()
        await anonymous.close()
        gateway.stop()


async def test_gateway_started_before_redis_becomes_ready_when_redis_starts(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A gateway started while its Redis is down answers /readyz 503, then 200 once it is up."""
    server = RedisServer(port=free_port())
    gateway = start_gateway(
        server.url,
        log_dir=tmp_path_factory.mktemp("early-gateway"),
        gateway_id="gw-faults-early",
        wait=False,
        announce=False,
    )
    try:

        async def status(expected: int) -> bool:
            return (await gateway.get_async("/readyz"))[0] == expected

        await wait_until(lambda: status(503), within=START_TIMEOUT, what="/readyz 503")
        await asyncio.to_thread(server.start)
        await asyncio.to_thread(announce_built_ins, server.url)
        await wait_until(lambda: status(200), within=RECOVERY, what="/readyz 200")
        async with await connect_user(gateway.ws_url, "alice") as ws:
            # Ready may come of a registry read made before the announcement was written: the
            # namespace is then in force within RT_REGISTRY_POLL (1 s), as documented.
            refs = itertools.count(1)

            async def subscribed() -> bool:
                message = {"type": "subscribe", "channel": "presence:early", "ref": next(refs)}
                return bool((await call(ws, message))["ok"])

            await wait_until(subscribed, within=RECOVERY, what="presence:early subscribed")
        exit_code = await asyncio.to_thread(gateway.stop)
    finally:
        gateway.stop()
        server.stop()
    assert exit_code == 0


async def test_redis_restart_recovers_readiness_subscriptions_and_requests(
    processes: tuple[ManagedProcess, ManagedProcess], redis_server: RedisServer, bus: Redis
) -> None:
    """Across a Redis restart /readyz goes 503 then 200, subscriptions and requests recover."""
    gateway, stub = processes
    channel = f"presence:restart-{uuid.uuid4().hex[:8]}"
    async with await connect_user(gateway.ws_url, "alice") as ws:
        assert (await call(ws, {"type": "subscribe", "channel": channel, "ref": "s"}))["ok"]
        redis_server.stop()

        async def gateway_status(expected: int) -> bool:
            return (await gateway.get_async("/readyz"))[0] == expected

        await wait_until(lambda: gateway_status(503), what="/readyz 503 with Redis down")

        async def stub_status(expected: int) -> bool:
            return (await stub.get_async("/readyz"))[0] == expected

        await wait_until(lambda: stub_status(503), what="the stub's /readyz 503 with Redis down")
        # What /readyz says, /metrics says too, for an alert (rt_ready, checked per scrape).
        assert await gateway.metric("rt_ready") == 0
        assert await stub.metric("rt_ready") == 0
        reconnects = await gateway.metric("rt_gateway_bus_reconnects_total")
        # With the bus down a request fails at once rather than after RT_REQUEST_TIMEOUT.
        started = time.monotonic()
        reply = await call(ws, {"type": "chat.echo", "ref": "down"})
        assert reply["error"]["code"] == "service_unavailable"
        assert time.monotonic() - started < REQUEST_TIMEOUT
        # A subscribe the bus cannot confirm is refused in bounded time, not left hanging
        # in front of the connection's later messages.
        started = time.monotonic()
        other = f"presence:down-{uuid.uuid4().hex[:8]}"
        reply = await call(ws, {"type": "subscribe", "channel": other, "ref": "sub-down"})
        assert reply["error"]["code"] == "service_unavailable"
        assert time.monotonic() - started < REQUEST_TIMEOUT + 1
        await assert_open(ws)
        redis_server.start()
        await wait_until(
            lambda: gateway_status(200), within=RECOVERY, what="/readyz 200 with Redis back"
        )
        # The gateway resubscribes with backoff: publish until an event gets through.
        deadline = Deadline(RECOVERY)
        event = None
        for attempt in range(1000):
            await publish(bus, Event(channel, "back", {"attempt": attempt}))
            try:
                event = await recv_json(ws, within=0.2)
                break
            except AssertionError:
                if deadline.expired():
                    break
        assert event is not None, "no event delivered after the restart"
        assert (event["type"], event["channel"], event["event"]) == ("event", channel, "back")
        assert await gateway.metric("rt_gateway_bus_reconnects_total") >= reconnects + 1
        assert await gateway.metric("rt_ready") == 1

        await wait_until(lambda: stub_status(200), within=RECOVERY, what="the stub ready again")
        reply = await call(ws, {"type": "chat.echo", "ref": "after", "n": 1})
        assert reply["ok"] is True, reply
        assert reply["data"]["echo"] == {"n": 1}


async def test_request_without_instance_is_service_unavailable(gateway: ManagedProcess) -> None:
    """A request to a service with no running instance gets service_unavailable in time."""
    async with await connect_user(gateway.ws_url, "alice") as ws:
        started = time.monotonic()
        reply = await call(ws, {"type": "presence.echo", "ref": "p"}, within=DEADLINE)
        elapsed = time.monotonic() - started
        assert reply["ok"] is False
        assert reply["error"]["code"] == "service_unavailable"
        assert REQUEST_TIMEOUT - 0.1 <= elapsed < REQUEST_TIMEOUT + 2
        await assert_open(ws)


async def test_subscription_without_owner_is_service_unavailable(
    gateway: ManagedProcess,
) -> None:
    """A subscription whose owning service does not answer fails and leaves no subscription."""
    channel = f"auction:lot-{uuid.uuid4().hex[:8]}"
    async with await connect_user(gateway.ws_url, "alice") as ws:
        reply = await call(ws, {"type": "subscribe", "channel": channel, "ref": "s"})
        assert reply["ok"] is False
        assert reply["error"]["code"] == "service_unavailable"
        reply = await call(ws, {"type": "unsubscribe", "channel": channel, "ref": "u"})
        assert reply["error"]["code"] == "not_subscribed"


async def test_request_waits_in_stream_until_an_instance_starts(
    launcher: Launcher, gateway: ManagedProcess, bus: Redis
) -> None:
    """A request nobody answered in time is handled once an instance starts; its reply is late."""
    marker = uuid.uuid4().hex
    late_before = await gateway.metric("rt_gateway_late_replies_total")
    async with await connect_user(gateway.ws_url, "alice") as ws:
        reply = await call(ws, {"type": "bids.echo", "ref": "b", "marker": marker})
        assert reply["error"]["code"] == "service_unavailable"
        launcher.stub("bids")

        async def handled() -> bool:
            records = [json.loads(raw) for raw in await bus.lrange(handled_key("bids"), 0, -1)]
            return any(record["data"].get("marker") == marker for record in records)

        await wait_until(handled, within=2 * DEADLINE, what="the stub handling the old request")

        async def counted_late() -> bool:
            return await gateway.metric("rt_gateway_late_replies_total") > late_before

        await wait_until(counted_late, what="the late reply counted")
        # The client got exactly one reply for its ref: the late one is dropped.
        await send_json(ws, {"type": "bids.echo", "ref": "b2"})
        reply, skipped = await recv_until(ws, lambda frame: frame.get("ref") == "b2")
        assert reply["ok"] is True
        assert skipped == []
