"""Fixtures of the presence tests: a Redis emptied once per module, and real processes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path

import pytest
import redis
from redis.asyncio import Redis

from common.redis_server import RedisServer
from tests.presence.support import Cluster
from tests.support.processes import live_processes


@pytest.fixture(scope="session")
def presence_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the logs of the processes these tests start are written."""
    return tmp_path_factory.mktemp("presence-logs")


@pytest.fixture(scope="module")
def bus_url(redis_server: RedisServer) -> str:
    """The session's Redis, started if a test left it stopped, emptied for this module.

    Not per test: a flush under running services would delete their consumer groups.
    """
    if not redis_server.is_running:
        redis_server.start()
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    return redis_server.url


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, bus_url: str, presence_logs: Path) -> Iterator[Cluster]:
    """Starts this module's processes; stops them (SIGTERM, then SIGKILL) when it ends."""
    prefix = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    started = Cluster(bus_url, presence_logs, prefix)
    try:
        yield started
    finally:
        started.stop_all()


@pytest.fixture
async def bus(bus_url: str) -> AsyncIterator[Redis]:
    """An asyncio client on the test Redis, to read presence state."""
    client = Redis.from_url(bus_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On a failure, attach the log tail of every process still running to the report."""
    report = yield
    if report.failed:
        for process in live_processes():
            report.sections.append((f"log of {process.name}", process.describe()))
    return report
