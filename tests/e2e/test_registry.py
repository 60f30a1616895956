"""The namespace registry end to end: a service the gateway never heard of joins, is routed
to with no gateway restart, keeps its namespace against a rival, and is refused once gone."""

from __future__ import annotations

import asyncio

import pytest
import redis
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection

from common.envelope import Event
from common.keys import REGISTRY_OWNERS, request_stream
from common.service import STARTUP_FAILURE
from devtools.net import free_port
from devtools.redis_server import RedisServer
from tests.e2e.conftest import Launcher
from tests.support.client import Frame, call, connect_user, recv_until
from tests.support.orders_service import NAMESPACE, POSITION
from tests.support.owners import publish
from tests.support.processes import ManagedProcess, start_process
from tests.support.waiting import MS, wait_until


MODULE = "tests.support.orders_service"
#: The gateway reads the registry this often (seconds); the services' leases are short, so
#: that a stopped one is known dead soon.
POLL = 0.2
TTL = 1.5


@pytest.fixture(scope="module")
def gateway(launcher: Launcher) -> ManagedProcess:
    """A gateway started before the orders service exists, with the built-ins announced."""
    return launcher.gateway({"RT_REGISTRY_POLL": str(POLL)})


@pytest.fixture(scope="module")
def orders(launcher: Launcher, gateway: ManagedProcess) -> ManagedProcess:
    """The orders service, started once the gateway runs (and stopped by the last test)."""
    return launcher.service(MODULE, "orders", {"RT_REGISTRY_TTL": str(TTL)})


async def _answer(ws: ClientConnection, frame: Frame) -> Frame:
    return await call(ws, {**frame, "ref": "r"})


async def test_an_unknown_service_is_unknown_before_it_announces(gateway: ManagedProcess) -> None:
    """Before any announcement, orders.get is unknown_type and orders:42 an unknown namespace."""
    async with await connect_user(gateway.ws_url, "alice") as ws:
        reply = await _answer(ws, {"type": "orders.get", "order": "42"})
        assert reply["error"]["code"] == "unknown_type"
        reply = await _answer(ws, {"type": "subscribe", "channel": "orders:42"})
        assert reply["error"]["code"] == "invalid_channel"
        assert "unknown namespace 'orders'" in reply["error"]["message"]


async def test_a_new_service_is_routed_to_without_a_gateway_restart(
    gateway: ManagedProcess, orders: ManagedProcess, bus: Redis
) -> None:
    """Once announced, the running gateway routes orders.get and subscribes to orders:42 by
    asking the new owner, and delivers the channel's events."""
    async with await connect_user(gateway.ws_url, "alice") as ws:

        async def answered() -> bool:
            reply = await _answer(ws, {"type": "orders.get", "order": "42"})
            return reply["ok"] is True

        # Within one poll of the announcement (the service announced before it was ready).
        await wait_until(answered, "orders.get answered", within=(POLL * 1000 + 2000) * MS)
        reply = await _answer(ws, {"type": "orders.get", "order": "42"})
        assert reply["data"] == {"order": "42", "status": "open", "by": "orders"}
        # The announced fields hold at the gateway: the service never sees this one.
        reply = await _answer(ws, {"type": "orders.get", "order": "42", "extra": 1})
        assert (reply["error"]["code"], reply["error"]["field"]) == ("bad_request", "extra")
        # Owner access, with history: the owner's answer (its position) grants it.
        reply = await _answer(ws, {"type": "subscribe", "channel": "orders:42"})
        assert reply["data"] == {"channel": "orders:42", "position": POSITION}
        await publish(bus, Event("orders:42", "shipped", {"carrier": "x"}, position="8-0"))
        event, _ = await recv_until(ws, lambda frame: frame.get("type") == "event")
        assert (event["channel"], event["event"], event["data"]) == (
            "orders:42",
            "shipped",
            {"carrier": "x"},
        )


