"""The presence scripts of three partitions on a real Redis Cluster: every call of a batch
over the partitions, of a restart's grace and of a dead gateway's reaping runs on its slot,
and each event reaches its channel's shard channel."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
from redis.asyncio import Redis
from redis.cluster import ClusterNode, RedisCluster

from common.codec import load_bus
from common.envelope import Event
from common.keys import GATEWAY_LEASES, Partitions
from common.lua import ScriptCall, source
from devtools.net import LOOPBACK
from devtools.redis_cluster import LocalCluster
from presence_service.rules import Change, Query
from presence_service.store import BARE, SCRIPTS, PresenceStore
from tests.presence.store_support import change, channel_in
from tests.support.waiting import MS, Deadline


PARTITIONS = Partitions("presence", 3)
CHANNELS = [channel_in(PARTITIONS, n, "auction:k") for n in PARTITIONS]


def _on_a_cluster(chunk: str) -> str:
    """A script's chunk as the loader will run it on a cluster: publishing with SPUBLISH."""
    line = "local PUBLISH = 'PUBLISH'"
    assert line in chunk
    return chunk.replace(line, "local PUBLISH = 'SPUBLISH'")


SOURCES = {
    name: _on_a_cluster(source("presence_service", name, bare=name in BARE)) for name in SCRIPTS
}


@pytest.fixture
def whole_cluster(redis_cluster: LocalCluster) -> LocalCluster:
    """The session's cluster, whole and empty (tests/conftest.py's ``cluster``, which this
    package's module-wide processes, also named ``cluster``, hide)."""
    redis_cluster.restore(within=30_000 * MS)
    for server in redis_cluster.master_servers():
        with redis.Redis.from_url(server.url, **redis_cluster.client_options()) as client:
            client.flushall()
    return redis_cluster


def test_every_presence_script_runs_on_a_redis_cluster(whole_cluster: LocalCluster) -> None:
    """Tracks, reads and drops over three partitions, the grace's end and a dead gateway's
    reaping run on a cluster with no CROSSSLOT nor key of another slot; events use SPUBLISH."""
    cluster = whole_cluster
    seeds = [ClusterNode(LOOPBACK, server.port) for server in cluster.servers]  # type: ignore[no-untyped-call]
    client = RedisCluster(startup_nodes=seeds, **cluster.client_options())
    unused = Redis.from_url(cluster.seed_urls[0])  # the store's client: never called here
    store = PresenceStore(unused, PARTITIONS, grace=0.0, tombstone_ttl=600, batch=1)
    pubsub = client.pubsub()  # type: ignore[no-untyped-call]
    deadline = Deadline(10.0)

    def run(call: ScriptCall) -> Any:
        return client.eval(SOURCES[call.script], len(call.keys), *call.keys, *call.args)

    try:
        shard_channels = [PARTITIONS.event_channel("presence:" + c) for c in CHANNELS]
        pubsub.ssubscribe(*shard_channels)
        confirmed = 0
        while confirmed < len(shard_channels) and not deadline.expired():
            message = pubsub.get_sharded_message(timeout=0.1)
            confirmed += message is not None and message["type"] == "ssubscribe"
        assert confirmed == len(shard_channels)

        # A restarted connection in every partition, read in the same batch; its grace (0 s
        # here) ends, and it leaves.
        operations: list[Change | Query] = [change("track", "g1.1", "ann", c) for c in CHANNELS]
        operations += [Query(c, "ann", 10) for c in CHANNELS]
        operations += [
            change("drop", "g1.1", "ann", seq=9, restart=True, channels=(c,)) for c in CHANNELS
        ]
        results = [run(call) for _, call in store.calls(operations)]
        # Per partition: the track (a join), the read, the drop (lingering: no event).
        assert results == [[1, 1, 0], [1, 1, 0, b"ann", b"1"], [1, 0, 0]] * 3
        assert [run(store.expire_call(n)) for n in PARTITIONS] == [[1, 1]] * 3

        # A dead gateway's connection in every partition, reaped partition by partition.
        tracks = store.calls([change("track", "g2.1", "bob", c) for c in CHANNELS])
        assert [run(call) for _, call in tracks] == [[1, 1, 0]] * 3
        client.zadd(GATEWAY_LEASES, {"g2": 1})
        lapsed = run(ScriptCall("expired_leases", (GATEWAY_LEASES,), ("10",)))
        assert lapsed == [b"g2", b"1"]
        reaped = [run(store.reap_call(n, "g2", "1")) for n in PARTITIONS]
        assert reaped == [[1, 1, 1]] * 3
        assert run(ScriptCall("remove_lease", (GATEWAY_LEASES,), ("g2", "1"))) == 1
        assert client.zscore(GATEWAY_LEASES, "g2") is None

        expected = {
            (c, kind, user)
            for c in CHANNELS
            for kind in ("join", "leave")
            for user in ("ann", "bob")
        }
        received: set[tuple[str, str, str]] = set()
        while len(received) < len(expected) and not deadline.expired():
            message = pubsub.get_sharded_message(timeout=0.1)
            if message is not None and message["type"] == "smessage":
                event = Event.from_wire(load_bus(message["data"]))
                assert message["channel"].decode() == PARTITIONS.event_channel(event.channel)
                channel = event.channel.removeprefix("presence:")
                received.add((channel, event.event, event.data["user"]))
        assert received == expected
        for c in CHANNELS:
            [(_, read)] = store.calls([Query(c, None, 10)])
            assert run(read) == [1, 0, 0]  # allowed, nobody, not truncated
    finally:
        pubsub.close()
        client.close()
        asyncio.run(unused.aclose())
