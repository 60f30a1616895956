"""Parsing notifications and queries into store operations, and shaping replies (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from common.envelope import Request
from common.errors import ServiceError
from common.keys import Partitions
from presence_service.rules import (
    OFFER,
    Change,
    Listing,
    Query,
    count_reply,
    list_reply,
    parse_change,
    parse_prior,
    parse_query,
    partitions_of,
    subscribe_reply,
)
from tests.support.registry import BUILT_IN_OFFERS, registry_of


#: The registry of the built-ins: the policy of chat:, auction: and presence: channels.
REGISTRY = registry_of(BUILT_IN_OFFERS.values())


def request(kind: str, data: dict[str, Any], user: str | None = "alice") -> Request:
    return Request(kind, data, gateway="gw-1", connection="gw-1.7", user=user, ts=1234)


def test_track_becomes_a_change_of_its_connection() -> None:
    """A track names the connection, gateway, user, seq, stamp and channel of the change."""
    change = parse_change(request("track", {"channel": "chat:lobby", "seq": 3}), REGISTRY)
    assert change == Change("track", "gw-1.7", "gw-1", "alice", 3, 1234, channel="chat:lobby")


def test_prior_notifications_are_changes_stamped_like_their_read() -> None:
    """A read's prior track and untrack become changes of its connection, with its stamp."""
    read = request("presence.list", {"channel": "chat:lobby"})
    prior = (
        {"type": "track", "data": {"channel": "chat:lobby", "seq": 3}},
        {"type": "untrack", "data": {"channel": "chat:side", "seq": 4}},
    )
    changes = parse_prior(Request(**{**_fields(read), "prior": prior}), REGISTRY)
    assert changes == [
        Change("track", "gw-1.7", "gw-1", "alice", 3, 1234, channel="chat:lobby"),
        Change("untrack", "gw-1.7", "gw-1", "alice", 4, 1234, channel="chat:side"),
    ]


@pytest.mark.parametrize(
    "item",
    [
        {"type": "drop", "data": {"channels": [], "seq": 2}},
        {"type": "presence.list", "data": {"channel": "chat:lobby"}},
        {"type": "track", "data": {"channel": "chat:lobby"}},
    ],
)
def test_a_prior_that_is_not_a_valid_track_or_untrack_is_refused(item: dict[str, Any]) -> None:
    """Only a well-formed track or untrack may come before a read: a drop never does."""
    read = request("presence.list", {"channel": "chat:lobby"})
    with pytest.raises(ServiceError):
        parse_prior(Request(**{**_fields(read), "prior": (item,)}), REGISTRY)


def _fields(value: Request) -> dict[str, Any]:
    return {name: getattr(value, name) for name in Request.__slots__}


def test_drop_keeps_its_restart_flag() -> None:
    """A drop carries whether the gateway closed the connection for a restart."""
    change = parse_change(
        request("drop", {"channels": ["chat:a"], "restart": True, "seq": 9}), REGISTRY
    )
    assert change.kind == "drop"
    assert change.restart is True
    assert change.channel == ""
    assert change.channels == ("chat:a",)
    assert change.partition is None


THREE = Partitions("presence", 3)


def _in(partition: int) -> str:
    return next(c for c in (f"chat:r{i}" for i in range(100)) if THREE.of(c) == partition)


def test_a_change_or_read_runs_in_the_partition_of_its_channel() -> None:
    """The partition of a channel's state is that of its presence events' channel."""
    channel = _in(2)
    track = parse_change(request("track", {"channel": channel, "seq": 1}), REGISTRY)
    assert partitions_of(track, THREE) == (2,)
    assert partitions_of(Query(channel, None, 0), THREE) == (2,)
    assert THREE.of_channel("presence:" + channel) == 2


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"channels": [_in(1)]}, (1,)),
        ({"channels": [_in(1), _in(0)]}, (0, 1)),  # one drop from a gateway that sends one
        ({"channels": [], "partition": 2}, (2,)),
        ({"channels": [_in(0)], "partition": 2}, (0, 2)),
        ({"channels": []}, (0, 1, 2)),
        ({"channels": [], "partition": 7}, (0, 1, 2)),  # not one of ours: ignored
    ],
)
def test_a_drop_runs_in_the_partitions_it_names_or_in_all(
    data: dict[str, Any], expected: tuple[int, ...]
) -> None:
    """A drop's channels and partition say where it runs; naming none, it runs everywhere."""
    drop = parse_change(request("drop", {**data, "seq": 5}), REGISTRY)
    assert partitions_of(drop, THREE) == expected


