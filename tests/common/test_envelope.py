"""Bus envelopes: round trips through the codec, malformed maps, and position order."""

from __future__ import annotations

import os
from typing import Any

import pytest

from common.codec import load_bus, pack_bus, pack_bus_with_packed
from common.envelope import (
    BUS_VERSION,
    Event,
    Reply,
    ReplyBatch,
    Request,
    new_id,
    parse_envelope,
    position_key,
    serial_id,
)
from common.errors import ErrorCode, ProtocolError


def _through_the_bus(wire: dict[str, Any]) -> Request | Reply | ReplyBatch | Event:
    return parse_envelope(load_bus(pack_bus(wire)))


def _request(**overrides: Any) -> Request:
    fields: dict[str, Any] = {
        "type": "bids.place",
        "data": {"auction": "a1", "amount": 12, "nested": {"list": [1, "two", None]}},
        "gateway": "gw-1",
        "connection": "c-1",
        "user": "alice",
    }
    fields.update(overrides)
    return Request(**fields)


# Round trips.


def test_request_round_trips_through_the_bus_codec() -> None:
    """A request survives to_wire, msgpack and parse_envelope unchanged."""
    request = _request()
    assert _through_the_bus(request.to_wire()) == request


def test_anonymous_request_round_trips() -> None:
    """A request with no user (before auth, or a notification) keeps user None."""
    request = _request(user=None)
    parsed = _through_the_bus(request.to_wire())
    assert isinstance(parsed, Request)
    assert parsed.user is None
    assert parsed == request


def test_prior_notifications_round_trip() -> None:
    """A request's prior notifications survive the bus, and a request without any has none."""
    request = _request(prior=({"type": "track", "data": {"channel": "chat:x", "seq": 3}},))
    assert _through_the_bus(request.to_wire()) == request
    assert "prior" not in _request().to_wire()


@pytest.mark.parametrize(
    "prior",
    [{"type": "track"}, ["track"], [{"type": 1, "data": {}}], [{"type": "track", "data": []}]],
)
def test_malformed_prior_is_refused(prior: object) -> None:
    """A 'prior' that is not a list of {type, data} maps is a malformed envelope."""
    with pytest.raises(ProtocolError, match="'prior'"):
        _through_the_bus({**_request().to_wire(), "prior": prior})


def test_noreply_request_round_trips() -> None:
    """A notification keeps its noreply flag, and an ordinary request does not gain one."""
    notification = _request(noreply=True)
    assert _through_the_bus(notification.to_wire()) == notification
    assert "noreply" not in _request().to_wire()


def test_ok_reply_round_trips() -> None:
    """An ok reply with data and server-side subscriptions survives the bus unchanged."""
    reply = Reply("req-1", "c-1", data={"position": "17-0"}, subscribe=("chat:a", "chat:b"))
    parsed = _through_the_bus(reply.to_wire())
    assert parsed == reply
    assert isinstance(parsed, Reply)
    assert parsed.ok


def test_error_reply_round_trips() -> None:
    """An error reply keeps its code, message and extra details, and is not ok."""
    error = {"code": "bid_too_low", "message": "too low", "minimum": 13}
    reply = Reply("req-1", "c-1", error=error)
    parsed = _through_the_bus(reply.to_wire())
    assert parsed == reply
    assert isinstance(parsed, Reply)
    assert not parsed.ok
    assert parsed.data is None


def test_ok_reply_without_data_carries_an_empty_object() -> None:
    """An ok reply built without data travels with data {} so that clients always get an object."""
    wire = Reply("req-1", "c-1").to_wire()
    assert wire["data"] == {}
    parsed = _through_the_bus(wire)
    assert isinstance(parsed, Reply)
    assert parsed.data == {}


@pytest.mark.parametrize("position", [None, "1700000000000-3"])
def test_event_round_trips(position: str | None) -> None:
    """An event, with or without a position, survives the bus unchanged."""
    event = Event("auction:a1", "bid", {"amount": 12, "user": "bob"}, position=position)
    assert _through_the_bus(event.to_wire()) == event


