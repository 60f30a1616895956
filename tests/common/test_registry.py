"""The namespace registry's pure rules: announcements on the wire, and a read made a registry."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest

from common.codec import pack_bus
from common.errors import ErrorCode, ProtocolError
from common.namespaces import Access, Namespace
from common.registry import EMPTY_REGISTRY, Announcement, Offer, build_registry, decode_announcement
from tests.support.registry import BUILT_IN_OFFERS


POLL = Offer(
    "poll",
    MappingProxyType(
        {
            "poll.create": frozenset({"question", "options", "closes_in"}),
            "poll.vote": frozenset({"poll", "option", "key"}),
            "poll.get": frozenset({"poll"}),
            "poll.any": None,
        }
    ),
    (Namespace("poll", "poll", Access.AUTHENTICATED, history=True, presence=True),),
)


def _wire(**changes: Any) -> dict[str, Any]:
    return {**Announcement(POLL, "poll-1", "id-1", 1700).to_wire(), **changes}


def test_an_announcement_is_the_specs_map() -> None:
    """The wire form is docs/bus.md's map, field by field."""
    assert _wire() == {
        "v": 1,
        "kind": "announcement",
        "id": "id-1",
        "ts": 1700,
        "service": "poll",
        "instance": "poll-1",
        "requests": {
            "poll.create": ["closes_in", "options", "question"],
            "poll.vote": ["key", "option", "poll"],
            "poll.get": ["poll"],
            "poll.any": None,
        },
        "namespaces": [
            {"name": "poll", "access": "authenticated", "history": True, "presence": True}
        ],
    }


@pytest.mark.parametrize("offer", [POLL, *BUILT_IN_OFFERS.values()], ids=lambda o: o.service)
def test_an_announcement_decodes_to_what_was_encoded(offer: Offer) -> None:
    """encode, then decode, gives the same offer, instance, id and time."""
    announcement = Announcement(offer, "i-1")
    assert decode_announcement(announcement.encode()) == announcement


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"v": 2}, "not a bus v1 announcement"),
        ({"kind": "event"}, "not a bus v1 announcement"),
        ({"service": 7}, "'service' must be a string"),
        ({"service": "Poll"}, "service name 'Poll'"),
        ({"service": "x" * 33}, "service name"),
        ({"service": "gw", "requests": {}, "namespaces": []}, "'gw' is reserved for the bus"),
        (
            {"namespaces": [{"name": "ch", "access": "owner", "history": True, "presence": True}]},
            "'ch' is reserved for the bus",
        ),
        ({"instance": None}, "'instance' must be a string"),
        ({"ts": "1700"}, "'ts' must be an integer"),
        ({"ts": True}, "'ts' must be an integer"),
        ({"requests": []}, "'requests' must be a map"),
        ({"requests": {"poll.get": "poll"}}, "must be an array of strings or nil"),
        ({"requests": {"poll.get": [1]}}, "must be an array of strings or nil"),
        ({"requests": {"chat.send": ["text"]}}, "'chat.send' is not 'poll.<action>'"),
        ({"requests": {"poll": []}}, "'poll' is not 'poll.<action>'"),
        ({"requests": {"poll.get": ["ref"]}}, "'ref' is not a field name"),
        ({"requests": {"poll.get": ["a b"]}}, "'a b' is not a field name"),
        ({"namespaces": {}}, "'namespaces' must be an array"),
        ({"namespaces": ["poll"]}, "each namespace must be a map"),
        (
            {
                "namespaces": [
                    {"name": "Poll", "access": "owner", "history": True, "presence": False}
                ]
            },
            "namespace name 'Poll'",
        ),
        (
            {"namespaces": [{"name": "poll", "access": "all", "history": True, "presence": False}]},
            "'access' must be",
        ),
        (
            {"namespaces": [{"name": "poll", "access": "owner", "history": 1, "presence": False}]},
            "must be booleans",
        ),
        (
            {"namespaces": [{"name": "poll", "access": "owner", "history": True}]},
            "must be booleans",
        ),
        (
            {
                "namespaces": [{"name": "p", "access": "owner", "history": True, "presence": True}]
                * 2
            },
            "announced twice",
        ),
    ],
)
def test_a_bad_announcement_is_a_clear_protocol_error(changes: dict[str, Any], says: str) -> None:
    """Each broken rule is a ProtocolError saying which, never a KeyError or a TypeError."""
    with pytest.raises(ProtocolError) as caught:
        decode_announcement(pack_bus(_wire(**changes)))
    assert caught.value.code is ErrorCode.BAD_REQUEST
    assert says in caught.value.message