async def test_a_second_claim_of_the_namespace_is_refused_loudly(
    launcher: Launcher, gateway: ManagedProcess, orders: ManagedProcess, bus: Redis
) -> None:
    """A rival service claiming orders exits 3 naming the owner, having read nothing, and the
    owner keeps the namespace."""
    env = {"RT_REGISTRY_TTL": str(TTL)}
    rival = launcher.service(MODULE, "rival", env, wait=False, args=["--service", "rival"])
    code = rival.wait(timeout=10_000 * MS)
    assert code == STARTUP_FAILURE, rival.describe()
    # It never read its stream (the worker starts once announced).
    assert await bus.exists(request_stream("rival", 0)) == 0
    log = rival.log_path.read_text()
    assert "namespace 'orders' is owned by 'orders'" in log, log
    assert await bus.hget(REGISTRY_OWNERS, NAMESPACE) == b"orders"
    async with await connect_user(gateway.ws_url, "alice") as ws:
        reply = await _answer(ws, {"type": "orders.get", "order": "1"})
        assert reply["data"]["by"] == "orders"


async def test_a_stopped_service_is_unavailable_once_its_lease_passes(
    gateway: ManagedProcess, orders: ManagedProcess, bus: Redis
) -> None:
    """After the service stops and its lease passes, its requests and subscribes answer
    service_unavailable at once (not unknown_type), and nothing is appended to its stream."""
    assert orders.stop() == 0
    async with await connect_user(gateway.ws_url, "alice") as ws:

        async def refused() -> bool:
            reply = await _answer(ws, {"type": "orders.get", "order": "42"})
            return reply["ok"] is False and reply["error"]["code"] == "service_unavailable"

        await wait_until(refused, "orders.get refused", within=((TTL + POLL) * 1000 + 3000) * MS)
        length = await bus.xlen(request_stream("orders", 0))
        reply = await _answer(ws, {"type": "orders.get", "order": "42"})
        assert reply["error"] == {
            "code": "service_unavailable",
            "message": "service 'orders' is not running",
        }
        reply = await _answer(ws, {"type": "subscribe", "channel": "orders:43"})
        assert reply["error"]["code"] == "service_unavailable"
        assert await bus.xlen(request_stream("orders", 0)) == length
    # The owner vanished but keeps its namespace until an operator releases it.
    assert await bus.hget(REGISTRY_OWNERS, NAMESPACE) == b"orders"


async def test_a_claim_refused_once_redis_answers_is_fatal_too(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Started while Redis is down, a service waits unannounced and unready; once Redis
    answers and the registry refuses its claim, it exits 3, having read nothing."""
    # The owner is in Redis's data before the service can ever reach it: the claim is
    # refused at its first try once Redis is back.
    server = RedisServer(port=free_port(), appendonly=True)
    server.start()
    with redis.Redis.from_url(server.url) as client:
        client.hset(REGISTRY_OWNERS, NAMESPACE, "orders")
    server.stop()
    rival = start_process(
        "rival-late",
        MODULE,
        log_dir=tmp_path_factory.mktemp("late-rival"),
        env={"RT_REDIS_URL": server.url, "RT_INSTANCE_ID": "late"},
        args=["--service", "rival"],
        wait=False,
    )
    try:
        await wait_until(lambda: "could not announce" in rival.log_tail(), "a retry")

        async def unready() -> bool:
            return (await rival.get_async("/readyz"))[0] == 503

        await wait_until(unready, "/readyz 503")
        await asyncio.to_thread(server.start)
        code = await asyncio.to_thread(rival.wait, 10_000 * MS)
        assert code == STARTUP_FAILURE, rival.describe()
        assert "namespace 'orders' is owned by 'orders'" in rival.log_tail()
        with redis.Redis.from_url(server.url) as client:
            assert client.exists(request_stream("rival", 0)) == 0
    finally:
        rival.stop()
        server.stop()
        server.remove_data()