def test_every_envelope_carries_version_kind_id_and_ts() -> None:
    """Each kind of envelope carries v, kind, a 32-hex-digit id and a millisecond ts."""
    envelopes: list[Request | Reply | Event] = [
        _request(),
        Reply("r", "c", data={}),
        Event("chat:x", "message", {}),
    ]
    for envelope, kind in zip(envelopes, ["request", "reply", "event"], strict=True):
        wire = envelope.to_wire()
        assert wire["v"] == BUS_VERSION
        assert wire["kind"] == kind
        assert len(wire["id"]) == 32
        int(wire["id"], 16)
        assert wire["ts"] > 1_600_000_000_000


def test_ids_are_unique() -> None:
    """Ids generated for envelopes do not repeat."""
    assert len({new_id() for _ in range(1000)}) == 1000
    assert _request().id != _request().id


def test_event_to_client_is_the_protocol_frame() -> None:
    """An event's client frame carries type, channel, event, position and data only."""
    event = Event("auction:a1", "bid", {"amount": 12}, position="5-0")
    assert event.to_client() == {
        "type": "event",
        "channel": "auction:a1",
        "event": "bid",
        "position": "5-0",
        "data": {"amount": 12},
    }


# Malformed envelopes.

_REQUEST_WIRE = _request().to_wire()
_REPLY_WIRE = Reply("req-1", "c-1", data={"x": 1}, subscribe=("chat:a",)).to_wire()
_ERROR_REPLY_WIRE = Reply("req-1", "c-1", error={"code": "forbidden", "message": "no"}).to_wire()
_EVENT_WIRE = Event("chat:a", "message", {"text": "hi"}, position="3-0").to_wire()

#: A value of the wrong type for every kind of field: each must be refused.
_WRONG_VALUES: list[Any] = [None, 7, 1.5, True, b"bytes", ["list"], {"map": 1}, "text"]


_MISSING = object()


def _fits(value: Any, expected: type) -> bool:
    # bool is an int to isinstance, but a flag is not a timestamp.
    if expected is int:
        return type(value) is int
    return isinstance(value, expected)


def _cases() -> list[tuple[str, dict[str, Any], str, Any]]:
    """Every required field of every kind: each wrong-typed value, and the field missing."""
    fields: list[tuple[str, dict[str, Any], dict[str, type]]] = [
        (
            "request",
            _REQUEST_WIRE,
            {"type": str, "data": dict, "gw": str, "conn": str, "trace": str, "id": str, "ts": int},
        ),
        (
            "reply",
            _REPLY_WIRE,
            {"ok": bool, "re": str, "conn": str, "data": dict, "id": str, "ts": int},
        ),
        ("error-reply", _ERROR_REPLY_WIRE, {"error": dict}),
        ("event", _EVENT_WIRE, {"channel": str, "event": str, "data": dict, "id": str, "ts": int}),
    ]
    cases = []
    for label, wire, expected_types in fields:
        for name, expected in expected_types.items():
            for value in [*(v for v in _WRONG_VALUES if not _fits(v, expected)), _MISSING]:
                cases.append((label, wire, name, value))
    return cases


_CASES = _cases()


def _case_id(case: tuple[str, dict[str, Any], str, Any]) -> str:
    label, _, name, value = case
    shown = "missing" if value is _MISSING else type(value).__name__
    return f"{label}-{name}-{shown}"


@pytest.mark.parametrize("case", _CASES, ids=[_case_id(case) for case in _CASES])
def test_a_field_of_the_wrong_type_raises_protocol_error(
    case: tuple[str, dict[str, Any], str, Any],
) -> None:
    """Every required field, missing or of the wrong type (bool for int too), is a ProtocolError."""
    _, wire, name, value = case
    broken = dict(wire)
    if value is _MISSING:
        del broken[name]
    else:
        broken[name] = value
    with pytest.raises(ProtocolError) as caught:
        _through_the_bus(broken)
    assert caught.value.code is ErrorCode.BAD_REQUEST


