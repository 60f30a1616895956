"""Chat with three partitions, against a real Redis: each room's keys and events in its own
partition, whatever partitions the requests of one batch are about."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot

from chat_service.keys import place_of
from chat_service.settings import ChatSettings
from chat_service.store import SCRIPTS, ChatStore
from common.codec import load_bus
from common.envelope import Event
from common.keys import Partitions
from common.lua import source
from devtools.net import LOOPBACK
from devtools.redis_cluster import LocalCluster
from tests.chat.handling import chat_request, code, data_of, ok, post, start_service
from tests.chat.support import batch_over_every_partition, room_keys, rooms_in
from tests.support.waiting import Deadline


P = 3
PARTITIONS = Partitions("chat", P)
#: Two rooms per partition, a batch's requests interleaving them.
ROOMS = [room for n in PARTITIONS for room in rooms_in(PARTITIONS, n, "room-", 2)]
SENTINEL = "ch:end"
#: Where the scripts that publish take their pub/sub channel: ARGV[6] of send.lua, ARGV[4]
#: of typing.lua.
EVENT_CHANNEL_ARGUMENT = {"send": 5, "typing": 3}


@pytest.fixture
async def events(redis: Redis) -> AsyncIterator[PubSub]:
    """A pub/sub connection on every event channel (``ch:*``) of the test's Redis."""
    pubsub = redis.pubsub()
    await pubsub.psubscribe("ch:*")
    assert await pubsub.get_message(timeout=5.0) is not None  # the confirmation
    try:
        yield pubsub
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]


async def _published(redis: Redis, pubsub: PubSub) -> list[tuple[str, Event]]:
    """Every event published so far, with its pub/sub channel, in order: read up to a
    sentinel published after them."""
    await redis.publish(SENTINEL, b"")
    received: list[tuple[str, Event]] = []
    deadline = Deadline(5.0)
    while not deadline.expired():
        message = await pubsub.get_message(
            ignore_subscribe_messages=True, timeout=deadline.remaining()
        )
        if message is None:
            continue
        channel = message["channel"].decode()
        if channel == SENTINEL:
            return received
        received.append((channel, Event.from_wire(load_bus(message["data"]))))
    raise AssertionError(f"no sentinel within the deadline; received {received}")


def test_the_rooms_span_every_partition() -> None:
    """The rooms of these tests are in all three partitions (else they would prove little)."""
    assert sorted({PARTITIONS.of(room) for room in ROOMS}) == [0, 1, 2]


async def test_one_batch_over_every_partition_keeps_each_room_in_its_own(
    redis: Redis, events: PubSub
) -> None:
    """A batch joining and posting in rooms of three partitions writes each room's keys
    under its partition's prefix, and publishes its events on its partition's channel."""
    service = await start_service(redis, P)
    joins = [chat_request("chat.join", room=room) for room in ROOMS]
    sends = [
        chat_request("chat.send", room=room, text=f"in {room}", client_id="c1") for room in ROOMS
    ]
    outcomes = await service.handle_batch([*joins, *sends])
    assert all(data_of(outcome)["created"] for outcome in outcomes[: len(ROOMS)])
    positions = [data_of(outcome)["position"] for outcome in outcomes[len(ROOMS) :]]

    for room in ROOMS:
        keys = room_keys(room, P)
        assert keys.prefix == f"chat:{{chat.{PARTITIONS.of(room)}}}:"
        assert await redis.exists(keys.room(room), keys.log(room)) == 2
    for key in [key.decode() async for key in redis.scan_iter("chat:*")]:
        prefix, _, rest = key.partition("}:")
        kind, _, name = rest.partition(":")
        partition = int(prefix.removeprefix("chat:{chat."))
        if kind in ("room", "members", "log", "sent", "typing"):
            assert PARTITIONS.of(name.partition("|")[0]) == partition, key
        else:
            # The user's own keys: one per partition the user created or posted in.
            assert (kind, name) in (("rate", "alice"), ("owned", "alice"), ("create-rate", "alice"))
    for kind in ("rate", "owned", "create-rate"):
        for n in PARTITIONS:
            assert await redis.exists(f"{PARTITIONS.prefix(n)}{kind}:alice"), (kind, n)

    # In order within a partition; the partitions' pipelines run side by side.
    published = await _published(redis, events)
    assert sorted(
        (channel, event.channel, event.position) for channel, event in published
    ) == sorted(
        (place_of(PARTITIONS, room).event_channel, f"chat:{room}", position)
        for room, position in zip(ROOMS, positions, strict=True)
    )
    assert {channel for channel, _ in published} == {
        f"ch:{{chat.{PARTITIONS.of(room)}}}:chat:{room}" for room in ROOMS
    }


async def test_a_send_posts_once_whatever_partitions_its_batch_spans(redis: Redis) -> None:
    """The same client_id sent twice in one batch over three partitions, then the whole batch
    again (a redelivery), posts one message per room and user, each repeat answered alike."""
    service = await start_service(redis, P)
    await service.handle_batch([chat_request("chat.join", room=room) for room in ROOMS])
    batch = [
        chat_request("chat.send", user, room=room, text=f"{user} in {room}", client_id="same")
        for _ in range(2)
        for room in ROOMS
        for user in ("alice", "bob")
    ]
    first = [data_of(outcome) for outcome in await service.handle_batch(batch)]
    again = [data_of(outcome) for outcome in await service.handle_batch(batch)]
    assert again == first
    half = len(first) // 2
    assert first[half:] == first[:half]
    assert len({answer["id"] for answer in first}) == len(ROOMS) * 2
    for room in ROOMS:
        history = await ok(service, "chat.history", room=room)
        assert sorted(message["text"] for message in history["messages"]) == [
            f"alice in {room}",
            f"bob in {room}",
        ]
        assert await redis.xlen(room_keys(room, P).log(room)) == 2


