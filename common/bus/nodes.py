"""Which Redis node a bus command goes to: the one Redis, or on a Redis Cluster the node that
serves the slot of the command's key.

The bus's hottest paths write RESP themselves (common/resp.py) rather than through redis-py's
cluster client, so they route themselves too: :func:`node_of` asks the cluster client's slot
map, which :func:`refresh` reads again after a redirection (``MOVED``, ``ASK``) or a lost
node, so that the next command reaches the node that serves the slot now (a promoted
replica after a failover, the new owner of a migrated slot).
"""

from __future__ import annotations

import logging
from typing import Any

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
    RedisClusterException,
    RedisError,
    ResponseError,
)

from common.redis_client import RedisClient
from common.resp import LazyConnection, execute_encoded


__all__ = ["NodeConnections", "execute_on_slot", "is_redirect", "node_of", "refresh"]

logger = logging.getLogger(__name__)

#: Error replies that mean the slot map is out of date (or the cluster between maps): the
#: command did not run, and runs where the refreshed map says.
_REDIRECTS = (b"MOVED", b"ASK", b"CLUSTERDOWN", b"TRYAGAIN")


def is_redirect(reply: Any) -> bool:
    """Whether ``reply`` (an error reply) says the command reached the wrong node."""
    return isinstance(reply, ResponseError) and str(reply).encode().startswith(_REDIRECTS)


async def node_of(redis: RedisCluster, key: str) -> ClusterNode:
    """The primary node that serves ``key``'s slot, by the client's slot map (read first if
    the client has not yet).

    Raises:
        redis.exceptions.RedisClusterException: the slot map has no node for the slot.
        redis.exceptions.ConnectionError: no node answered while the map was read.
    """
    await redis.initialize()
    node = redis.get_node_from_key(key)
    if node is None:
        raise RedisClusterException(f"no node serves the slot of {key!r}")
    return node


async def refresh(redis: RedisCluster) -> None:
    """Read the slot map again (after a redirection or a lost node); a failed read is logged
    and the next :func:`node_of` tries again."""
    try:
        await redis.nodes_manager.initialize()
    except (RedisError, OSError) as exc:
        logger.warning("could not read the cluster's slot map", extra={"error": repr(exc)})


async def execute_on_slot(redis: RedisClient, key: str, payload: bytes, count: int) -> list[Any]:
    """Send ``count`` encoded commands, all on ``key``'s slot (or keyless), to the node that
    serves it, on a pooled connection; their replies, or the first error among them raised.
    On a cluster, a redirection or a lost node has the slot map read again first.

    For commands a cluster client refuses to pipeline (``TIME``) or would send one by one.
    """
    if not isinstance(redis, RedisCluster):
        replies = await execute_encoded(redis, payload, count)
    else:
        try:
            replies = await execute_encoded(await node_of(redis, key), payload, count)
        except (RedisConnectionError, OSError):
            await refresh(redis)
            raise
        if any(is_redirect(reply) for reply in replies):
            await refresh(redis)
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


class NodeConnections:
    """The bus's own RESP connections of one user (a producer, a stream reader): its one
    connection to a single Redis, or one per cluster node, each key's commands going to the
    node that serves the key's slot.

    A user that meets a lost connection or a redirection calls :meth:`stale`; the slot map is
    read again before the next pick.
    """

    def __init__(self, redis: RedisClient) -> None:
        self._redis = redis
        self._single = None if isinstance(redis, RedisCluster) else LazyConnection(redis)
        self._nodes: dict[str, LazyConnection] = {}
        self._stale = False

    @property
    def cluster(self) -> bool:
        return self._single is None

    @property
    def single(self) -> LazyConnection | None:
        """The one connection to a single Redis (None on a cluster)."""
        return self._single

    async def for_key(self, key: str) -> LazyConnection:
        """The connection to the node that serves ``key``."""
        if self._single is not None:
            return self._single
        redis = self._redis
        assert isinstance(redis, RedisCluster)
        if self._stale:
            self._stale = False
            await refresh(redis)
        node = await node_of(redis, key)
        connection = self._nodes.get(node.name)
        if connection is None:
            connection = self._nodes[node.name] = LazyConnection(node)
        return connection

    def stale(self) -> None:
        """The slot map may be out of date: read it again before the next pick, and drop the
        connections (a failed-over node's would hang or answer MOVED)."""
        if self._single is None:
            self._stale = True
            self.close()

    def close(self) -> None:
        if self._single is not None:
            self._single.close()
        for connection in self._nodes.values():
            connection.close()
        self._nodes.clear()
