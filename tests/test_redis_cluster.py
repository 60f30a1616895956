"""The private Redis Cluster of the tests (devtools/redis_cluster.py), on real processes."""

from __future__ import annotations

import time
from itertools import pairwise

import pytest
import redis
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode, RedisCluster as AsyncRedisCluster
from redis.cluster import ClusterNode

from devtools.cluster_nodes import hash_tag_on
from devtools.net import LOOPBACK
from devtools.redis_binary import bundled_valkey_binary
from devtools.redis_cluster import LocalCluster
from devtools.redis_server import RedisServer
from tests.support.waiting import MS, Deadline, wait_until, wait_until_blocking


# Detection (the node timeout), the failure reports of a majority, then the replica's
# election, which waits a second per rank: seconds, well within this.
FAILOVER_DEADLINE = 30_000 * MS


def _direct(cluster: LocalCluster, server: RedisServer) -> redis.Redis:
    """A client of one node only, which follows no redirection."""
    return redis.Redis.from_url(server.url, socket_timeout=2.0, **cluster.client_options())


def _cluster_client(cluster: LocalCluster) -> redis.RedisCluster:
    """redis-py's cluster client, given every node: whichever answers tells it the rest."""
    seeds = [
        ClusterNode(LOOPBACK, server.port)  # type: ignore[no-untyped-call]
        for server in cluster.servers
    ]
    return redis.RedisCluster(startup_nodes=seeds, **cluster.client_options())


def _tags_per_master(cluster: LocalCluster) -> dict[int, str]:
    """A hash tag on the slots of each master, by the master's port."""
    tags: dict[int, str] = {}
    for node in cluster.nodes():
        if node.is_master and node.slots:
            tags[node.port] = hash_tag_on(node.slots, exclude=tags.values())
    return tags


def test_the_nodes_ports_are_all_distinct() -> None:
    """Every node of a cluster gets two ports of its own (clients', cluster bus'), none
    shared: picked one after the other, the OS hands out one twice in about 1 cluster in
    250, and that node cannot start. Clusters are built, not started, a thousand times."""
    for _ in range(1000):
        cluster = LocalCluster(3, 1)
        ports = [port for s in cluster.servers for port in (s.port, s.cluster_port)]
        assert len(set(ports)) == len(ports) == 12, ports


def test_cluster_forms_with_every_slot_on_a_master_and_a_replica_each(
    cluster: LocalCluster,
) -> None:
    """The cluster has 3 masters over the 16384 slots, each replicated by one of 3 replicas."""
    nodes = cluster.nodes()
    masters = [node for node in nodes if node.is_master]
    replicas = [node for node in nodes if not node.is_master]
    assert len(masters) == 3
    ranges = sorted(slots for node in masters for slots in node.slots)
    assert ranges[0][0] == 0
    assert ranges[-1][1] == 16383
    assert all(last + 1 == first for (_, last), (first, _) in pairwise(ranges))
    assert sorted(node.master_id or "" for node in replicas) == sorted(node.id for node in masters)
    with _cluster_client(cluster) as client:
        assert client.cluster_info()["cluster_state"] == "ok"


def test_keys_with_different_hash_tags_land_on_different_masters(cluster: LocalCluster) -> None:
    """A key per master's hash tag is stored on that master alone."""
    tags = _tags_per_master(cluster)
    with _cluster_client(cluster) as client:
        for port, tag in tags.items():
            client.set(f"{tag}:key", str(port))
    for server in cluster.master_servers():
        with _direct(cluster, server) as node:
            assert node.dbsize() == 1
            assert node.get(f"{tags[server.port]}:key") == str(server.port).encode()