@pytest.mark.parametrize("body", [b"", b"\xc1", b"\x91\x01", pack_bus({"v": 1})])
def test_undecodable_bytes_are_a_protocol_error(body: bytes) -> None:
    """Garbage, an array, or a map missing fields: a ProtocolError."""
    with pytest.raises(ProtocolError):
        decode_announcement(body)


def test_a_namespace_of_another_service_is_refused_when_offered() -> None:
    """A service builds no offer whose namespace names another owner."""
    with pytest.raises(ProtocolError, match="not 'poll''s"):
        Offer("poll", {}, (Namespace("chat", "chat", Access.OWNER, history=True),))


def _read(
    offers: list[Offer],
    *,
    owners: dict[str, str] | None = None,
    extra: dict[str, bytes] | None = None,
    alive: dict[str, float] | None = None,
    previous: Any = EMPTY_REGISTRY,
) -> Any:
    services = {offer.service: Announcement(offer, "i").encode() for offer in offers}
    default_owners = {ns: offer.service for offer in offers for ns in offer.namespace_names}
    expiries = alive if alive is not None else {offer.service: 10_000 for offer in offers}
    return build_registry(
        default_owners if owners is None else owners,
        {**services, **(extra or {})},
        list(expiries.items()),
        redis_ms=5_000,
        read_at=100.0,
        previous=previous,
    )


def test_a_read_routes_by_what_is_announced() -> None:
    """Namespaces with their owners, every announced request type, and the leases."""
    registry, refusals = _read([POLL, BUILT_IN_OFFERS["chat"]])
    assert refusals == []
    assert sorted(registry.namespaces) == ["chat", "poll"]
    assert registry.channel("poll:1") == POLL.namespaces[0]
    assert registry.requests["poll.any"] is None
    assert registry.requests["chat.send"] == frozenset({"room", "text", "client_id"})
    assert registry.expiries == {"poll": 10_000, "chat": 10_000}


def test_a_lease_runs_on_redis_time_moved_on_by_the_local_clock() -> None:
    """Read at Redis 5 s, lease to 10 s: alive 4.9 s of local time after the read, not 5."""
    registry, _ = _read([POLL])
    assert registry.alive("poll", 100.0)
    assert registry.alive("poll", 104.9)
    assert not registry.alive("poll", 105.0)
    assert not registry.alive("chat", 100.0)


def test_a_bad_announcement_is_ignored_and_the_rest_kept() -> None:
    """One undecodable announcement, and one filed under another's name, are refused alone."""
    forged = Announcement(BUILT_IN_OFFERS["chat"], "i").encode()
    registry, refusals = _read([POLL], extra={"broken": b"\xc1", "bids": forged})
    assert [refusal.service for refusal in refusals] == ["broken", "bids"]
    assert "filed under 'bids' but announces 'chat'" in refusals[1].reason
    assert sorted(registry.namespaces) == ["poll"]
    assert "chat.send" not in registry.requests


def test_a_namespace_is_in_force_only_where_owners_names_its_announcer() -> None:
    """Released (no owner entry) or owned by another service: not in force."""
    registry, _ = _read([POLL, BUILT_IN_OFFERS["chat"]], owners={"chat": "poll"})
    assert registry.namespaces == {}
    with pytest.raises(ProtocolError) as caught:
        registry.channel("poll:1")
    assert caught.value.code is ErrorCode.INVALID_CHANNEL
    assert caught.value.message == "unknown namespace 'poll'; known: none"


def test_an_announcement_gone_from_redis_is_kept_as_last_read() -> None:
    """After Redis lost the registry (a restart without persistence), the last read stands:
    the service's types stay known and its lease runs out as it would have."""
    before, _ = _read([POLL])
    after, _ = _read([], owners={}, alive={}, previous=before)
    assert after.requests == before.requests
    assert after.namespaces == before.namespaces
    assert after.expiries == {"poll": 10_000}
    # An operator's release of a namespace whose announcement is still there holds.
    released, _ = _read([POLL], owners={}, previous=before)
    assert released.namespaces == {}
