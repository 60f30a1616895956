"""The bus on a real Redis Cluster (3 masters, 3 replicas): the producer, the worker, the Lua
loader and the gateway's sharded listener each reach the node that serves their keys, and
the listener keeps its channels across a failover."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from bids_service.keys import BidKeys
from bids_service.rules import PlaceCommand, parse_auction_spec
from bids_service.store import BidStore
from common.bus.nodes import node_of
from common.bus.producer import RequestProducer
from common.bus.sharded import ShardedListener
from common.bus.worker import Outcome, ServiceWorker
from common.codec import load_bus, pack_bus
from common.envelope import Reply, ReplyBatch, Request, parse_envelope
from common.errors import ConfigError
from common.keys import REVOCATIONS, Partitions, reply_channel
from common.lua import Scripts
from common.redis_client import connect_redis
from common.settings import BusSettings, Env, Secret, ServiceSettings
from common.tasks import cancel_and_wait
from devtools.redis_cluster import LocalCluster
from tests.support.waiting import wait_until


def _settings(cluster: LocalCluster) -> BusSettings:
    return BusSettings(
        redis_url=Secret(",".join(cluster.seed_urls[:2])), cluster=True, **_login(cluster)
    )


def _login(cluster: LocalCluster) -> dict[str, Any]:
    options = cluster.client_options()
    password = options.get("password")
    return {} if password is None else {"redis_password": Secret(password)}


@pytest.fixture
async def client(cluster: LocalCluster) -> AsyncIterator[RedisCluster]:
    made = connect_redis(_settings(cluster), "cluster-bus-test")
    assert isinstance(made, RedisCluster)
    try:
        yield made
    finally:
        await made.aclose()


def _primaries(client: RedisCluster) -> set[str]:
    return {node.name for node in client.get_primaries()}


def _node_name(client: RedisCluster, key: str) -> str:
    node = client.get_node_from_key(key)
    assert node is not None
    return str(node.name)


def _streams_on_every_node(client: RedisCluster, service: str) -> Partitions:
    """Partitions of ``service`` whose streams land on every primary."""
    for count in range(3, 40):
        partitions = Partitions(service, count)
        nodes = {_node_name(client, stream) for stream in partitions.streams()}
        if nodes == _primaries(client):
            return partitions
    raise AssertionError("no partition count spreads the streams over every primary")


async def test_the_producer_appends_to_each_stream_on_its_node_in_one_round_trip_per_node(
    client: RedisCluster,
) -> None:
    await client.initialize()
    partitions = _streams_on_every_node(client, "chat")
    failures: list[tuple[list[str], BaseException]] = []
    producer = RequestProducer(
        client, maxlen=1000, on_failure=lambda ids, exc: failures.append((ids, exc))
    )
    for n, stream in enumerate(partitions.streams()):
        for copy in range(2):
            producer.send(stream, f"r{n}-{copy}", pack_bus({"n": n}))
    await producer.aclose()
    assert failures == []
    for stream in partitions.streams():
        assert await client.xlen(stream) == 2
    # One pipeline per node, side by side.
    assert producer.round_trips == len(_primaries(client))


async def test_scripts_publish_sharded_and_load_on_every_primary(
    cluster: LocalCluster, client: RedisCluster
) -> None:
    """On a cluster the scripts SPUBLISH, are loaded on each primary, and a batch whose
    auctions live on every node is judged there; a primary that lost its scripts (a
    promoted replica has none) gets them again."""
    await client.initialize()
    partitions = _streams_on_every_node(client, "bids")
    store = BidStore(
        client,
        partitions,
        key_ttl_ms=60_000,
        history_maxlen=100,
        replay_limit=100,
        refusal_ttl_ms=60_000,
        bid_rate=1e6,
        bid_burst=10**6,
    )
    scripts = Scripts(client, "bids_service", ["place"])
    assert "local PUBLISH = 'SPUBLISH'" in scripts.sources["place"]
    await store.load()
    auctions = [f"c{n}" for n in range(12)]
    for auction in auctions:
        spec = parse_auction_spec(
            {"title": auction, "starting_price": 100, "increment": 10, "duration_s": 600},
            extend_window=0,
            extend_by=0,
        )
        assert isinstance(await store.create(auction, spec), int)
    keys = BidKeys(partitions)
    nodes = {(await node_of(client, keys.auction(auction))).name for auction in auctions}
    assert nodes == _primaries(client), "the auctions should span every node"
    # Every primary forgets its scripts: each call meets NOSCRIPT, and is sent again.
    for server in cluster.master_servers():
        with redis.Redis.from_url(server.url, **cluster.client_options()) as node:
            node.script_flush()
    bids = [(PlaceCommand(a, 100, f"k-{a}"), "ann") for a in auctions]
    verdicts = await store.place(bids)
    assert [verdict.ok for verdict, _ in verdicts] == [True] * len(auctions)
    for auction in auctions:
        fields = await client.hgetall(keys.auction(auction))
        assert fields[b"current"] == b"100"


class _Echo:
    def __init__(self) -> None:
        self.batches: list[list[Request]] = []

    async def __call__(self, requests: list[Request]) -> list[Outcome]:
        self.batches.append(requests)
        return [{"n": request.data["n"]} for request in requests]


async def test_a_worker_reads_every_partition_and_replies_on_the_gateways_shard(
    cluster: LocalCluster, client: RedisCluster
) -> None:
    """A worker on a cluster reads each partition's stream on its node and SPUBLISHes the
    replies, which a sharded listener on the gateway's channel hears; all acknowledged."""
    await client.initialize()
    partitions = _streams_on_every_node(client, "chat")
    settings = ServiceSettings(
        bus=_settings(cluster),
        service="chat",
        instance="w1",
        claim_idle_ms=60_000,
        claim_interval=0.05,
        partitions=partitions.count,
    )
    gateway = "gw-cluster"
    heard: list[Reply] = []

    def on_message(channel: str, body: bytes) -> None:
        envelope = parse_envelope(load_bus(body))
        heard.extend(envelope.replies if isinstance(envelope, ReplyBatch) else [envelope])  # type: ignore[list-item]

    listener = ShardedListener(client, on_message, [reply_channel(gateway)], classic=[REVOCATIONS])
    handler = _Echo()
    worker = ServiceWorker(client, settings, handler)
    tasks = [asyncio.create_task(listener.run()), asyncio.create_task(worker.run())]
    try:
        await asyncio.wait_for(listener.wait_connected(), 10)
        sent = []
        for n, stream in enumerate(partitions.streams()):
            request = Request(
                "chat.echo",
                {"n": n},
                gateway=gateway,
                connection=f"{gateway}.1",
                user="u",
                batch=True,
            )
            sent.append(request)
            await client.xadd(stream, {b"e": pack_bus(request.to_wire())})
        await wait_until(lambda: len(heard) == len(sent), "a reply to every request")
        assert sorted(reply.request_id for reply in heard) == sorted(r.id for r in sent)
        for batch in handler.batches:
            assert len({partitions.of(str(request.data["n"])) for request in batch}) >= 1

        async def acknowledged() -> bool:
            for stream in partitions.streams():
                if int((await client.xpending(stream, "chat"))["pending"]):
                    return False
            return True

        await wait_until(acknowledged, "every stream's entries acknowledged")
        assert worker.alive
    finally:
        await cancel_and_wait(tasks)


