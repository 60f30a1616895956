"""Which Redis a test's processes run on: the session's one Redis, or its Redis Cluster.

A test module's processes get ``RT_REDIS_URL`` from the module's ``bus_url`` (tests/conftest.py):
the one server's URL, or, in ``cluster`` mode, every node of the session's cluster as a seed,
comma-separated. Such a cluster URL is registered here, so that whatever starts a process or
opens a client on a URL knows which kind it is: processes get ``RT_REDIS_CLUSTER=1``
(:func:`cluster_settings`), the tests' own clients are redis-py's cluster clients, which route
each command by its key (:func:`client`, :func:`async_client`). The tests' clients are the
default user, with every right.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

import pytest
import redis
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode, RedisCluster

from common.redis_client import RedisClient
from devtools.redis_cluster import LocalCluster


__all__ = [
    "MODES",
    "ONLY_ON_CLUSTER",
    "RedisMode",
    "async_client",
    "client",
    "cluster_settings",
    "cluster_url",
    "is_cluster",
]

#: Where a test's processes may run: the session's Redis, or its Redis Cluster.
RedisMode = Literal["single", "cluster"]
MODES: tuple[RedisMode, ...] = ("single", "cluster")
#: The mark of a module whose processes run on the cluster only (tests/conftest.py
#: ``redis_mode``): ``pytestmark = ONLY_ON_CLUSTER``.
ONLY_ON_CLUSTER = pytest.mark.parametrize("redis_mode", ["cluster"], indirect=True, scope="module")

_clusters: dict[str, LocalCluster] = {}


def cluster_url(cluster: LocalCluster) -> str:
    """The ``RT_REDIS_URL`` of processes on ``cluster``: every node a seed (any that is up
    after a failover tells the client the rest), registered as a cluster's."""
    url = ",".join(cluster.seed_urls)
    _clusters[url] = cluster
    return url


def is_cluster(url: str) -> bool:
    """Whether ``url`` is a cluster's (:func:`cluster_url`)."""
    return url in _clusters


def cluster_settings(url: str) -> dict[str, str]:
    """What a process on ``url`` needs beside ``RT_REDIS_URL``: ``RT_REDIS_CLUSTER=1`` on a
    cluster, nothing on one Redis."""
    return {"RT_REDIS_CLUSTER": "1"} if is_cluster(url) else {}


def _seeds(url: str) -> list[tuple[str, int]]:
    parts = [urlsplit(seed) for seed in url.split(",")]
    return [(part.hostname or "127.0.0.1", part.port or 6379) for part in parts]


def client(url: str, **options: Any) -> redis.Redis | redis.RedisCluster:
    """A blocking client of ``url`` with every right: a cluster client on a cluster's URL."""
    cluster = _clusters.get(url)
    if cluster is None:
        return redis.Redis.from_url(url, **options)
    seeds = [redis.cluster.ClusterNode(host, port) for host, port in _seeds(url)]  # type: ignore[no-untyped-call]
    return redis.RedisCluster(startup_nodes=seeds, **cluster.client_options(), **options)


def async_client(url: str, **options: Any) -> RedisClient:
    """An asyncio client of ``url`` with every right: a cluster client on a cluster's URL."""
    cluster = _clusters.get(url)
    if cluster is None:
        return Redis.from_url(url, **options)
    seeds = [AsyncClusterNode(host, port) for host, port in _seeds(url)]
    return RedisCluster(startup_nodes=seeds, **cluster.client_options(), **options)