def test_reads_are_routed_by_the_channel_they_name() -> None:
    """The offer names each read's entity: its channel."""
    assert dict(OFFER.entities) == {"presence.list": "channel", "presence.count": "channel"}


@pytest.mark.parametrize(
    ("kind", "data", "user"),
    [
        ("track", {"channel": "chat:lobby"}, "alice"),
        ("track", {"channel": "chat:lobby", "seq": 0}, "alice"),
        ("track", {"channel": "chat:lobby", "seq": True}, "alice"),
        ("track", {"channel": "chat:lobby", "seq": 1}, None),
        ("track", {"channel": "presence:chat:lobby", "seq": 1}, "alice"),
        ("untrack", {"channel": 5, "seq": 1}, "alice"),
        ("drop", {"restart": "yes", "seq": 1}, "alice"),
        ("drop", {"channels": "chat:a", "seq": 1}, "alice"),
        ("drop", {"channels": [1], "seq": 1}, "alice"),
        ("drop", {"partition": "1", "seq": 1}, "alice"),
        ("drop", {"partition": True, "seq": 1}, "alice"),
    ],
)
def test_malformed_notifications_are_refused(
    kind: str, data: dict[str, Any], user: str | None
) -> None:
    """A notification without a positive seq, a user, or a tracked channel is refused."""
    with pytest.raises(ServiceError):
        parse_change(request(kind, data, user), REGISTRY)


def test_a_track_of_a_namespace_not_read_yet_is_taken_on_the_gateways_word() -> None:
    """A gateway read a new namespace before this presence instance did: its track is kept."""
    change = parse_change(request("track", {"channel": "orders:42", "seq": 1}), REGISTRY)
    assert change.channel == "orders:42"


def test_a_query_of_a_namespace_not_announced_is_invalid_channel() -> None:
    """A client's read names only namespaces this instance knows (their policy decides)."""
    with pytest.raises(ServiceError) as refused:
        parse_query(request("presence.count", {"channel": "orders:42"}), 50, REGISTRY)
    assert refused.value.code == "invalid_channel"


def test_a_query_with_an_unknown_field_is_a_bad_request() -> None:
    """presence checks fields with the table it announces."""
    with pytest.raises(ServiceError) as refused:
        parse_query(request("presence.count", {"channel": "chat:r", "x": 1}), 50, REGISTRY)
    assert (refused.value.code, refused.value.details) == ("bad_request", {"field": "x"})


def test_owner_checked_channels_need_the_asker_present() -> None:
    """A chat room's presence is read as its member; an auction's by anyone."""
    assert parse_query(request("presence.list", {"channel": "chat:r"}), 50, REGISTRY) == Query(
        "chat:r", "alice", 50
    )
    assert parse_query(request("presence.count", {"channel": "auction:a"}), 50, REGISTRY) == Query(
        "auction:a", None, 0
    )


def test_subscribe_to_a_presence_channel_checks_the_channel_it_watches() -> None:
    """A gateway's subscribe to presence:C is the check of C, with no history."""
    query = parse_query(request("subscribe", {"channel": "presence:chat:r"}), 50, REGISTRY)
    assert query == Query("chat:r", "alice", 0)
    assert subscribe_reply(query, Listing(True, 1)) == {"position": None}
    with pytest.raises(ServiceError) as refused:
        subscribe_reply(query, Listing(False))
    assert refused.value.code == "forbidden"
    with pytest.raises(ServiceError):
        parse_query(request("subscribe", {"channel": "chat:r"}), 50, REGISTRY)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ({}, "bad_request"),
        ({"channel": "nope"}, "invalid_channel"),
        ({"channel": "presence:chat:r"}, "invalid_channel"),
    ],
)
def test_queries_need_a_tracked_channel(data: dict[str, Any], code: str) -> None:
    """A query names a channel whose namespace keeps presence."""
    with pytest.raises(ServiceError) as refused:
        parse_query(request("presence.list", data), 50, REGISTRY)
    assert refused.value.code == code


def test_replies_sort_users_and_flag_truncation() -> None:
    """A list reply sorts users by name and says when it is a part; count is a number."""
    query = Query("auction:a", None, 2)
    listing = Listing(True, 3, True, (("zoe", 1), ("amy", 2)))
    assert list_reply(query, listing) == {
        "channel": "auction:a",
        "users": [{"user": "amy", "connections": 2}, {"user": "zoe", "connections": 1}],
        "count": 3,
        "truncated": True,
    }
    assert count_reply(query, listing) == {"channel": "auction:a", "count": 3}
