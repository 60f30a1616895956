"""Client protocol v1, parsed with no I/O: refs, message types, and what each refuses."""

from __future__ import annotations

from typing import Any

import pytest

from common.errors import ErrorCode, ProtocolError
from realtime_gateway.protocol import (
    MAX_DEPTH,
    Auth,
    Ping,
    ServiceCall,
    Subscribe,
    Unsubscribe,
    error_reply,
    ok_reply,
    parse_message,
    parse_ref,
)
from tests.support.registry import BUILT_IN_OFFERS


#: What the built-in services announce: the request table a gateway in front of them has.
REQUESTS = {
    kind: fields for offer in BUILT_IN_OFFERS.values() for kind, fields in offer.requests.items()
}


def _parse(frame: dict[str, Any], ref: Any) -> Any:
    return parse_message(frame, ref, REQUESTS)


def _error(frame: dict[str, Any]) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        _parse(frame, parse_ref(frame))
    return caught.value


# Refs.


@pytest.mark.parametrize(
    "ref",
    ["", "r-1", "x" * 128, "ünïcode", 0, 1, -1, 2**53 - 1, -(2**53 - 1)],
)
def test_valid_refs_are_returned_unchanged(ref: str | int) -> None:
    """A string of at most 128 characters or an integer within JSON's safe range is a ref."""
    assert parse_ref({"type": "ping", "ref": ref}) == ref
    assert type(parse_ref({"ref": ref})) is type(ref)


def test_missing_or_null_ref_is_none() -> None:
    """A frame without a ref, or with ref null, has ref None."""
    assert parse_ref({"type": "ping"}) is None
    assert parse_ref({"type": "ping", "ref": None}) is None


@pytest.mark.parametrize(
    "ref",
    [
        pytest.param(True, id="true"),
        pytest.param(False, id="false"),
        pytest.param(1.5, id="float"),
        pytest.param(1.0, id="integral-float"),
        pytest.param("x" * 129, id="too-long"),
        pytest.param(2**53, id="2**53"),
        pytest.param(-(2**53), id="-2**53"),
        pytest.param(10**30, id="huge"),
        pytest.param(["r"], id="list"),
        pytest.param({"r": 1}, id="object"),
    ],
)
def test_invalid_refs_are_bad_requests(ref: Any) -> None:
    """Booleans, floats, long strings, unsafe integers and containers are refused as refs."""
    with pytest.raises(ProtocolError) as caught:
        parse_ref({"type": "ping", "ref": ref})
    assert caught.value.code is ErrorCode.BAD_REQUEST
    assert "ref" in caught.value.message


# Message types.


def test_auth() -> None:
    """auth carries its token as given; checking it is the auth module's job."""
    assert _parse({"type": "auth", "token": "t.o.k"}, "r") == Auth("r", "t.o.k")
    assert _parse({"type": "auth"}, None) == Auth(None, None)


def test_ping() -> None:
    """ping carries only its ref."""
    assert _parse({"type": "ping", "ref": 3}, 3) == Ping(3)


def test_subscribe() -> None:
    """subscribe carries its channel and optional since position."""
    plain = {"type": "subscribe", "channel": "chat:a"}
    assert _parse(plain, 1) == Subscribe(1, "chat:a", None)
    assert _parse({**plain, "since": "17-0"}, 1) == Subscribe(1, "chat:a", "17-0")
    assert _parse({**plain, "since": None}, 1) == Subscribe(1, "chat:a", None)


def test_unsubscribe() -> None:
    """unsubscribe carries its channel."""
    assert _parse({"type": "unsubscribe", "channel": "chat:a"}, "u") == Unsubscribe("u", "chat:a")


@pytest.mark.parametrize("service", sorted(BUILT_IN_OFFERS))
def test_service_call_for_each_service(service: str) -> None:
    """<service>.<action> for every known service is a call routed to that service."""
    frame = {"type": f"{service}.act", "ref": 9, "room": "lobby", "n": [1, 2]}
    message = parse_message(frame, 9, {f"{service}.act": None})
    assert message == ServiceCall(9, f"{service}.act", service, {"room": "lobby", "n": [1, 2]})


