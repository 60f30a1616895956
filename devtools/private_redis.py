"""One private Redis, or a private Redis Cluster, as the benchmarks and load tests use either.

A :class:`RedisLayout` says which (a plain server, or a cluster of N masters with no
replicas); a :class:`PrivateRedis` runs it and tells what the project's processes and the
tooling need of it: the ``RT_*`` settings that point a process at it, the server processes
(whose CPU a benchmark counts, summed over a cluster's nodes), and a client with every
right. :func:`blocking_client` makes such a client from the settings alone, for a check that
runs in another process (locust's) and knows only them.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import redis
import redis.asyncio
import redis.asyncio.cluster
from redis.cluster import ClusterNode

from devtools.lifecycle import Started
from devtools.net import LOOPBACK
from devtools.redis_cluster import Formation, LocalCluster
from devtools.redis_server import RedisServer


__all__ = [
    "SINGLE",
    "AsyncClient",
    "BlockingClient",
    "PrivateRedis",
    "RedisLayout",
    "blocking_client",
]

#: A client of one Redis or of a cluster (which routes each command by its key).
BlockingClient = redis.Redis | redis.RedisCluster
AsyncClient = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster

#: How long a cluster node may be unreachable before the others fail it over (ms). Nothing
#: fails over in a benchmark (there are no replicas): the default, minus waiting for it.
_NODE_TIMEOUT_MS = 5000


@dataclass(frozen=True, slots=True)
class RedisLayout:
    """One plain Redis (``masters`` 0), or a Redis Cluster of ``masters`` masters, no replica."""

    masters: int = 0

    def __post_init__(self) -> None:
        if self.masters < 0:
            raise ValueError(f"a cluster has at least one master, not {self.masters}")

    @property
    def cluster(self) -> bool:
        return self.masters > 0

    @property
    def label(self) -> str:
        """``single``, or ``cluster-<masters>``: a column of a report."""
        return f"cluster-{self.masters}" if self.cluster else "single"

    def describe(self) -> str:
        if not self.cluster:
            return "one Redis"
        plural = "" if self.masters == 1 else "s"
        return f"a Redis Cluster of {self.masters} master{plural} (no replicas)"


SINGLE = RedisLayout()


def blocking_client(url: str, *, cluster: bool) -> BlockingClient:
    """A blocking client of ``url`` (``RT_REDIS_URL``: with ``cluster``, seed URLs separated
    by commas) with the URL's rights; the caller closes it."""
    if not cluster:
        return redis.Redis.from_url(url)
    seeds = [urlsplit(seed.strip()) for seed in url.split(",")]
    nodes = [ClusterNode(seed.hostname or LOOPBACK, seed.port or 6379) for seed in seeds]  # type: ignore[no-untyped-call]
    return redis.RedisCluster(startup_nodes=nodes)


class PrivateRedis(Started):
    """A private Redis or cluster of ``layout`` on 127.0.0.1 (with no password: the processes
    connect as the default user), stopped by PID."""

    def __init__(self, layout: RedisLayout = SINGLE) -> None:
        self.layout = layout
        self._server = None if layout.cluster else RedisServer()
        # redis-cli --cluster create refuses fewer than 3 masters: smaller clusters are
        # formed with the commands themselves.
        formation: Formation = "auto" if layout.masters >= 3 else "commands"
        self._cluster = (
            LocalCluster(layout.masters, 0, node_timeout=_NODE_TIMEOUT_MS, formation=formation)
            if layout.cluster
            else None
        )

    @property
    def servers(self) -> list[RedisServer]:
        if self._cluster is not None:
            return self._cluster.servers
        assert self._server is not None
        return [self._server]

    def start(self) -> None:
        """Start the server, or every node and form the cluster (then whole)."""
        if self._cluster is not None:
            self._cluster.start()
        else:
            assert self._server is not None
            self._server.start()

    def stop(self) -> None:
        """Stop every server process by PID. Idempotent."""
        if self._cluster is not None:
            self._cluster.stop()
        elif self._server is not None:
            self._server.stop()

    @property
    def url(self) -> str:
        """What ``RT_REDIS_URL`` says: the server's URL, or every node's, comma-separated."""
        return ",".join(server.url for server in self.servers)

    @property
    def env(self) -> dict[str, str]:
        """The settings that point a process at it. ``RT_REDIS_CLUSTER`` only on a cluster: a
        checkout from before cluster mode (``--compare REF``) would refuse the variable."""
        env = {"RT_REDIS_URL": self.url}
        if self.layout.cluster:
            env["RT_REDIS_CLUSTER"] = "1"
        return env

    @property
    def pids(self) -> list[int]:
        """The server processes that run now (every node of a cluster)."""
        return [server.pid for server in self.servers if server.pid is not None]

    def url_of(self, key: str) -> str:
        """The URL of the server that holds ``key``: the one Redis, or the master that serves
        its slot (for a publisher that talks to that node alone, as it would to one Redis)."""
        if self._cluster is None:
            return self.url
        return self._cluster.master_serving(key).url

    def subscribed_channels(self, pattern: str) -> list[str]:
        """The pub/sub channels matching ``pattern`` that some client subscribes to: PUBSUB
        CHANNELS of the one Redis, or PUBSUB SHARDCHANNELS of every node of a cluster (where
        a gateway's subscriptions are sharded)."""
        command = ("PUBSUB", "SHARDCHANNELS") if self.layout.cluster else ("PUBSUB", "CHANNELS")
        channels: list[str] = []
        for server in self.servers:
            with redis.Redis.from_url(server.url, decode_responses=True) as client:
                channels += client.execute_command(*command, pattern)
        return sorted(channels)

    def client(self) -> BlockingClient:
        """A blocking client with every right; the caller closes it."""
        return blocking_client(self.url, cluster=self.layout.cluster)

    def async_client(self) -> AsyncClient:
        """An asyncio client with every right; the caller closes it (``aclose``)."""
        if self._cluster is None:
            return redis.asyncio.Redis.from_url(self.url)
        nodes = [
            redis.asyncio.cluster.ClusterNode(LOOPBACK, server.port) for server in self.servers
        ]
        return redis.asyncio.cluster.RedisCluster(startup_nodes=nodes)

    def __repr__(self) -> str:
        return f"<PrivateRedis {self.layout.label} {self.url}>"
