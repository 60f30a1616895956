"""Fixtures of the poll service's tests: the module's Redis, its processes, a bus client.

The poll service is the Node.js one of polls_service/, run as a real process on a real Redis
as its own ACL user; the tests speak to it as a gateway does, through the bus (docs/bus.md),
or through a real gateway.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.polls.support import BusClient, Launcher
from tests.support.launcher import module_processes


@pytest.fixture(scope="module")
def launcher(request: pytest.FixtureRequest, bus_url: str, log_dir: Path) -> Iterator[Launcher]:
    """Starts processes for this module; stops them (SIGTERM, then SIGKILL) when it ends."""
    with module_processes(Launcher, request, bus_url, log_dir) as started:
        yield started


@pytest.fixture
async def client(bus: Redis) -> AsyncIterator[BusClient]:
    """A gateway's side of the bus, with a reply channel of its own."""
    async with BusClient(bus) as started:
        yield started
