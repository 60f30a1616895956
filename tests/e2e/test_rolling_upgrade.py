"""A rolling upgrade of one service: two versions side by side on one stream, nothing lost.

The current bids service and its "next version" (tests/support/upgraded_bids.py: the same
code, whose replies carry one more field) consume ``svc:bids:requests`` in the same consumer
group while clients bid; then the old instance is stopped with SIGTERM, as a deploy does,
in the middle of the traffic. Every bid is answered exactly once, recorded in its auction's
history exactly once, and clients see the new field passed through untouched (docs/bus.md,
"Versions and upgrades").
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from common.keys import request_stream
from tests.bids.support import BidClient, Launcher, create_auction, history
from tests.support.launcher import module_processes
from tests.support.processes import STOP_TIMEOUT, ManagedProcess, wait_all_ready
from tests.support.upgraded_bids import NEW_FIELD
from tests.support.waiting import wait_until


CLIENTS = 6
#: Bids per client: a third before the stop, a third while the old instance stops, a third
#: once it has exited (which only the new version can answer).
PER_CLIENT = 51
#: A stopped instance's pending entries are claimed after this long (RT_CLAIM_IDLE_MS).
_CLAIM = {"RT_CLAIM_IDLE_MS": "1000", "RT_CLAIM_INTERVAL": "0.3"}


@pytest.fixture(scope="module")
def launcher(request: pytest.FixtureRequest, bus_url: str, log_dir: Path) -> Iterator[Launcher]:
    """The bids tests' launcher, for this module's processes."""
    with module_processes(Launcher, request, bus_url, log_dir) as started:
        yield started


@pytest.fixture(scope="module")
def versions(launcher: Launcher) -> tuple[ManagedProcess, ManagedProcess, ManagedProcess]:
    """A gateway, the current bids service, and the next version, all consuming."""
    gateway = launcher.gateway(wait=False)
    old = launcher.bids(_CLAIM, wait=False)
    new = launcher.bids(_CLAIM, wait=False, module="tests.support.upgraded_bids")
    wait_all_ready([gateway, old, new])
    return gateway, old, new


async def test_rolling_upgrade_loses_and_doubles_nothing(
    versions: tuple[ManagedProcess, ManagedProcess, ManagedProcess], bus: Redis
) -> None:
    """Bids during a rolling upgrade are each answered once and recorded once, by either
    version, and the new version's extra reply field reaches the clients."""
    gateway, old, new = versions
    auctions = [f"upgrade-{i}" for i in range(CLIENTS)]
    await asyncio.gather(*(create_auction(new, id=auction) for auction in auctions))
    clients = await asyncio.gather(
        *(BidClient.open(gateway, f"upgrade-bidder{i}") for i in range(CLIENTS))
    )
    third = PER_CLIENT // 3
    at_first_third = 0
    all_at_first_third = asyncio.Event()
    old_exited = asyncio.Event()
    replies: dict[str, list[dict[str, Any]]] = {auction: [] for auction in auctions}
    after_exit: list[dict[str, Any]] = []

    async def bid(client: BidClient, auction: str) -> None:
        nonlocal at_first_third
        for i in range(PER_CLIENT):
            if i == third:
                at_first_third += 1
                if at_first_third == CLIENTS:
                    all_at_first_third.set()
            if i == 2 * third:
                await old_exited.wait()
            reply = await client.place(auction, 100 + 10 * i, f"{auction}-{i}")
            replies[auction].append(reply)
            if old_exited.is_set():
                after_exit.append(reply)

    async def deploy() -> None:
        await all_at_first_third.wait()
        old.signal(signal.SIGTERM)
        assert await asyncio.to_thread(old.wait, STOP_TIMEOUT) == 0, old.describe()
        old_exited.set()

    async with asyncio.timeout(60):
        await asyncio.gather(deploy(), *(bid(c, a) for c, a in zip(clients, auctions, strict=True)))

    for auction in auctions:
        answered = replies[auction]
        assert len(answered) == PER_CLIENT
        assert all(reply["ok"] and reply["data"]["accepted"] for reply in answered), answered
        assert [reply["data"]["seq"] for reply in answered] == list(range(1, PER_CLIENT + 1))
        keys = [event["key"] for event in await history(bus, auction)]
        assert keys == [f"{auction}-{i}" for i in range(PER_CLIENT)]
    every_reply = [reply for answered in replies.values() for reply in answered]
    by_new = [reply for reply in every_reply if reply["data"].get(NEW_FIELD) is True]
    assert 0 < len(by_new) < len(every_reply), "both versions answered"
    assert after_exit
    assert all(reply["data"].get(NEW_FIELD) is True for reply in after_exit)

    async def nothing_pending() -> bool:
        summary: dict[str, Any] = await bus.xpending(request_stream("bids", 0), "bids")
        return int(summary["pending"]) == 0

    await wait_until(nothing_pending, what="every request acknowledged")
    assert new.running
    await asyncio.gather(*(client.close() for client in clients))