@pytest.mark.parametrize("kind", sorted(REQUESTS))
def test_every_built_in_request_is_a_call(kind: str) -> None:
    """Each request the built-ins announce goes through with exactly its fields."""
    fields = REQUESTS[kind] or frozenset()
    frame = {"type": kind, "ref": 1, **{name: 1 for name in fields}}
    message = _parse(frame, 1)
    assert message == ServiceCall(1, kind, kind.partition(".")[0], {name: 1 for name in fields})


def test_unknown_field_is_refused_with_its_name() -> None:
    """A field its service does not read never reaches the bus: bad_request naming it."""
    frame = {"type": "chat.send", "room": "a", "text": "hi", "client_id": "c", "pad": "x" * 9}
    error = _error(frame)
    assert error.code is ErrorCode.BAD_REQUEST
    assert error.details == {"field": "pad"}
    assert "chat.send takes client_id, room, text" in error.message


def test_a_request_without_fields_refuses_any() -> None:
    error = _error({"type": "bids.list", "limit": 5})
    assert (error.code, error.details) == (ErrorCode.BAD_REQUEST, {"field": "limit"})
    assert "bids.list takes no fields" in error.message


def test_a_long_unknown_field_is_not_echoed_whole() -> None:
    error = _error({"type": "bids.get", "auction": "a", "f" * 500: 1})
    assert len(error.details["field"]) < 70
    assert len(error.message) < 200


def test_unknown_action_of_a_known_service_names_its_actions() -> None:
    """Refused at the gateway, before the bus; the message lists what the service has."""
    error = _error({"type": "chat.shout", "room": "a"})
    assert error.code is ErrorCode.UNKNOWN_TYPE
    assert error.message.endswith(
        "; chat has chat.create, chat.history, chat.join, chat.leave, chat.send, chat.typing"
    )


def test_a_type_no_service_announces_is_unknown() -> None:
    """A request of a service that announced nothing is unknown_type, with no list."""
    error = _error({"type": "orders.get", "order": "42"})
    assert error.code is ErrorCode.UNKNOWN_TYPE
    assert error.message == "unknown message type 'orders.get'"


def test_service_call_data_excludes_type_and_ref() -> None:
    """A service sees the frame without type and ref, and the frame itself is not changed."""
    frame = {"type": "chat.send", "ref": "r", "room": "lobby", "text": "hi", "data": {"x": 1}}
    table = {**REQUESTS, "chat.send": frozenset({"room", "text", "data"})}
    message = parse_message(frame, "r", table)
    assert isinstance(message, ServiceCall)
    assert message.data == {"room": "lobby", "text": "hi", "data": {"x": 1}}
    assert frame["type"] == "chat.send"
    assert frame["ref"] == "r"


def test_service_action_may_contain_dots() -> None:
    """Only the first dot splits service from action."""
    message = parse_message({"type": "bids.admin.close"}, None, {"bids.admin.close": None})
    assert isinstance(message, ServiceCall)
    assert (message.service, message.type) == ("bids", "bids.admin.close")


@pytest.mark.parametrize(
    "kind",
    [
        "hello",
        "",
        "pong",
        "welcome",
        "reply",
        "event",
        "Ping",
        "weather.get",
        "gateway.close",
        "chat",
        "chat.",
        ".send",
        "auction.place",
        "chat." + "x" * 100,
    ],
)
def test_unknown_types_are_unknown_type(kind: str) -> None:
    """A type naming no message and no known service's action is unknown_type."""
    error = _error({"type": kind})
    assert error.code is ErrorCode.UNKNOWN_TYPE
    assert len(error.message) < 120, "a long type is not echoed whole"


def test_x_dot_y_with_an_unknown_service_is_unknown_type() -> None:
    """A well-formed <service>.<action> whose service does not exist is unknown_type."""
    error = _error({"type": "billing.charge", "amount": 5})
    assert error.code is ErrorCode.UNKNOWN_TYPE
    assert "billing.charge" in error.message


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param({}, id="no-type"),
        pytest.param({"type": None}, id="null-type"),
        pytest.param({"type": 7}, id="int-type"),
        pytest.param({"type": ["ping"]}, id="list-type"),
        pytest.param({"type": {"name": "ping"}}, id="object-type"),
        pytest.param({"type": "subscribe"}, id="subscribe-no-channel"),
        pytest.param({"type": "subscribe", "channel": None}, id="subscribe-null-channel"),
        pytest.param({"type": "subscribe", "channel": 7}, id="subscribe-int-channel"),
        pytest.param({"type": "subscribe", "channel": ["chat:a"]}, id="subscribe-list-channel"),
        pytest.param({"type": "subscribe", "channel": "chat:a", "since": 17}, id="since-int"),
        pytest.param({"type": "subscribe", "channel": "chat:a", "since": ["1"]}, id="since-list"),
        pytest.param({"type": "unsubscribe"}, id="unsubscribe-no-channel"),
        pytest.param({"type": "unsubscribe", "channel": False}, id="unsubscribe-bool-channel"),
    ],
)
def test_missing_or_ill_typed_fields_are_bad_requests(frame: dict[str, Any]) -> None:
    """A required field that is missing or of the wrong JSON type is a bad_request."""
    error = _error(frame)
    assert error.code is ErrorCode.BAD_REQUEST


