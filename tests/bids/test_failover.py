"""An instance killed with requests pending loses nothing: another claims and judges them once."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest
from redis.asyncio import Redis

from common.keys import request_stream
from tests.bids.support import BidClient, Launcher, create_auction, history
from tests.support.processes import ManagedProcess
from tests.support.waiting import wait_until


BIDDERS = 20
ATTEMPTS = 5


@pytest.fixture(scope="module")
def processes(launcher: Launcher) -> tuple[ManagedProcess, ManagedProcess, ManagedProcess]:
    """A gateway and two bids instances that claim entries idle for more than a second."""
    env = {"RT_CLAIM_IDLE_MS": "1000", "RT_CLAIM_INTERVAL": "0.3"}
    gateways, (doomed, survivor) = launcher.stack(instances=2, bids_env=env)
    return gateways[0], doomed, survivor


async def _pending_of(bus: Redis, consumer: str) -> int:
    summary: dict[str, Any] = await bus.xpending(request_stream("bids", 0), "bids")
    for entry in summary.get("consumers") or ():
        if entry["name"] in (consumer, consumer.encode()):
            return int(entry["pending"])
    return 0


async def test_sigkill_with_requests_pending(
    processes: tuple[ManagedProcess, ManagedProcess, ManagedProcess], bus: Redis, name: str
) -> None:
    """Bids delivered to a frozen then SIGKILLed instance are claimed and accepted exactly once."""
    gateway, doomed, survivor = processes
    consumer = f"bids-{doomed.env['RT_INSTANCE_ID']}"
    clients = await asyncio.gather(
        *(BidClient.open(gateway, f"{name}-bidder{i}") for i in range(BIDDERS))
    )
    # Frozen while blocked in XREADGROUP, the instance still gets entries delivered to it,
    # which stay pending under its name: exactly what a crash mid-work leaves behind. But
    # its block ends after RT_CLAIM_INTERVAL, and it may be between two reads when frozen:
    # then the survivor answers every bid, and the freeze is tried again on new auctions.
    for attempt in range(ATTEMPTS):
        auctions = [f"{name}-{attempt}-{i}" for i in range(BIDDERS)]
        await asyncio.gather(*(create_auction(survivor, id=auction) for auction in auctions))
        doomed.signal(signal.SIGSTOP)
        futures = [
            await client.send(
                {"type": "bids.place", "auction": auction, "amount": 100, "key": f"k-{auction}"}
            )
            for client, auction in zip(clients, auctions, strict=True)
        ]

        async def stranded_or_all_answered(sent: list[asyncio.Future[Any]] = futures) -> bool:
            return await _pending_of(bus, consumer) > 0 or all(f.done() for f in sent)

        await wait_until(stranded_or_all_answered, "bids pending at the frozen instance")
        if await _pending_of(bus, consumer) > 0:
            break
        doomed.signal(signal.SIGCONT)
    else:
        pytest.fail(f"no bid reached the frozen instance in {ATTEMPTS} attempts")
    stranded = await _pending_of(bus, consumer)
    doomed.signal(signal.SIGKILL)
    assert doomed.wait(10.0) == -signal.SIGKILL

    async with asyncio.timeout(15):
        replies = [await future for future in futures]
    assert all(reply["ok"] and reply["data"]["seq"] == 1 for reply in replies), replies
    for auction in auctions:
        assert [event["key"] for event in await history(bus, auction)] == [f"k-{auction}"]

    async def nothing_pending() -> bool:
        summary: dict[str, Any] = await bus.xpending(request_stream("bids", 0), "bids")
        return int(summary["pending"]) == 0

    await wait_until(nothing_pending, what="every request acknowledged")
    assert stranded >= 1
    # Retries after the failover get the verdicts the survivor gave.
    for client, auction, reply in zip(clients, auctions, replies, strict=True):
        again = await client.place(auction, 100, f"k-{auction}")
        assert again["data"] == reply["data"]
    await asyncio.gather(*(client.close() for client in clients))
