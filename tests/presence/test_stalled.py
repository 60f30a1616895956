"""A client that stops reading: closed by the keepalive, released, then cut off in bounded time.

The gateway pings every PING_INTERVAL seconds and closes a client that does not answer
within PING_TIMEOUT with 1011. A client that stopped reading never reads that close either,
so the gateway must also cut the connection RT_CLOSE_TIMEOUT seconds later, rather than
wait for a socket buffer that never drains.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from redis.asyncio import Redis

from common.envelope import Event
from tests.presence.support import Cluster, Watcher
from tests.support import owners
from tests.support.client import StalledClient, make_token
from tests.support.processes import ManagedProcess, wait_all_ready
from tests.support.waiting import wait_until


PING_INTERVAL = 4.0
PING_TIMEOUT = 1.0
CLOSE_TIMEOUT = 2.0
#: The documented bound: released after the keepalive, cut off a close timeout later.
RELEASED_WITHIN = PING_INTERVAL + PING_TIMEOUT
CUT_WITHIN = RELEASED_WITHIN + CLOSE_TIMEOUT
#: Scheduling noise of a busy 2-core machine on top of those bounds.
SLACK = 1.5
#: Events that fill the kernel's send buffer of the connection first (it grows to a few MB
#: on loopback), so that what follows stays in the gateway's own buffer.
FILL_BYTES = 65536
#: Then 80 KB/s: 4 KB every 50 ms.
FEED_BYTES = 4096
FEED_INTERVAL = 0.05


@pytest.fixture(scope="module")
def gateway(cluster: Cluster) -> ManagedProcess:
    """A gateway with a short keepalive, the presence service, and a stub bids owner."""
    started = cluster.gateway(
        {
            "RT_PING_INTERVAL": str(PING_INTERVAL),
            "RT_PING_TIMEOUT": str(PING_TIMEOUT),
            "RT_CLOSE_TIMEOUT": str(CLOSE_TIMEOUT),
            # Far more than the test feeds: it is the keepalive that closes the client.
            "RT_OUTBOX_MAX_BYTES": str(64 * 1024 * 1024),
            "RT_OUTBOX_MAX_MESSAGES": "100000",
        },
        wait=False,
    )
    others = [cluster.presence(wait=False), cluster.owner("bids", wait=False)]
    wait_all_ready([started, *others])
    return started


async def test_a_stalled_reader_is_released_and_cut_off_within_the_bound(
    gateway: ManagedProcess, bus: Redis
) -> None:
    """A client that stops reading while fed leaves the counts and presence, then its socket."""
    channel = f"auction:stalled-{uuid.uuid4().hex[:8]}"
    user = f"stalled-{uuid.uuid4().hex[:8]}"
    watcher = await Watcher.open(gateway.ws_url, channel)
    stalled = await StalledClient.open(gateway.ws_url, make_token(user))
    feeding = True

    async def publish(n: int, size: int) -> None:
        await owners.publish(bus, Event(channel, "tick", {"pad": "x" * size}, position=str(n)))

    async def feed(first: int) -> None:
        for n in range(first, first + int(3 * CUT_WITHIN / FEED_INTERVAL)):
            if not feeding:
                return
            await publish(n, FEED_BYTES)
            await asyncio.sleep(FEED_INTERVAL)

    feeder: asyncio.Task[None] | None = None
    try:
        assert (await stalled.recv_json())["type"] == "welcome"
        await stalled.send_json({"type": "subscribe", "channel": channel, "ref": "s"})
        assert (await stalled.recv_json())["ok"] is True
        await watcher.until(lambda events: ("join", user) in events)
        before = await gateway.metric("rt_gateway_connections")
        # From here on the stalled client reads nothing, nor answers pings.
        stopped = time.monotonic()
        sent = 0
        delivered = await gateway.metric("rt_gateway_deliveries_total")

        async def fill() -> None:
            nonlocal sent
            sent += 1
            await publish(sent, FILL_BYTES)
            await gateway.metric_reaches("rt_gateway_deliveries_total", delivered + sent)

        await stalled.fill_server_kernel(gateway.port, fill)
        assert time.monotonic() - stopped < PING_INTERVAL, "filling took the keepalive's time"
        feeder = asyncio.create_task(feed(sent + 1))

        async def released() -> bool:
            return await gateway.metric("rt_gateway_connections") == before - 1

        await wait_until(
            released,
            within=RELEASED_WITHIN + SLACK - (time.monotonic() - stopped),
            what="the connection released",
        )
        await watcher.until(lambda events: ("leave", user) in events, within=SLACK)

        async def cut_off() -> bool:
            end = await asyncio.to_thread(stalled.server_end, gateway.port)
            return end is None or not end[0]

        await wait_until(
            cut_off,
            within=max(0.1, CUT_WITHIN + SLACK - (time.monotonic() - stopped)),
            what="the gateway's socket of the stalled client closed",
        )
        assert await gateway.metric("rt_gateway_closes_total", {"code": "1011"}) == 1
    finally:
        feeding = False
        if feeder is not None:
            await feeder
        stalled.close()
        await watcher.close()