def test_bad_ref_is_reported_before_the_type() -> None:
    """parse_ref runs first, so a frame with a bad ref fails on the ref, whatever its type."""
    with pytest.raises(ProtocolError, match="ref"):
        parse_ref({"type": "no-such-type", "ref": True})


# Nesting depth.


def _nest(levels: int, *, inner: Any = None, key: str | None = None) -> Any:
    """``inner`` wrapped in ``levels`` containers: arrays, or objects under ``key``."""
    value = inner
    for _ in range(levels):
        value = [value] if key is None else {key: value}
    return value


def _frame_of_depth(depth: int, **wrap: Any) -> dict[str, Any]:
    """A chat request whose deepest value makes it ``depth`` levels deep, its object level 1."""
    return {"type": "chat.send", "ref": "d", "room": "r", "deep": _nest(depth - 1, **wrap)}


@pytest.mark.parametrize("wrap", [{}, {"key": "k"}], ids=["arrays", "objects"])
def test_a_frame_at_the_depth_limit_is_parsed(wrap: dict[str, Any]) -> None:
    """A frame exactly MAX_DEPTH levels deep, through arrays or objects, is a service call."""
    frame = _frame_of_depth(MAX_DEPTH, **wrap)
    message = parse_message(frame, "d", {"chat.send": None})
    assert isinstance(message, ServiceCall)
    assert message.data["deep"] == frame["deep"]


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 100, 1024])
@pytest.mark.parametrize("wrap", [{}, {"key": "k"}], ids=["arrays", "objects"])
def test_a_frame_beyond_the_depth_limit_is_a_bad_request(depth: int, wrap: dict[str, Any]) -> None:
    """One level more than MAX_DEPTH, through arrays or objects, is refused as bad_request."""
    error = _error(_frame_of_depth(depth, **wrap))
    assert error.code is ErrorCode.BAD_REQUEST
    assert f"deeper than {MAX_DEPTH} levels" in error.message


def test_depth_counts_the_deepest_path_not_the_first() -> None:
    """A deep value after many shallow ones, in a list inside an object, is found."""
    deep: list[Any] = [[] for _ in range(50)] + [{"a": _nest(MAX_DEPTH - 3)}]
    error = _error({"type": "chat.send", "x": 1, "y": {"z": deep}})
    assert (error.code, "deeper" in error.message) == (ErrorCode.BAD_REQUEST, True)
    shallow: list[Any] = [[] for _ in range(50)] + [{"a": _nest(MAX_DEPTH - 4)}]
    frame = {"type": "chat.send", "y": {"z": shallow}}
    assert isinstance(parse_message(frame, None, {"chat.send": None}), ServiceCall)


@pytest.mark.parametrize("kind", ["ping", "auth", "subscribe", "no-such-type"])
def test_the_depth_limit_applies_to_every_message(kind: str) -> None:
    """Any message too deep is bad_request, even in fields its type ignores."""
    frame = {"type": kind, "channel": "presence:x", "extra": _nest(MAX_DEPTH)}
    assert _error(frame).code is ErrorCode.BAD_REQUEST


# Replies.


def test_ok_reply_frame() -> None:
    """An ok reply echoes the ref and carries the data."""
    assert ok_reply("r", {"x": 1}) == {"type": "reply", "ref": "r", "ok": True, "data": {"x": 1}}


def test_error_reply_frame() -> None:
    """An error reply echoes the ref (null when absent) and carries the error object."""
    error = {"code": "bad_request", "message": "no"}
    assert error_reply(None, error) == {"type": "reply", "ref": None, "ok": False, "error": error}
