"""Fixtures every test may use: a private Redis server for the session, and process logs.

Tests that run processes (gateways, services) share a Redis flushed once per module
(:func:`bus_url`), never per test: a flush under a running service would delete its consumer
group. Tests of one module stay apart by using names of their own. Processes connect to it as
their ACL users; the tests' own clients are its default user.

A private Redis Cluster (:func:`redis_cluster`, 3 masters and 3 replicas) starts only for the
tests that ask for it, each marked ``cluster`` by :func:`pytest_collection_modifyitems`:
``pytest -m "not cluster"`` leaves out its few seconds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path

import pytest
import redis
from redis.asyncio import Redis

from devtools.redis_cluster import LocalCluster
from devtools.redis_server import RedisServer
from tests.support.processes import live_processes
from tests.support.redis_users import TestUsers, acl_enabled, acl_refusals, register
from tests.support.waiting import MS


#: How long a cluster node may be unreachable before the others fail it over, in ms: short
#: for a failover in seconds, long enough that a busy machine causes none.
CLUSTER_NODE_TIMEOUT_MS = 3000


@pytest.fixture(scope="session")
def redis_users(tmp_path_factory: pytest.TempPathFactory) -> TestUsers | None:
    """The ACL users of the session's Redis (None with ``REALTIME_TEST_ACL=0``)."""
    return TestUsers(tmp_path_factory.mktemp("redis-users")) if acl_enabled() else None


@pytest.fixture(scope="session")
def redis_server(redis_users: TestUsers | None) -> Iterator[RedisServer]:
    """A private, non-persistent Redis on a free loopback port, shared by the session, where
    every process the tests start connects as its own ACL user (tests/support/redis_users.py)."""
    lines = redis_users.aclfile_lines() if redis_users is not None else []
    with RedisServer(acl=lines) as server:
        if redis_users is not None:
            register(server.url, redis_users)
        yield server
        refusals = acl_refusals(server) if redis_users is not None else []
    # Every ACL refusal in the session is a rule that a process lacked (the tests that
    # provoke refusals clear theirs). A restart empties the log, though.
    assert not refusals, f"Redis refused processes of the tests: {refusals}"


def _emptied(redis_server: RedisServer) -> str:
    if not redis_server.is_running:
        redis_server.start()
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    return redis_server.url


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of the session's Redis, emptied (and started, if a test left it stopped)."""
    return _emptied(redis_server)


@pytest.fixture(name="redis")
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    """An asyncio client of the session's Redis, emptied for this test."""
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture(scope="module")
def bus_url(redis_server: RedisServer) -> str:
    """The session's Redis, emptied once for this module, for tests that run processes."""
    return _emptied(redis_server)


@pytest.fixture
async def bus(bus_url: str) -> AsyncIterator[Redis]:
    """An asyncio Redis client on the module's Redis, to publish and to read state."""
    client = Redis.from_url(bus_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture(scope="session")
def redis_cluster(redis_users: TestUsers | None) -> Iterator[LocalCluster]:
    """A private Redis Cluster of 3 masters and 3 replicas on free loopback ports, shared by
    the session, with the same ACL users as :func:`redis_server` on every node."""
    lines = redis_users.aclfile_lines() if redis_users is not None else []
    with LocalCluster(3, 1, acl=lines, node_timeout=CLUSTER_NODE_TIMEOUT_MS) as cluster:
        yield cluster
        refusals = []
        if redis_users is not None:
            refusals = [refusal for server in cluster.servers for refusal in acl_refusals(server)]
    assert not refusals, f"the cluster refused processes of the tests: {refusals}"


@pytest.fixture
def cluster(redis_cluster: LocalCluster) -> LocalCluster:
    """The session's cluster, whole (nodes a test killed or paused are back) and empty."""
    redis_cluster.restore(within=30_000 * MS)
    for server in redis_cluster.master_servers():
        with redis.Redis.from_url(server.url, **redis_cluster.client_options()) as client:
            client.flushall()
    return redis_cluster


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``cluster`` every test that uses the session's cluster, so that it can be left out."""
    for item in items:
        if "redis_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the logs of every process the tests start are written."""
    return tmp_path_factory.mktemp("process-logs")


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
