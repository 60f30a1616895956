"""Fixtures of the bids tests: a Redis emptied once per module, processes, clients.

Processes are module-scoped (each module starts its own gateways and bids instances through
:class:`Launcher`). Redis is flushed when a module starts, never under running services (a
flush deletes the consumer group); tests of one module stay apart by using auctions and users
of their own.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path

import pytest
import redis
from redis.asyncio import Redis

from common.redis_server import RedisServer
from tests.bids.support import Launcher
from tests.support.processes import live_processes


@pytest.fixture(scope="session")
def bids_log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the logs of the processes the bids tests start are written."""
    return tmp_path_factory.mktemp("bids-logs")


@pytest.fixture(scope="module")
def bids_redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, started if a test left it stopped, and emptied for this module."""
    if not redis_server.is_running:
        redis_server.start()
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    return redis_server.url


@pytest.fixture(scope="module")
def launcher(
    request: pytest.FixtureRequest, bids_redis_url: str, bids_log_dir: Path
) -> Iterator[Launcher]:
    """Starts processes for this module; stops them (SIGTERM, then SIGKILL) when it ends."""
    prefix = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    started = Launcher(bids_redis_url, bids_log_dir, prefix)
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture
async def bus(bids_redis_url: str) -> AsyncIterator[Redis]:
    """An asyncio Redis client on the test Redis, to read the service's state."""
    client = Redis.from_url(bids_redis_url)
    try:
        yield client
    finally:
        await client.aclose()


_names = itertools.count(1)


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """A name unique in the session, for the auctions and users of one test."""
    return f"t{next(_names)}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On a failure, attach the log tail of every process still running to the report."""
    report = yield
    if report.failed:
        for process in live_processes():
            report.sections.append(
                (f"log of {process.name} ({process.log_path})", process.describe())
            )
    return report