@pytest.mark.parametrize("user", [7, True, b"alice", ["alice"], {"name": "alice"}])
def test_a_request_user_that_is_not_a_string_raises_protocol_error(user: Any) -> None:
    """A request's user must be a string or absent."""
    with pytest.raises(ProtocolError):
        _through_the_bus({**_REQUEST_WIRE, "user": user})


@pytest.mark.parametrize("position", [7, 1.5, True, b"1-0", ["1-0"], {"p": 1}])
def test_an_event_position_that_is_not_a_string_raises_protocol_error(position: Any) -> None:
    """An event's position must be a string or null."""
    with pytest.raises(ProtocolError):
        _through_the_bus({**_EVENT_WIRE, "position": position})


@pytest.mark.parametrize("subscribe", ["chat:a", 7, {"chat:a": 1}, ["chat:a", 7], [None]])
def test_a_reply_subscribe_that_is_not_a_list_of_strings_raises_protocol_error(
    subscribe: Any,
) -> None:
    """A reply's subscribe must be a list of channel names."""
    with pytest.raises(ProtocolError):
        _through_the_bus({**_REPLY_WIRE, "subscribe": subscribe})


@pytest.mark.parametrize("error", [{}, {"message": "no"}, {"code": 7, "message": "no"}])
def test_an_error_reply_without_a_string_code_raises_protocol_error(error: Any) -> None:
    """A refused reply's error object must carry a string code."""
    with pytest.raises(ProtocolError):
        _through_the_bus({**_ERROR_REPLY_WIRE, "error": error})


@pytest.mark.parametrize("version", [None, 0, 2, "1", 1.5, True, [1]])
def test_an_unsupported_version_raises_protocol_error(version: Any) -> None:
    """Only bus format version 1 (the integer) is accepted, and a missing version is refused."""
    wire = dict(_REQUEST_WIRE)
    if version is None:
        del wire["v"]
    else:
        wire["v"] = version
    with pytest.raises(ProtocolError) as caught:
        _through_the_bus(wire)
    assert caught.value.code is ErrorCode.BAD_REQUEST


@pytest.mark.parametrize("kind", [None, "", "Request", "command", 1, b"request"])
def test_an_unknown_kind_raises_protocol_error(kind: Any) -> None:
    """A kind other than request, reply or event is refused, and so is a missing kind."""
    wire = dict(_REQUEST_WIRE)
    if kind is None:
        del wire["kind"]
    else:
        wire["kind"] = kind
    with pytest.raises(ProtocolError, match="kind"):
        _through_the_bus(wire)


@pytest.mark.parametrize("kind", [["request"], {"request": 1}])
def test_an_unhashable_kind_raises_protocol_error(kind: Any) -> None:
    """A kind that is a list or map is a ProtocolError, not a TypeError from the kind table."""
    with pytest.raises(ProtocolError, match="kind"):
        _through_the_bus({**_REQUEST_WIRE, "kind": kind})


@pytest.mark.parametrize(
    ("field", "value"), [("v", 2), ("v", True), ("v", None), ("kind", "reply"), ("kind", None)]
)
def test_an_event_read_alone_checks_its_version_and_kind(field: str, value: Any) -> None:
    """Event.from_wire, how gateways read an event channel, refuses another version or kind."""
    wire = Event("presence:chat:x", "join", {"user": "bob"}).to_wire()
    if value is None:
        del wire[field]
    else:
        wire[field] = value
    with pytest.raises(ProtocolError) as caught:
        Event.from_wire(load_bus(pack_bus(wire)))
    assert caught.value.code is ErrorCode.BAD_REQUEST


def test_an_envelope_of_another_kind_is_not_mistaken() -> None:
    """A reply's fields given kind "event" fail as an event rather than parse as a reply."""
    with pytest.raises(ProtocolError):
        _through_the_bus({**_REPLY_WIRE, "kind": "event"})


def test_unknown_fields_are_ignored() -> None:
    """Fields a newer writer adds do not stop an older reader (forward compatibility)."""
    request = _request()
    assert _through_the_bus({**request.to_wire(), "priority": 3}) == request