async def test_history_and_replay_are_each_rooms_own(redis: Redis) -> None:
    """Messages posted in rooms of three partitions in shared batches: each room's history,
    subscribe with since and join with since give that room's messages, in order, only."""
    service = await start_service(redis, P, join_messages=10)
    await service.handle_batch([chat_request("chat.join", room=room) for room in ROOMS])
    positions: dict[str, list[str]] = {room: [] for room in ROOMS}
    for n in range(4):
        batch = [
            chat_request("chat.send", room=room, text=f"{room} {n}", client_id=f"c{n}")
            for room in ROOMS
        ]
        for room, outcome in zip(ROOMS, await service.handle_batch(batch), strict=True):
            positions[room].append(data_of(outcome)["position"])
    for room in ROOMS:
        texts = [f"{room} {n}" for n in range(4)]
        history = await ok(service, "chat.history", room=room, limit=10)
        assert [message["text"] for message in history["messages"]] == texts
        assert [message["position"] for message in history["messages"]] == positions[room]
        since = positions[room][0]
        replay = await ok(service, "subscribe", channel=f"chat:{room}", since=since)
        assert replay["recovered"] is True
        assert [event["data"]["text"] for event in replay["events"]] == texts[1:]
        assert replay["position"] == positions[room][-1]
        joined = await ok(service, "chat.join", room=room, since=since)
        assert [message["text"] for message in joined["messages"]] == texts[1:]


async def test_a_users_limits_hold_per_partition(redis: Redis) -> None:
    """The room quota and the send rate are a user's in each partition (docs/chat.md): one room
    and one message per partition pass, a second in the same partition is refused."""
    service = await start_service(redis, P, max_rooms=1, send_burst=1, send_rate=0.01)
    first, second = ([rooms_in(PARTITIONS, n, "own-", 2)[i] for n in PARTITIONS] for i in (0, 1))
    for room in first:
        assert (await ok(service, "chat.join", room=room))["created"] is True
    for room in second:
        assert await code(service, "chat.join", room=room) == "too_many_rooms"
    for room in first:
        await post(service, room, 1)
    assert await code(service, "chat.send", room=first[0], text="x", client_id="more") == (
        "rate_limited"
    )
    # Another user has buckets of their own in every partition.
    assert (await ok(service, "chat.send", "bob", room=first[0], text="x", client_id="more"))[
        "position"
    ]


def test_every_script_call_runs_on_a_redis_cluster(cluster: LocalCluster) -> None:
    """Each call of a batch over three partitions runs on a real cluster, publishing with
    SPUBLISH as the loader sets it there: no CROSSSLOT, no key outside the call's slot (the
    quota's pruning included), and each event reaches its room's shard channel."""
    seeds = [ClusterNode(LOOPBACK, server.port) for server in cluster.servers]  # type: ignore[no-untyped-call]
    client = RedisCluster(startup_nodes=seeds, **cluster.client_options())
    unused = Redis.from_url(cluster.seed_urls[0])  # the store's client: never called here
    store = ChatStore(unused, ChatSettings(max_rooms=2), PARTITIONS)
    pubsub = client.pubsub()  # type: ignore[no-untyped-call]
    try:
        batch = batch_over_every_partition(store, PARTITIONS)
        channels = {place_of(PARTITIONS, room).event_channel for room in batch.rooms}
        # The slot, not only the node: a script may reach any slot of its node, and SPUBLISH
        # routes by the channel's slot.
        for room_call in batch.calls:
            argument = EVENT_CHANNEL_ARGUMENT.get(room_call.call.script)
            if argument is not None:
                channel = str(room_call.call.args[argument]).encode()
                assert key_slot(channel) == key_slot(room_call.call.keys[0].encode())
        pubsub.ssubscribe(*channels)
        deadline = Deadline(10.0)
        confirmed = 0
        while confirmed < len(channels) and not deadline.expired():
            message = pubsub.get_sharded_message(timeout=0.1)
            confirmed += message is not None and message["type"] == "ssubscribe"
        assert confirmed == len(channels)

        sources = {name: _on_a_cluster(source("chat_service", name)) for name in SCRIPTS}
        results = [
            client.eval(sources[call.script], len(call.keys), *call.keys, *call.args)
            for call in (room_call.call for room_call in batch.calls)
        ]
        refused = batch.results_of("create over the quota", results)
        assert [result[0] for result in refused] == [b"too_many_rooms"] * P
        assert [result[0] for result in batch.results_of("send", results)] == [b"posted"] * P

        received: set[str] = set()
        while len(received) < 2 * P and not deadline.expired():
            message = pubsub.get_sharded_message(timeout=0.1)
            if message is not None and message["type"] == "smessage":
                event = Event.from_wire(load_bus(message["data"]))
                assert (
                    message["channel"].decode()
                    == place_of(PARTITIONS, event.channel.removeprefix("chat:")).event_channel
                )
                received.add(f"{event.channel} {event.event}")
        assert received == {
            f"chat:{room} {kind}" for room in batch.rooms for kind in ("message", "typing")
        }
    finally:
        pubsub.close()
        client.close()
        asyncio.run(unused.aclose())


def _on_a_cluster(chunk: str) -> str:
    """A script's chunk as the loader will run it on a cluster: publishing with SPUBLISH."""
    line = "local PUBLISH = 'PUBLISH'"
    assert line in chunk
    return chunk.replace(line, "local PUBLISH = 'SPUBLISH'")
