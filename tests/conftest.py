"""Fixtures every test may use: a private Redis server for the session, and process logs.

Tests that run processes (gateways, services) share a Redis flushed once per module
(:func:`bus_url`), never per test: a flush under a running service would delete its consumer
group. Tests of one module stay apart by using names of their own. Processes connect to it as
their ACL users; the tests' own clients are its default user.

A private Redis Cluster (:func:`redis_cluster`, 3 masters and 3 replicas) starts only for the
tests that ask for it, each marked ``cluster`` by :func:`pytest_collection_modifyitems`:
``pytest -m "not cluster"`` leaves out its few seconds.

A module's processes may run on either (:func:`redis_mode`): a test marked ``also_on_cluster``
(or every test of a module so marked) runs twice, once on the session's Redis and once on its
cluster, where the module's processes get every node as a seed and ``RT_REDIS_CLUSTER=1``
(tests/support/bus_redis.py), and :func:`bus` is a cluster client. The other tests of such a
module run on the one Redis only, sharing its processes with the marked tests' first run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path
from types import ModuleType

import pytest
import redis
from redis.asyncio import Redis

from common.redis_client import RedisClient
from devtools.redis_cluster import LocalCluster
from devtools.redis_server import RedisServer
from tests.support.bus_redis import MODES, RedisMode, async_client, cluster_url
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
def redis_mode(request: pytest.FixtureRequest) -> RedisMode:
    """Where this module's processes run: ``single``, the session's Redis, unless the test
    is one of the ``also_on_cluster`` tests' ``cluster`` runs (:func:`pytest_generate_tests`)."""
    mode: RedisMode = getattr(request, "param", "single")
    return mode


@pytest.fixture(scope="module")
def bus_url(request: pytest.FixtureRequest, redis_mode: RedisMode) -> str:
    """The ``RT_REDIS_URL`` of this module's processes: the session's Redis, or in cluster
    mode its cluster's seeds, emptied once for this module."""
    if redis_mode == "cluster":
        return _emptied_cluster(request.getfixturevalue("redis_cluster"))
    return _emptied(request.getfixturevalue("redis_server"))


@pytest.fixture
async def bus(bus_url: str) -> AsyncIterator[RedisClient]:
    """An asyncio client of the module's Redis, to publish and to read state: a cluster
    client, which routes each command by its key, in cluster mode."""
    client = async_client(bus_url)
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
        if redis_users is not None:
            register(cluster_url(cluster), redis_users)
        yield cluster
        refusals = []
        if redis_users is not None:
            refusals = [refusal for server in cluster.servers for refusal in acl_refusals(server)]
    assert not refusals, f"the cluster refused processes of the tests: {refusals}"


def _emptied_cluster(cluster: LocalCluster) -> str:
    """Restore ``cluster`` (nodes a test killed or paused are back), empty it; its URL."""
    cluster.restore(within=30_000 * MS)
    for server in cluster.master_servers():
        with redis.Redis.from_url(server.url, **cluster.client_options()) as client:
            client.flushall()
    return cluster_url(cluster)


@pytest.fixture
def cluster(redis_cluster: LocalCluster) -> LocalCluster:
    """The session's cluster, whole (nodes a test killed or paused are back) and empty."""
    _emptied_cluster(redis_cluster)
    return redis_cluster


def _runs_on_cluster_too(module: ModuleType) -> bool:
    """Whether any test of ``module`` (or the module) is marked ``also_on_cluster``."""
    marked = [module, *(value for name, value in vars(module).items() if name.startswith("test"))]
    for value in marked:
        # A module's pytestmark may be one mark or a list; a test's is a list.
        marks = getattr(value, "pytestmark", [])
        for mark in marks if isinstance(marks, list) else [marks]:
            if mark.name == "also_on_cluster":
                return True
    return False


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run each ``also_on_cluster`` test in both modes of :func:`redis_mode`, and the other
    tests of its module in ``single`` mode as a parameter too: the module's processes are
    then started once per mode, not again for each test that names no mode."""
    if "redis_mode" not in metafunc.fixturenames or not _runs_on_cluster_too(metafunc.module):
        return
    both = metafunc.definition.get_closest_marker("also_on_cluster") is not None
    modes = MODES if both else MODES[:1]
    metafunc.parametrize("redis_mode", modes, indirect=True, scope="module")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``cluster`` every test that uses the session's cluster, so that it can be left out."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_cluster = callspec is not None and callspec.params.get("redis_mode") == "cluster"
        if on_cluster or "redis_cluster" in getattr(item, "fixturenames", ()):
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
