"""The load tests' reads of Redis on a Redis Cluster (loadtests/invariants.py, settle.py), and
the invariant check of a checkout from before the partitions' key names."""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster

from bids_service.rules import PlaceCommand, parse_auction_spec
from common.keys import Partitions
from common.redis_client import RedisClient
from devtools.net import LOOPBACK
from devtools.redis_cluster import LocalCluster
from loadtests.invariants import LEGACY_NAMES, Accepted, check_invariants
from loadtests.settle import wait_for_stream
from tests.bids.support import make_store, spread


SPEC = {"title": "t", "starting_price": 10, "increment": 5, "duration_s": 60}
PARTITIONS = Partitions("bids", 3)


async def _bids(redis: RedisClient, auctions: list[str]) -> list[Accepted]:
    """Two accepted bids on each auction, placed in one batch over their partitions."""
    store = make_store(redis, partitions=3)
    await store.load()
    spec = parse_auction_spec(SPEC, extend_window=0, extend_by=0)
    for auction in auctions:
        await store.create(auction, spec)
    bids = [
        (PlaceCommand(a, amount, f"{a}-{amount}"), "ann") for amount in (10, 20) for a in auctions
    ]
    return [
        Accepted(command.auction, verdict.seq or 0, command.amount, "ann", command.key)
        for (command, _), (verdict, _) in zip(bids, await store.place(bids), strict=True)
    ]


async def test_the_check_reads_three_partitions_on_a_cluster(cluster: LocalCluster) -> None:
    """On a cluster, each auction read from its partition's master, its hash and history in
    one transaction: a consistent run passes and a broken auction is caught."""
    client = RedisCluster(startup_nodes=[ClusterNode(LOOPBACK, s.port) for s in cluster.servers])
    try:
        auctions = spread(PARTITIONS, "c")
        accepted = await _bids(client, auctions)
        url = ",".join(cluster.seed_urls)

        def check() -> list[str]:
            report = check_invariants(url, auctions, accepted, partitions=3, cluster=True)
            return report.violations

        assert await asyncio.to_thread(check) == []
        await client.hset(make_store(client, partitions=3).keys.auction(auctions[1]), "seq", "9")
        assert [v.split(":")[0] for v in await asyncio.to_thread(check)] == [auctions[1]]
    finally:
        await client.aclose()


async def test_settling_waits_for_every_partition_stream_of_a_cluster(
    cluster: LocalCluster,
) -> None:
    """The streams of every partition are found on their masters: drained ones settle, one
    with an entry no consumer read yet does not."""
    client = RedisCluster(startup_nodes=[ClusterNode(LOOPBACK, s.port) for s in cluster.servers])
    url = ",".join(cluster.seed_urls)
    try:
        for n in range(3):
            await client.xgroup_create(f"svc:{{bids.{n}}}:requests", "bids", id="$", mkstream=True)
        drained = await asyncio.to_thread(
            wait_for_stream, url, "bids", time.monotonic(), cluster=True
        )
        assert drained
        await client.xadd("svc:{bids.2}:requests", {"r": "waiting"})
        waiting = await asyncio.to_thread(
            wait_for_stream, url, "bids", time.monotonic(), cluster=True
        )
        assert not waiting
    finally:
        await client.aclose()


async def test_the_legacy_key_names_are_read_only_when_asked(redis: Redis, redis_url: str) -> None:
    """Auctions stored under the names from before the partitions (``bids:auction:<id>``, a
    REF of ``--compare``) pass the check when it may read those, and say so; otherwise they
    do not exist."""
    store = make_store(redis, partitions=3)
    auctions = spread(PARTITIONS, "old")
    accepted = await _bids(redis, auctions)
    for auction in auctions:
        await redis.rename(store.keys.auction(auction), LEGACY_NAMES.auction(auction))
        await redis.rename(store.keys.history(auction), LEGACY_NAMES.history(auction))

    legacy = await asyncio.to_thread(
        check_invariants, redis_url, auctions, accepted, partitions=3, legacy_names=True
    )
    assert legacy.ok
    assert legacy.legacy_names
    assert "from before the partitions" in legacy.summary()
    strict = await asyncio.to_thread(check_invariants, redis_url, auctions, accepted, partitions=3)
    assert not strict.legacy_names
    assert f"{auctions[0]}: the auction does not exist" in strict.violations
