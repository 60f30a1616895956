"""The system of the cluster tests: gateways, bids instances of three partitions and a chat
instance on the session's Redis Cluster, and the clients and traffic they serve."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from bids_service.keys import BidKeys
from common.keys import Partitions
from common.redis_client import RedisClient
from tests.bids.support import BidClient, Launcher
from tests.chat.support import name
from tests.e2e.traffic import Bidder, Poster, Traffic
from tests.support.launcher import module_processes
from tests.support.processes import ManagedProcess, wait_all_ready
from tests.support.waiting import wait_until


__all__ = [
    "BIDS",
    "INCREMENT",
    "KEYS",
    "STARTING_PRICE",
    "Stack",
    "opened_clients",
    "routed_to_every_partition",
    "started_stack",
    "traffic_of",
]

BIDS = Partitions("bids", 3)
KEYS = BidKeys(BIDS)
#: Auctions of the traffic: :func:`tests.bids.support.create_auction`'s defaults.
STARTING_PRICE, INCREMENT = 100, 10
_CHAT_ENV = {"RT_CHAT_SEND_RATE": "1000", "RT_CHAT_SEND_BURST": "1000"}


@dataclass(frozen=True, slots=True)
class Stack:
    gateways: list[ManagedProcess]
    bids: list[ManagedProcess]
    chat: ManagedProcess

    @property
    def processes(self) -> list[ManagedProcess]:
        return [*self.gateways, *self.bids, self.chat]


@contextmanager
def started_stack(
    request: pytest.FixtureRequest,
    bus_url: str,
    log_dir: Path,
    *,
    gateways: int,
    bids: int,
    gateway_env: Mapping[str, str] | None = None,
) -> Iterator[Stack]:
    """The body of a module's fixture: ``gateways`` gateways, ``bids`` bids instances of
    :data:`BIDS`'s partitions and one chat instance, all stopped at its end."""
    with module_processes(Launcher, request, bus_url, log_dir) as launcher:
        # The gateways first: each announces the services' stand-ins (one partition),
        # which the services then replace with their own announcements.
        started = [launcher.gateway(gateway_env, wait=False) for _ in range(gateways)]
        wait_all_ready(started)
        env = {"RT_BIDS_PARTITIONS": str(BIDS.count)}
        instances = [launcher.bids(env, wait=False) for _ in range(bids)]
        chat = launcher.service("chat_service", "chat", _CHAT_ENV, wait=False)
        wait_all_ready([*instances, chat])
        yield Stack(started, instances, chat)


@asynccontextmanager
async def opened_clients(stack: Stack, count: int) -> AsyncIterator[list[BidClient]]:
    """``count`` connections of users of their own, through the gateways in turns."""
    gateways = stack.gateways
    opened = await asyncio.gather(
        *(BidClient.open(gateways[n % len(gateways)], name(f"user{n}")) for n in range(count))
    )
    try:
        yield list(opened)
    finally:
        await asyncio.gather(*(client.close() for client in opened))


async def _entries_added(bus: RedisClient, stream: str) -> int:
    return int((await bus.xinfo_stream(stream))["entries-added"])


async def routed_to_every_partition(
    bus: RedisClient, clients: list[BidClient], auctions: list[str]
) -> None:
    """Wait until each client's gateway appends each auction's requests to the stream of its
    partition: it reads the registry, where the bids instances replaced their stand-in of
    one partition, every second. Call it before subscribing: a gateway subscribes a channel
    on the event channel of the partition it routes the channel to at the time."""
    for client in clients:

        async def routed(client: BidClient = client) -> bool:
            before = [await _entries_added(bus, stream) for stream in BIDS.streams()]
            for auction in auctions:
                await client.request({"type": "bids.get", "auction": auction})
            after = [await _entries_added(bus, stream) for stream in BIDS.streams()]
            return all(a > b for a, b in zip(after, before, strict=True))

        await wait_until(routed, "requests routed to every bids partition")


def traffic_of(clients: list[BidClient], room: str, auctions: list[str]) -> Traffic:
    """Two posters in ``room`` (``clients[0:2]``), and bidders on ``auctions`` in turns
    (the other clients)."""
    posters = [Poster(client, room) for client in clients[:2]]
    bidders = [
        Bidder(client, auctions[n % len(auctions)], STARTING_PRICE, INCREMENT, seed=n)
        for n, client in enumerate(clients[2:])
    ]
    return Traffic(bidders, posters)