async def test_the_sharded_listener_keeps_its_channels_across_a_failover(
    cluster: LocalCluster, client: RedisCluster
) -> None:
    """Channels on every shard are heard; when the primary of one dies, its replica takes
    over, the listener subscribes there again and says so (a recovery), and hears again."""
    await client.initialize()
    channels = [f"ch:{{bids.{n}}}:auction:a{n}" for n in range(30)]
    by_node: dict[str, str] = {}
    for channel in channels:
        by_node.setdefault(_node_name(client, channel), channel)
    assert len(by_node) == 3
    heard: list[tuple[str, bytes]] = []
    recoveries: list[int] = []
    listener = ShardedListener(
        client,
        lambda channel, body: heard.append((channel, body)),
        ["gw:{gw-fail}:replies"],
        classic=[REVOCATIONS],
        on_reconnect=lambda: recoveries.append(1),
    )
    task = asyncio.create_task(listener.run())
    try:
        await asyncio.wait_for(listener.wait_connected(), 10)
        for channel in by_node.values():
            await asyncio.wait_for(listener.subscribe(channel), 10)
        assert listener.connected

        async def publish_all(tag: bytes) -> None:
            for channel in by_node.values():
                await client.spublish(channel, tag)

        await publish_all(b"before")
        await wait_until(lambda: len(heard) == 3, "an event on every shard")
        victim_channel = next(iter(by_node.values()))
        cluster.master_serving(victim_channel).kill()
        await wait_until(lambda: not listener.connected, "the listener to see its shard gone")
        await wait_until(lambda: bool(recoveries), "a recovery once subscribed again", within=30)
        assert listener.connected
        heard.clear()

        async def heard_after() -> bool:
            try:
                await publish_all(b"after")
            except (redis.exceptions.RedisError, OSError):
                return False
            await asyncio.sleep(0.2)
            return {channel for channel, _ in heard} == set(by_node.values())

        await wait_until(heard_after, "events on every shard after the failover", within=30)
        assert recoveries == [1]
    finally:
        await cancel_and_wait([task])


