"""/livez, /readyz and /metrics of the bids service, and its recovery after a Redis restart."""

from __future__ import annotations

import pytest

from devtools.redis_server import RedisServer
from tests.bids.support import BidClient, Launcher, create_auction
from tests.support.processes import ManagedProcess
from tests.support.waiting import wait_until


@pytest.fixture(scope="module")
def processes(launcher: Launcher) -> tuple[ManagedProcess, ManagedProcess]:
    """A gateway and a bids instance."""
    gateways, instances = launcher.stack()
    return gateways[0], instances[0]


async def test_live_ready_and_metrics(
    processes: tuple[ManagedProcess, ManagedProcess], name: str
) -> None:
    """Health answers, and /metrics counts bids by result with latency and backlog figures."""
    gateway, instance = processes
    assert await instance.get_async("/livez") == (200, "ok\n")
    assert await instance.get_async("/readyz") == (200, "ready\n")
    await create_auction(instance, id=name)
    client = await BidClient.open(gateway, f"{name}-ann")
    assert (await client.place(name, 100, "k1"))["ok"]
    assert (await client.place(name, 100, "k2"))["error"]["code"] == "bid_too_low"
    assert (await client.place(name, 100, "k1"))["ok"]
    await client.close()
    place = {"service": "bids", "type": "bids.place"}
    assert await instance.metric("rt_service_requests_total", {**place, "result": "ok"}) == 2
    bid_too_low = {**place, "result": "bid_too_low"}
    assert await instance.metric("rt_service_requests_total", bid_too_low) == 1
    assert await instance.metric("rt_service_request_seconds_count", place) == 3
    assert await instance.metric("rt_bids_placed_total", {"result": "accepted"}) == 2
    assert await instance.metric("rt_bids_placed_total", {"result": "bid_too_low"}) == 1
    assert await instance.metric("rt_bids_replayed_total") == 1
    assert await instance.metric("rt_bids_queue_seconds_count") == 3

    async def backlog_reported() -> bool:
        _, text = await instance.get_async("/metrics")
        return all(
            f'{gauge}{{service="bids"}}' in text
            for gauge in ("rt_service_stream_pending", "rt_service_stream_lag")
        )

    await wait_until(backlog_reported, what="stream pending and lag gauges")
    assert await instance.metric("rt_service_stream_pending", {"service": "bids"}) == 0


async def test_not_ready_while_redis_is_down_then_bidding_again(
    processes: tuple[ManagedProcess, ManagedProcess], redis_server: RedisServer, name: str
) -> None:
    """Without Redis /readyz answers 503 (/livez 200); after a restart bids are judged again."""
    gateway, instance = processes
    redis_server.stop()
    try:

        async def unready() -> bool:
            return (await instance.get_async("/readyz"))[0] == 503

        await wait_until(unready, within=10.0, what="/readyz 503")
        assert (await instance.get_async("/livez"))[0] == 200
    finally:
        redis_server.start()

    async def ready() -> bool:
        statuses = [(await process.get_async("/readyz"))[0] for process in (gateway, instance)]
        return statuses == [200, 200]

    await wait_until(ready, within=15.0, what="gateway and bids ready again")
    # The restarted Redis is empty: no consumer group, no scripts, no auctions.
    await create_auction(instance, id=name)
    client = await BidClient.open(gateway, f"{name}-ann")
    reply = await client.place(name, 100, "after-restart", within=15.0)
    assert reply["ok"], reply
    assert reply["data"]["seq"] == 1
    await client.close()
