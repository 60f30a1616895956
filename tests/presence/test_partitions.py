"""The presence store with three partitions: each channel's state, events and sweeps in its
own partition, one connection's drops in each, and every effect still exactly once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from common.envelope import now_ms
from common.keys import GATEWAY_LEASES, Partitions
from common.lua import text
from presence_service.rules import Listing, Query, Reaped
from presence_service.store import PresenceStore
from tests.presence.store_support import Events, apply, change, channel_in, listen, members
from tests.support.waiting import MS, wait_until


GRACE = 0.3
PARTITIONS = Partitions("presence", 3)
#: A channel in each partition, and a second one in partition 0.
C0, C1, C2 = (channel_in(PARTITIONS, n, "auction:p") for n in range(3))
C0B = channel_in(PARTITIONS, 0, "chat:q")


def make_store(redis: Redis, batch: int = 2) -> PresenceStore:
    return PresenceStore(redis, PARTITIONS, grace=GRACE, tombstone_ttl=600, batch=batch)


@pytest.fixture
async def store(redis: Redis) -> PresenceStore:
    """A store of three partitions with a short restart grace and its scripts loaded."""
    store = make_store(redis)
    await store.load()
    return store


@pytest.fixture
async def events(redis: Redis) -> AsyncIterator[Events]:
    """A subscription to the presence events of the three partitions."""
    async for subscribed in listen(redis, PARTITIONS):
        yield subscribed


async def keys_of(redis: Redis, partition: int) -> list[str]:
    """Every key of one partition, sorted."""
    pattern = PARTITIONS.prefix(partition) + "*"
    return sorted(text(key) for key in await redis.keys(pattern))


async def test_the_channels_state_lives_in_its_own_partition(
    store: PresenceStore, redis: Redis
) -> None:
    """A track is kept under its channel's partition's tag, and nowhere else."""
    assert len({C0, C1, C2}) == 3
    await apply(store, change("track", "g1.1", "alice", C1))
    names = [f"ch:{C1}", "channels", "conn:g1.1", "gw:g1", "users"]
    assert await keys_of(redis, 1) == sorted(PARTITIONS.prefix(1) + name for name in names)
    assert await keys_of(redis, 0) == await keys_of(redis, 2) == []
    assert await members(store, C1) == {"alice": 1}


async def test_a_connection_in_three_partitions_leaves_each_channel_once_when_dropped(
    store: PresenceStore, events: Events, redis: Redis
) -> None:
    """Its drops, one per partition (duplicated), end each channel's presence with one leave."""
    await apply(store, *(change("track", "g1.1", "alice", c) for c in (C0, C0B, C1, C2)))
    await apply(store, change("track", "g2.1", "bob", C1))
    await apply(store, change("untrack", "g1.1", "alice", C2))  # none left in partition 2
    await events.drain()
    drops = [
        change("drop", "g1.1", "alice", seq=10, channels=(C0, C0B)),
        change("drop", "g1.1", "alice", seq=10, channels=(C1,)),
        change("drop", "g1.1", "alice", seq=10, partition=2),
    ]
    assert await apply(store, *drops) == [True, True, True]
    assert await apply(store, *drops) == [False, False, False]  # delivered again
    assert sorted(await events.drain()) == sorted(
        [("presence:" + c, "leave", "alice") for c in (C0, C0B, C1)]
    )
    assert await members(store, C1) == {"bob": 1}
    for partition in range(3):
        record = await redis.hgetall(store.key(partition, "conn:g1.1"))
        assert list(record) == [b"dt"], partition  # a tombstone in each partition
        assert not await redis.sismember(store.key(partition, "gw:g1"), "g1.1")


