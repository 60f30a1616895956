"""The presence store's scripts on a real Redis: counting, events, ordering, graces, reaping
(one partition; tests/presence/test_partitions.py has three)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from common.codec import load_bus
from common.envelope import now_ms
from common.keys import GATEWAY_LEASES, Partitions
from presence_service.rules import Listing, Query
from presence_service.store import PresenceStore
from tests.presence.store_support import Events, apply, change, listen, members
from tests.support.waiting import MS, wait_until


GRACE = 0.3
PARTITIONS = Partitions("presence")


@pytest.fixture
async def store(redis: Redis) -> PresenceStore:
    """A store of one partition with a short restart grace and its scripts loaded."""
    store = PresenceStore(redis, PARTITIONS, grace=GRACE, tombstone_ttl=600, batch=3)
    await store.load()
    return store


@pytest.fixture
async def events(redis: Redis) -> AsyncIterator[Events]:
    """A subscription to every presence event channel, confirmed before the test starts."""
    async for subscribed in listen(redis, PARTITIONS):
        yield subscribed


async def test_first_connection_joins_and_last_leaves(store: PresenceStore, events: Events) -> None:
    """Two connections of one user make one join and, when both are gone, one leave."""
    await apply(store, change("track", "g1.1", "alice", "auction:a"))
    await apply(store, change("track", "g2.1", "alice", "auction:a"))
    assert await members(store, "auction:a") == {"alice": 2}
    assert await events.drain() == [("presence:auction:a", "join", "alice")]
    await apply(store, change("untrack", "g1.1", "alice", "auction:a"))
    assert await events.drain() == []
    await apply(store, change("drop", "g2.1", "alice"))
    assert await events.drain() == [("presence:auction:a", "leave", "alice")]
    assert await members(store, "auction:a") == {}


async def test_event_envelope_is_a_valid_bus_event(redis: Redis, store: PresenceStore) -> None:
    """A join is a bus event of version 1 with a map of data, no position and a unique id."""
    pubsub = redis.pubsub()
    await pubsub.subscribe(PARTITIONS.event_channel("presence:chat:room"))
    try:
        async with asyncio.timeout(5):
            while (await pubsub.get_message(timeout=1)) is None:
                pass  # the subscription's confirmation
        await apply(
            store,
            change("track", "g1.1", "ann", "chat:room"),
            change("track", "g1.2", "bob", "chat:room"),
        )
        bodies: list[dict[str, Any]] = []
        async with asyncio.timeout(5):
            while len(bodies) < 2:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
                if message is not None:
                    bodies.append(load_bus(message["data"]))
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
    first = bodies[0]
    assert first["v"] == 1
    assert first["kind"] == "event"
    assert first["channel"] == "presence:chat:room"
    assert first["event"] == "join"
    assert first["data"] == {"user": "ann"}
    assert "position" not in first
    assert isinstance(first["ts"], int)
    assert abs(first["ts"] - now_ms()) < 60_000
    assert len(first["id"]) == 32
    assert first["id"] != bodies[1]["id"]


async def test_older_notification_handled_late_is_refused(
    store: PresenceStore, events: Events
) -> None:
    """An untrack applied before the track that preceded it leaves the user absent, silently."""
    late_track = change("track", "g1.1", "alice", "auction:b", seq=1)
    untrack = change("untrack", "g1.1", "alice", "auction:b", seq=2)
    assert await apply(store, untrack, late_track) == [True, False]
    assert await members(store, "auction:b") == {}
    assert await events.drain() == []
    # A later track (seq 3) is applied.
    assert await apply(store, change("track", "g1.1", "alice", "auction:b", seq=3)) == [True]
    assert await events.drain() == [("presence:auction:b", "join", "alice")]


async def test_duplicate_delivery_is_applied_once(store: PresenceStore, events: Events) -> None:
    """The same track or untrack delivered twice changes presence once."""
    track = change("track", "g1.1", "alice", "auction:c", seq=1)
    untrack = change("untrack", "g1.1", "alice", "auction:c", seq=2)
    assert await apply(store, track, track, untrack, untrack) == [True, False, True, False]
    assert await events.drain() == [
        ("presence:auction:c", "join", "alice"),
        ("presence:auction:c", "leave", "alice"),
    ]


async def test_drop_refuses_late_notifications_of_its_connection(
    store: PresenceStore, events: Events
) -> None:
    """After a drop, late notifications of its connection are refused; later-stamped are new."""
    stamp = now_ms()
    assert await apply(
        store,
        change("drop", "g1.7", "alice", seq=3, ts=stamp),
        change("track", "g1.7", "alice", "auction:d", seq=2, ts=stamp),
        change("drop", "g1.7", "alice", seq=3, ts=stamp),
    ) == [True, False, False]
    assert await members(store, "auction:d") == {}
    # The gateway restarted under the same id: connection g1.7 is another one now.
    assert await apply(store, change("track", "g1.7", "bob", "auction:d", seq=1, ts=stamp + 5))
    assert await members(store, "auction:d") == {"bob": 1}
    assert await events.drain() == [("presence:auction:d", "join", "bob")]


async def test_restart_drop_lingers_and_a_reconnect_absorbs_it(
    store: PresenceStore, events: Events, redis: Redis
) -> None:
    """A restart drop keeps the user present; their reconnect in the grace makes no event."""
    await apply(
        store,
        change("track", "g1.1", "alice", "auction:e"),
        change("track", "g1.1", "alice", "auction:f"),
    )
    await events.drain()
    await apply(store, change("drop", "g1.1", "alice", restart=True))
    assert await members(store, "auction:e") == {"alice": 1}
    await apply(store, change("track", "g2.4", "alice", "auction:e"))
    assert await members(store, "auction:e") == {"alice": 1}
    assert await redis.zcard(store.key(0, "lingering")) == 1  # auction:f still lingers
    await apply(store, change("track", "g2.4", "alice", "auction:f"))
    assert await redis.zcard(store.key(0, "lingering")) == 0
    assert await redis.exists(store.key(0, "lu:alice")) == 0
    assert await store.expire_lingering() == (0, 0)
    assert await events.drain() == []
    assert await members(store, "auction:f") == {"alice": 1}


async def test_grace_without_reconnect_ends_in_one_leave(
    store: PresenceStore, events: Events, redis: Redis
) -> None:
    """A restart drop with no reconnect is released after the grace, with exactly one leave."""
    await apply(store, change("track", "g1.1", "alice", "auction:g"))
    await events.drain()
    await apply(store, change("drop", "g1.1", "alice", restart=True))
    assert await store.expire_lingering() == (0, 0)  # still in its grace
    released: list[int] = []

    async def released_once() -> bool:
        released.append((await store.expire_lingering())[0])
        return released[-1] != 0

    await wait_until(released_once, "the release after the grace", within=GRACE + 5_000 * MS)
    assert released[-1] == 1
    assert await store.expire_lingering() == (0, 0)
    assert await events.drain() == [("presence:auction:g", "leave", "alice")]
    assert await members(store, "auction:g") == {}
    assert await redis.keys(store.key(0, "linger*")) == []


async def test_restart_drop_with_another_connection_does_not_linger(
    store: PresenceStore, events: Events, redis: Redis
) -> None:
    """A user connected elsewhere too loses the restarted connection at once, with no event."""
    await apply(
        store,
        change("track", "g1.1", "alice", "auction:h"),
        change("track", "g2.1", "alice", "auction:h"),
        change("drop", "g1.1", "alice", restart=True),
    )
    assert await members(store, "auction:h") == {"alice": 1}
    assert await redis.zcard(store.key(0, "lingering")) == 0
    assert await events.drain() == [("presence:auction:h", "join", "alice")]


async def test_dead_gateway_is_reaped_once(
    store: PresenceStore, events: Events, redis: Redis
) -> None:
    """A gateway whose lease expired loses its connections: one leave per user gone, once."""
    now = now_ms()
    await redis.zadd(GATEWAY_LEASES, {"gdead": now - 1000, "galive": now + 60_000})
    changes = [change("track", f"gdead.{i}", f"u{i}", "auction:i") for i in range(5)]
    changes.append(change("track", "gdead.9", "u0", "auction:i"))  # u0 twice on the dead one
    changes.append(change("track", "galive.1", "u4", "auction:i"))  # u4 also elsewhere
    await apply(store, *changes)
    await events.drain()
    reaped = await store.reap_dead_gateways()
    assert reaped.gateways == ("gdead",)
    assert reaped.connections == 6  # in batches of 3
    assert reaped.leaves == 4
    leaves = await events.drain()
    assert sorted(leaves) == [("presence:auction:i", "leave", f"u{i}") for i in range(4)]
    assert await members(store, "auction:i") == {"u4": 1}
    assert await redis.zscore(GATEWAY_LEASES, "gdead") is None
    assert (await store.reap_dead_gateways()).connections == 0
    # A notification of the dead gateway handled late is refused.
    late = change("track", "gdead.12", "u7", "auction:i", ts=now - 5000)
    assert await apply(store, late) == [False]
    assert await members(store, "auction:i") == {"u4": 1}


async def test_gateway_renewing_its_lease_is_left_alone(store: PresenceStore, redis: Redis) -> None:
    """A gateway whose lease is current keeps its connections through a sweep."""
    await redis.zadd(GATEWAY_LEASES, {"gok": now_ms() + 60_000})
    await apply(store, change("track", "gok.1", "alice", "auction:j"))
    assert (await store.reap_dead_gateways()).connections == 0
    assert await members(store, "auction:j") == {"alice": 1}


async def test_list_is_bounded_and_count_is_exact(store: PresenceStore) -> None:
    """A list of a channel larger than the limit is truncated; the count is exact."""
    await apply(store, *(change("track", f"g1.{i}", f"user{i:03}", "auction:k") for i in range(30)))
    listing, counted = await store.run([Query("auction:k", None, 10), Query("auction:k", None, 0)])
    assert isinstance(listing, Listing)
    assert isinstance(counted, Listing)
    assert listing.count == counted.count == 30
    assert listing.truncated
    assert 10 <= len(listing.users) < 30
    assert counted.users == ()


async def test_member_only_query_refuses_others(store: PresenceStore) -> None:
    """A query that needs the asker present is refused to anyone else."""
    await apply(store, change("track", "g1.1", "alice", "chat:secret"))
    refused, allowed = await store.run(
        [Query("chat:secret", "mallory", 10), Query("chat:secret", "alice", 10)]
    )
    assert refused == Listing(allowed=False)
    assert isinstance(allowed, Listing)
    assert allowed.users == (("alice", 1),)


async def test_scripts_are_reloaded_after_redis_forgets_them(
    store: PresenceStore, redis: Redis
) -> None:
    """A batch still runs after SCRIPT FLUSH (as after a Redis restart)."""
    await redis.script_flush()
    assert await apply(store, change("track", "g1.1", "alice", "auction:l")) == [True]
    assert await members(store, "auction:l") == {"alice": 1}
