"""Partitions and the names they give (common/partitions.py, common/keys.py, the registry)."""

from __future__ import annotations

from collections import Counter
from types import MappingProxyType

import pytest
from redis.crc import key_slot

from common.codec import pack_bus
from common.errors import ProtocolError
from common.keys import Partitions, client_channel, event_channel, partition_prefix, request_stream
from common.namespaces import Access, Namespace
from common.partitions import channel_entity, partition_of, partition_tag
from common.registry import Announcement, Offer, Registry, build_registry, decode_announcement


def test_a_partition_is_redis_clusters_key_slot_modulo_the_count() -> None:
    for entity in ("a1", "lobby", "chat:general", "é", "x" * 300):
        assert partition_of(entity, 16384) == key_slot(entity.encode())
        assert partition_of(entity, 7) == key_slot(entity.encode()) % 7
    assert partition_of("anything", 1) == 0
    # The whole string, braces and all: an entity's own braces are no hash tag here.
    assert partition_of("{a}b", 16384) != key_slot(b"{a}b")


def test_entities_spread_over_the_partitions() -> None:
    counts = Counter(partition_of(f"auction-{n}", 4) for n in range(4000))
    assert sorted(counts) == [0, 1, 2, 3]
    assert min(counts.values()) > 800


def test_the_names_of_a_partition_share_its_tag_first() -> None:
    tag = partition_tag("bids", 2)
    assert tag == "{bids.2}"
    assert request_stream("bids", 2) == "svc:{bids.2}:requests"
    assert request_stream("poll") == "svc:poll:requests"
    assert partition_prefix("bids", 2) == "bids:{bids.2}:"
    assert event_channel("auction:a1", tag) == "ch:{bids.2}:auction:a1"
    for name in (
        request_stream("bids", 2),
        partition_prefix("bids", 2) + "x",
        event_channel("a:b", tag),
    ):
        assert key_slot(name.encode()) == key_slot(b"bids.2")


@pytest.mark.parametrize("channel", ["auction:a1", "presence:chat:lobby", "chat:x.y-z"])
def test_an_event_channel_names_its_client_channel(channel: str) -> None:
    assert client_channel(event_channel(channel, "{s.0}")) == channel
    assert client_channel(event_channel(channel)) == channel


def test_the_entity_of_a_channel_is_its_name_in_the_namespace() -> None:
    assert channel_entity("auction:a1") == "a1"
    assert channel_entity("presence:chat:lobby") == "chat:lobby"


_REQUESTS = MappingProxyType({"bids.place": frozenset({"auction", "amount"}), "bids.list": None})
_AUCTION = (Namespace("auction", "bids", Access.AUTHENTICATED, history=True),)


def _read(offer: Offer) -> tuple[Announcement, Registry]:
    announcement = Announcement(offer, "i1")
    registry, refusals = build_registry(
        {"auction": "bids"}, {"bids": announcement.encode()}, [("bids", 10_000)], 0, 0.0
    )
    assert refusals == []
    return announcement, registry


def test_a_partitioned_announcement_routes_by_entity() -> None:
    offer = Offer(
        "bids",
        _REQUESTS,
        _AUCTION,
        partitions=4,
        entities=MappingProxyType({"bids.place": "auction"}),
    )
    announcement, registry = _read(offer)
    assert decode_announcement(announcement.encode()).offer == offer
    assert registry.partitions("bids") == 4
    partition = partition_of("a1", 4)
    place = registry.request_stream("bids", "bids.place", {"auction": "a1"})
    assert place == request_stream("bids", partition)
    # No entity field, or one that is not a string: partition 0 (the service refuses it).
    assert registry.request_stream("bids", "bids.list", {}) == request_stream("bids", 0)
    assert registry.request_stream("bids", "bids.place", {"auction": 5}) == request_stream(
        "bids", 0
    )
    assert registry.entity_stream("bids", "a1") == place
    tag = partition_tag("bids", partition)
    assert registry.event_channel("auction:a1") == event_channel("auction:a1", tag)


def test_a_service_that_announces_no_partitions_keeps_its_one_stream() -> None:
    announcement, registry = _read(Offer("bids", _REQUESTS, _AUCTION))
    assert "partitions" not in announcement.to_wire()
    assert registry.partitions("bids") is None
    assert registry.request_stream("bids", "bids.place", {"auction": "a1"}) == "svc:bids:requests"
    assert registry.event_channel("auction:a1") == "ch:auction:a1"
    # An unknown namespace's events: the untagged name (nobody publishes there).
    assert registry.event_channel("nope:x") == "ch:nope:x"


@pytest.mark.parametrize(
    ("partitions", "entities", "says"),
    [
        (0, {}, "'partitions' must be 1 to 256"),
        (257, {}, "'partitions' must be 1 to 256"),
        (2, {"bids.other": "auction"}, "not one of the service's requests"),
        (2, {"bids.place": "no such"}, "is not a field name"),
    ],
)
def test_a_bad_partitioning_is_refused(
    partitions: int, entities: dict[str, str], says: str
) -> None:
    with pytest.raises(ProtocolError, match=says):
        Offer("bids", _REQUESTS, _AUCTION, partitions, MappingProxyType(entities))


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("partitions", "3", "'partitions' must be an integer"),
        ("entities", ["x"], "'entities' must be"),
    ],
)
def test_a_bad_partitioning_on_the_wire_is_refused(field: str, value: object, says: str) -> None:
    wire = Announcement(Offer("bids", _REQUESTS, _AUCTION, partitions=2), "i1").to_wire()
    wire[field] = value
    with pytest.raises(ProtocolError, match=says):
        decode_announcement(pack_bus(wire))


def test_a_services_partitions_name_each_part() -> None:
    partitions = Partitions("chat", 3)
    assert list(partitions) == [0, 1, 2]
    room = partitions.of("lobby")
    assert room == partition_of("lobby", 3) == partitions.of_channel("chat:lobby")
    assert partitions.prefix(room) == partition_prefix("chat", room)
    assert partitions.stream(room) == request_stream("chat", room)
    assert partitions.event_channel("chat:lobby") == event_channel(
        "chat:lobby", partitions.tag(room)
    )