async def test_a_channel_heard_on_one_shard_is_not_heard_once_unsubscribed(
    client: RedisCluster,
) -> None:
    await client.initialize()
    heard: list[str] = []
    listener = ShardedListener(
        client,
        lambda channel, body: heard.append(channel),
        ["gw:{gw-un}:replies"],
        classic=[REVOCATIONS],
    )
    task = asyncio.create_task(listener.run())
    try:
        await asyncio.wait_for(listener.wait_connected(), 10)
        channels = [f"ch:{{chat.{n}}}:chat:r{n}" for n in range(6)]
        for channel in channels:
            await asyncio.wait_for(listener.subscribe(channel), 10)
        listener.unsubscribe(channels[0])
        await asyncio.wait_for(listener.subscribe(channels[1]), 10)  # subscribed twice: harmless
        for channel in channels:
            await client.spublish(channel, b"x")
        await wait_until(lambda: len(heard) >= 5, "the other channels' events")
        await asyncio.sleep(0.2)
        assert channels[0] not in heard
        assert sorted(heard) == sorted(channels[1:])
    finally:
        await cancel_and_wait([task])


def test_cluster_mode_reads_its_seeds_and_refuses_a_database() -> None:
    env = Env({"RT_REDIS_CLUSTER": "1", "RT_REDIS_URL": "redis://a:7000, redis://b:7001"})
    settings = BusSettings.from_env(env)
    assert settings.cluster
    assert settings.redis_urls == ["redis://a:7000", "redis://b:7001"]
    assert settings.redis_target == "redis://a:7000,redis://b:7001"
    with pytest.raises(ConfigError, match="database 0"):
        BusSettings.from_env(Env({"RT_REDIS_CLUSTER": "1", "RT_REDIS_URL": "redis://a:7000/3"}))
    single = BusSettings.from_env(Env({"RT_REDIS_URL": "redis://a:7000,b"}))
    assert not single.cluster
    assert single.redis_urls == ["redis://a:7000,b"]


async def test_a_channel_whose_slot_migrates_is_subscribed_again_where_it_went(
    cluster: LocalCluster, client: RedisCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """A slot moved to another primary: the old one pushes an unasked ``sunsubscribe``; the
    listener subscribes on the new one, says so (a recovery), and hears the channel there."""
    await client.initialize()
    channel = "ch:{chat.7}:chat:moving"
    slot = key_slot(channel.encode())
    masters = [node for node in cluster.nodes() if node.is_master]
    source = next(node for node in masters if node.serves(slot))
    target = next(node for node in masters if node is not source)
    heard: list[bytes] = []
    recoveries: list[int] = []
    listener = ShardedListener(
        client,
        lambda name, body: heard.append(body),
        ["gw:{gw-move}:replies"],
        classic=[REVOCATIONS],
        on_reconnect=lambda: recoveries.append(1),
    )
    task = asyncio.create_task(listener.run())

    def assign(owner_id: str) -> None:
        # An empty slot moves with SETSLOT NODE on every primary (no key to migrate).
        for node in masters:
            with redis.Redis.from_url(cluster.server_of(node).url, **cluster.client_options()) as c:
                c.execute_command("CLUSTER", "SETSLOT", slot, "NODE", owner_id)

    try:
        await asyncio.wait_for(listener.wait_connected(), 10)
        await asyncio.wait_for(listener.subscribe(channel), 10)
        assign(target.id)
        await wait_until(lambda: bool(recoveries), "a recovery once subscribed where it went")
        assert listener.connected
        # Told by the old primary, not a lost connection.
        assert "slot moved" in {getattr(record, "why", None) for record in caplog.records}

        async def heard_there() -> bool:
            try:
                await client.spublish(channel, b"moved")
            except (redis.exceptions.RedisError, OSError):
                return False
            await asyncio.sleep(0.1)
            return b"moved" in heard

        await wait_until(heard_there, "the channel heard on its new primary")
    finally:
        await cancel_and_wait([task])
        assign(source.id)