async def test_a_late_notification_after_the_drops_is_refused_in_each_partition(
    store: PresenceStore, events: Events
) -> None:
    """Tracks of a dropped connection handled after its drops change no partition."""
    stamp = now_ms()
    await apply(store, change("track", "g1.2", "ann", C0, seq=1, ts=stamp))
    await apply(
        store,
        change("drop", "g1.2", "ann", seq=4, ts=stamp + 3, channels=(C0,)),
        change("drop", "g1.2", "ann", seq=4, ts=stamp + 3, partition=1),
        change("drop", "g1.2", "ann", seq=4, ts=stamp + 3, partition=2),
    )
    late = [
        change("track", "g1.2", "ann", channel, seq=seq, ts=stamp + seq)
        for seq, channel in ((2, C1), (3, C2), (2, C0B))
    ]
    assert await apply(store, *late) == [False, False, False]
    for channel in (C0, C0B, C1, C2):
        assert await members(store, channel) == {}
    assert await events.drain() == [
        ("presence:" + C0, "join", "ann"),
        ("presence:" + C0, "leave", "ann"),
    ]


async def test_a_drop_naming_no_partition_runs_in_every_partition(
    store: PresenceStore, redis: Redis
) -> None:
    """A drop with no channel and no partition leaves a tombstone wherever it may be needed."""
    stamp = now_ms()
    assert await apply(store, change("drop", "g1.3", "cy", seq=2, ts=stamp)) == [True]
    for partition in range(3):
        assert await redis.hexists(store.key(partition, "conn:g1.3"), "dt"), partition
    late = change("track", "g1.3", "cy", C2, seq=1, ts=stamp)
    assert await apply(store, late) == [False]


async def test_a_restart_drop_lingers_in_each_partition_and_expires_once(
    redis: Redis, redis_url: str, events: Events
) -> None:
    """A restarted connection lingers per partition; a reconnect absorbs one, two racing
    sweepers release the others with one leave each."""
    other = Redis.from_url(redis_url)
    first, second = make_store(redis), make_store(other)
    await first.load()
    try:
        await apply(first, *(change("track", "g1.4", "dee", c) for c in (C0, C1, C2)))
        await events.drain()
        await apply(
            first,
            *(
                change("drop", "g1.4", "dee", seq=9, restart=True, channels=(c,))
                for c in (C0, C1, C2)
            ),
        )
        for partition in range(3):
            assert await redis.zcard(first.key(partition, "lingering")) == 1
        await apply(first, change("track", "g2.7", "dee", C1))  # back in C1 within the grace
        assert await redis.zcard(first.key(1, "lingering")) == 0
        released: list[int] = []

        async def both_released() -> bool:
            rounds = await asyncio.gather(first.expire_lingering(), second.expire_lingering())
            released.extend(count for count, _ in rounds)
            return sum(released) == 2

        await wait_until(both_released, "the graces over", within=GRACE + 5_000 * MS)
        assert sorted(await events.drain()) == [
            ("presence:" + C0, "leave", "dee"),
            ("presence:" + C2, "leave", "dee"),
        ]
        assert await members(first, C1) == {"dee": 1}
        assert await first.expire_lingering() == (0, 0)
    finally:
        await other.aclose()


async def test_two_instances_reap_a_dead_gateway_across_partitions_once(
    redis: Redis, redis_url: str, events: Events
) -> None:
    """Racing sweepers release each connection of a dead gateway once, in every partition,
    and remove its lease once."""
    other = Redis.from_url(redis_url)
    stores = [make_store(redis, batch=1), make_store(other, batch=1)]
    await stores[0].load()
    try:
        now = now_ms()
        await redis.zadd(GATEWAY_LEASES, {"gdead": now - 1000, "galive": now + 60_000})
        users = [f"u{i}" for i in range(4)]
        channels = (C0, C0B, C1, C2)
        # Each user on the dead gateway in every channel, u0 twice; u3 on the live one too.
        tracks = [
            change("track", f"gdead.{i}", user, channel)
            for i, user in enumerate(users)
            for channel in channels
        ]
        tracks += [change("track", "gdead.9", "u0", channel) for channel in channels]
        tracks += [change("track", "galive.1", "u3", channel) for channel in channels]
        await apply(stores[0], *tracks)
        await events.drain()

        reaped = await asyncio.gather(*(store.reap_dead_gateways() for store in stores))
        assert sorted(gateway for r in reaped for gateway in r.gateways) == ["gdead"]
        # 5 connections, each known to the 3 partitions of its 4 channels.
        assert sum(r.connections for r in reaped) == 5 * 3
        gone = [("presence:" + c, "leave", u) for c in channels for u in users[:3]]
        assert sum(r.leaves for r in reaped) == len(gone)
        assert sorted(await events.drain()) == sorted(gone)
        for channel in channels:
            assert await members(stores[0], channel) == {"u3": 1}
        assert await redis.zscore(GATEWAY_LEASES, "gdead") is None
        for partition in range(3):
            assert await redis.zscore(stores[0].key(partition, "dead"), "gdead") == now - 1000
        # Its notifications handled late are refused in every partition.
        late = [change("track", "gdead.12", "u7", c, ts=now - 5000) for c in (C0, C1, C2)]
        assert await apply(stores[0], *late) == [False, False, False]
        assert (await stores[1].reap_dead_gateways()).connections == 0
    finally:
        await other.aclose()