def test_a_killed_master_is_replaced_by_its_replica_with_the_writes_it_acknowledged(
    cluster: LocalCluster,
) -> None:
    """kill -9 of a master: its replica becomes master in seconds and serves what WAIT saw."""
    master = cluster.master_servers()[0]
    (replica,) = cluster.replicas_of(master)
    tag = _tags_per_master(cluster)[master.port]
    with _direct(cluster, master) as node:
        pipe = node.pipeline(transaction=False)
        for i in range(100):
            pipe.set(f"{tag}:{i}", i)
        # On the same connection: WAIT counts the replicas that have this client's writes.
        pipe.execute_command("WAIT", 1, 5000)
        *_, replicated = pipe.execute()
    assert replicated == 1

    killed_at = time.monotonic()
    master.kill()

    def promoted() -> bool:
        return any(node.port == replica.port and node.is_master for node in cluster.nodes(replica))

    wait_until_blocking(promoted, "the replica to be promoted", within=FAILOVER_DEADLINE)
    cluster.wait_until_serving(within=FAILOVER_DEADLINE)
    failover_seconds = time.monotonic() - killed_at
    with _cluster_client(cluster) as client:
        values = client.mget([f"{tag}:{i}" for i in range(100)])
    assert values == [str(i).encode() for i in range(100)]
    # The figure to compare with the node timeout (docs/operations.md).
    print(f"failover took {failover_seconds:.1f} s with a {cluster.node_timeout} ms node timeout")


def test_a_killed_master_rejoins_as_a_replica_once_restored(cluster: LocalCluster) -> None:
    """restore() brings a killed master back as a replica of the one that replaced it."""
    master = cluster.master_servers()[0]
    (replica,) = cluster.replicas_of(master)
    master.kill()
    wait_until_blocking(
        lambda: replica in cluster.master_servers(), "the failover", within=FAILOVER_DEADLINE
    )
    cluster.restore(within=FAILOVER_DEADLINE)
    assert cluster.replicas_of(replica) == [master]


def test_a_paused_node_answers_nothing_until_resumed(cluster: LocalCluster) -> None:
    """pause() freezes a node by PID (a stalled server), resume() lets it answer again."""
    replica = cluster.replicas_of(cluster.master_servers()[0])[0]
    replica.pause()
    try:
        with (
            redis.Redis.from_url(replica.url, socket_timeout=0.5) as node,
            pytest.raises(redis.TimeoutError),
        ):
            node.ping()
    finally:
        replica.resume()
    with _direct(cluster, replica) as node:
        assert node.ping()


async def test_sharded_pubsub_delivers_on_each_shard(cluster: LocalCluster) -> None:
    """SSUBSCRIBE/SPUBLISH with redis-py's asyncio cluster client: a message per shard
    arrives, each channel on its own master, one subscriber connection per shard."""
    channels = [f"{tag}:events" for tag in _tags_per_master(cluster).values()]
    seeds = [AsyncClusterNode(LOOPBACK, server.port) for server in cluster.servers]
    client = AsyncRedisCluster(startup_nodes=seeds, **cluster.client_options())
    await client.initialize()  # the slot map, which the asyncio client reads only when asked
    pubsub = client.pubsub()
    try:
        await pubsub.ssubscribe(*channels)
        received: dict[bytes, bytes] = {}
        confirmed: set[bytes] = set()
        deadline = Deadline(10_000 * MS)
        while len(confirmed) < len(channels) and not deadline.expired():
            message = await pubsub.get_sharded_message(timeout=0.1)
            if message is not None and message["type"] == "ssubscribe":
                confirmed.add(message["channel"])
        assert len(confirmed) == len(channels)

        for channel in channels:
            # The count of subscribers on the channel's shard: this one.
            assert await client.spublish(channel, f"to {channel}") == 1

        async def all_received() -> bool:
            message = await pubsub.get_sharded_message(timeout=0.1)
            if message is not None and message["type"] == "smessage":
                received[message["channel"]] = message["data"]
            return len(received) == len(channels)

        await wait_until(all_received, "a message on every shard's channel", interval=0)
        assert received == {channel.encode(): f"to {channel}".encode() for channel in channels}
        assert len(pubsub.node_pubsub_mapping) == len(channels)
    finally:
        await pubsub.aclose()
        await client.aclose()


@pytest.mark.cluster
def test_the_cluster_forms_with_commands_without_a_cli() -> None:
    """Formed from Python (CLUSTER MEET, ADDSLOTSRANGE, REPLICATE), as with the embedded
    Valkey that ships no redis-cli (run here when installed), the cluster serves every slot."""
    with LocalCluster(3, 1, binary=bundled_valkey_binary(), formation="commands") as own:
        with _cluster_client(own) as client:
            client.set("{a}:key", "a")
            assert client.get("{a}:key") == b"a"
        assert len(own.master_servers()) == 3
        assert all(len(own.replicas_of(master)) == 1 for master in own.master_servers())