# Positions.


@pytest.mark.parametrize(
    ("position", "key"),
    [
        ("0", (0,)),
        ("42", (42,)),
        ("1700000000000-3", (1700000000000, 3)),
        ("18446744073709551615-18446744073709551615", (2**64 - 1, 2**64 - 1)),
    ],
)
def test_position_key_splits_on_dashes(position: str, key: tuple[int, ...]) -> None:
    """A position is read as its integer parts."""
    assert position_key(position) == key


def test_position_key_orders_stream_ids_numerically() -> None:
    """Stream ids order by time then sequence as numbers, not as strings."""
    positions = ["1700000000000-10", "999999999999-5", "1700000000000-2", "1700000000001-0"]
    assert sorted(positions, key=position_key) == [
        "999999999999-5",
        "1700000000000-2",
        "1700000000000-10",
        "1700000000001-0",
    ]


def test_position_key_orders_sequence_numbers_numerically() -> None:
    """Plain sequence numbers order as numbers: 9 before 10."""
    assert sorted(["10", "9", "100", "0"], key=position_key) == ["0", "9", "10", "100"]
    assert position_key("9") < position_key("10")


def test_position_key_orders_a_longer_id_after_its_prefix() -> None:
    """A position with more parts sorts after one that is its prefix (tuple order)."""
    assert position_key("5") < position_key("5-0") < position_key("5-1") < position_key("6")


@pytest.mark.parametrize("position", ["", "abc", "1-", "-1", "1--2", "1.5", "1-x", "0x10", "1 2"])
def test_a_bad_position_raises_protocol_error(position: str) -> None:
    """A position that is not integers separated by dashes is a bad_request ProtocolError."""
    with pytest.raises(ProtocolError) as caught:
        position_key(position)
    assert caught.value.code is ErrorCode.BAD_REQUEST
    assert repr(position) in caught.value.message


def test_a_batch_request_round_trips() -> None:
    """``batch`` is sent only when true, and any value but true reads as false."""
    batch = _request(batch=True)
    assert _through_the_bus(batch.to_wire()) == batch
    assert "batch" not in _request().to_wire()
    assert not Request.from_wire({**_request().to_wire(), "batch": 1}).batch


def test_a_reply_batch_round_trips_and_packs_from_packed_replies() -> None:
    replies = (
        Reply("req-1", "c-1", data={"n": 1}, subscribe=("chat:a",)),
        Reply("req-2", "c-2", error={"code": "bid_too_low", "message": "too low"}),
    )
    batch = ReplyBatch(replies)
    assert _through_the_bus(batch.to_wire()) == batch
    packed = pack_bus_with_packed(batch.head(), "replies", [pack_bus(r.to_wire()) for r in replies])
    assert packed == pack_bus(batch.to_wire())


@pytest.mark.parametrize(
    "items",
    [
        pytest.param([], id="empty"),
        pytest.param("reply", id="not-a-list"),
        pytest.param([1], id="not-a-map"),
        pytest.param([{**_REPLY_WIRE, "v": 2}], id="another-version"),
        pytest.param([_REQUEST_WIRE], id="a-request"),
        pytest.param([_REPLY_WIRE, {**_REPLY_WIRE, "ok": "yes"}], id="one-bad-reply"),
    ],
)
def test_a_malformed_reply_batch_is_refused_whole(items: Any) -> None:
    wire = {**ReplyBatch(()).head(), "replies": items}
    with pytest.raises(ProtocolError):
        _through_the_bus(wire)


def test_serial_ids_are_unique_hex_and_a_forked_child_makes_its_own() -> None:
    ids = [serial_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(len(each) == 32 and int(each, 16) >= 0 for each in ids)
    assert (
        Request("chat.send", {}, "gw", "c", None).id != Request("chat.send", {}, "gw", "c", None).id
    )
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child)
        os.write(write, serial_id().encode())
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(child, 0)
    assert status == 0
    from_child = os.read(read, 64).decode()
    os.close(read)
    assert from_child[:16] != serial_id()[:16], "the child kept its parent's prefix"