async def test_a_gateway_that_renews_while_being_reaped_keeps_its_lease(
    redis: Redis, events: Events
) -> None:
    """A reaping cut short by its call budget, then a renewal: the rest is left alone."""
    store = make_store(redis, batch=1)
    await store.load()
    now = now_ms()
    await redis.zadd(GATEWAY_LEASES, {"gslow": now - 1000})
    await apply(
        store, *(change("track", f"gslow.{i}", f"w{i}", c) for i in range(2) for c in (C0, C1))
    )
    await events.drain()
    partial = await store.reap_dead_gateways(max_calls=3)  # one connection per partition
    assert partial.gateways == ()
    assert partial.connections == 2
    assert await redis.zscore(GATEWAY_LEASES, "gslow") == now - 1000
    await redis.zadd(GATEWAY_LEASES, {"gslow": now + 60_000})  # back, renewed
    assert await store.reap_dead_gateways() == Reaped()
    assert await redis.zscore(GATEWAY_LEASES, "gslow") == now + 60_000
    assert len(await events.drain()) == 2
    remaining = [await members(store, c) for c in (C0, C1)]
    assert [len(users) for users in remaining] == [1, 1]


async def test_a_batch_mixing_partitions_keeps_each_channels_order(
    store: PresenceStore, events: Events
) -> None:
    """Calls grouped by partition keep their order within it; results come in request order."""
    results = await store.run(
        [
            change("track", "g1.5", "eve", C0, seq=1),
            change("track", "g1.5", "eve", C1, seq=2),
            Query(C0, None, 10),
            change("untrack", "g1.5", "eve", C0, seq=3),
            Query(C1, "eve", 10),
            change("track", "g1.5", "eve", C2, seq=4),
            Query(C0, None, 10),
        ]
    )
    assert [type(result).__name__ for result in results] == [
        *("Applied", "Applied", "Listing", "Applied", "Listing", "Applied", "Listing")
    ]
    assert results[2] == Listing(True, 1, False, (("eve", 1),))
    assert results[4] == Listing(True, 1, False, (("eve", 1),))
    assert results[6] == Listing(True, 0, False, ())
    assert await events.drain() == [
        ("presence:" + C0, "join", "eve"),
        ("presence:" + C0, "leave", "eve"),
        ("presence:" + C1, "join", "eve"),
        ("presence:" + C2, "join", "eve"),
    ]


async def test_the_gauges_sum_the_partitions(store: PresenceStore, redis: Redis) -> None:
    """Channels add up exactly; a user present in two partitions counts in each."""
    await redis.zadd(GATEWAY_LEASES, {"g1": now_ms() + 60_000})
    await apply(
        store,
        change("track", "g1.6", "fay", C0),
        change("track", "g1.6", "fay", C0B),
        change("track", "g1.6", "fay", C1),
        change("track", "g1.7", "gus", C1),
    )
    stats = await store.stats()
    assert (stats.channels, stats.users, stats.lingering, stats.gateways) == (3, 3, 0, 1)
