"""The session's limits and service calls, with no I/O: rate, in-flight, size, replies."""

from __future__ import annotations

from common.errors import CloseCode
from realtime_gateway.session import Call, Close
from tests.gateway.session_support import Driven, code_of, error_of, messages, reply


def test_ping_is_answered_before_authentication() -> None:
    """ping gets its pong, ref echoed, on a connection that has not authenticated."""
    driven = Driven()
    driven.open()
    assert messages(driven.send({"type": "ping", "ref": 3})) == [{"type": "pong", "ref": 3}]
    assert driven.gate.counted["ping"] == 1


def test_other_messages_need_authentication_first() -> None:
    """Before auth, a subscribe or a request is unauthenticated; an unknown type is not."""
    driven = Driven()
    driven.open()
    assert code_of(driven.send({"type": "subscribe", "channel": "presence:x"})) == (
        "unauthenticated"
    )
    assert code_of(driven.send({"type": "chat.send", "room": "r", "text": "t"})) == (
        "unauthenticated"
    )
    assert code_of(driven.send({"type": "chat.shout"})) == "unknown_type"
    assert driven.gate.counted["unauthenticated"] == 2
    assert driven.gate.counted["invalid"] == 1


def test_malformed_frames_are_answered_with_the_ref_they_carry() -> None:
    """Invalid JSON gets bad_request with ref null; a bad field echoes a valid ref."""
    driven = Driven()
    driven.open()
    (refusal,) = messages(driven.send('{"type": "ping"'))
    assert (refusal["ref"], refusal["error"]["code"]) == (None, "bad_request")
    (refusal,) = messages(driven.send({"type": "subscribe", "ref": "s"}))
    assert (refusal["ref"], refusal["error"]["code"]) == ("s", "bad_request")


def test_binary_frames_are_refused() -> None:
    """A binary frame gets bad_request with ref null, and the connection stays open."""
    driven = Driven()
    driven.open()
    actions = driven.run(driven.session.receive_binary(driven.now))
    assert error_of(actions)["code"] == "bad_request"
    assert messages(actions)[0]["ref"] is None


def test_the_rate_limit_refuses_beyond_the_burst_and_refills() -> None:
    """RT_RATE_BURST messages pass at once; the next is rate_limited until tokens refill."""
    driven = Driven(rate_burst=5, rate_limit=10.0)
    driven.open()
    for _ in range(5):
        assert messages(driven.send({"type": "ping", "ref": 1}))[0]["type"] == "pong"
    (refusal,) = messages(driven.send({"type": "ping", "ref": 2}))
    assert refusal["error"]["code"] == "rate_limited"
    # The refusal echoes the ref of a frame that could be read (docs/protocol.md says null).
    assert refusal["ref"] == 2
    assert messages(driven.send({"type": "ping", "ref": 3}, after=0.1))[0]["type"] == "pong"
    assert driven.gate.counted["limited"] == 1


def test_invalid_and_binary_frames_spend_the_rate_limit_too() -> None:
    """Garbage is limited before it is answered: out of tokens, it gets rate_limited."""
    driven = Driven(rate_burst=2)
    driven.open()
    assert code_of(driven.send("[]")) == "bad_request"
    assert code_of(driven.run(driven.session.receive_binary(driven.now))) == "bad_request"
    assert code_of(driven.send("[]")) == "rate_limited"
    assert code_of(driven.run(driven.session.receive_binary(driven.now))) == "rate_limited"


def test_ignoring_rate_limited_errors_closes_with_4429() -> None:
    """More than RT_RATE_BURST refusals in a row close the connection with 4429."""
    driven = Driven(rate_burst=3, rate_limit=0.1)
    driven.open()
    for _ in range(3):
        driven.send({"type": "ping"})
    for _ in range(3):
        assert code_of(driven.send({"type": "ping"})) == "rate_limited"
    assert driven.send({"type": "ping"}) == [Close(CloseCode.RATE_LIMITED, "rate limited")]


def test_a_passing_message_resets_the_refusals_in_a_row() -> None:
    """A message let through between refusals starts the count of refusals again."""
    driven = Driven(rate_burst=2, rate_limit=1.0)
    driven.open()
    driven.send({"type": "ping"})
    driven.send({"type": "ping"})
    assert code_of(driven.send({"type": "ping"})) == "rate_limited"
    assert code_of(driven.send({"type": "ping"})) == "rate_limited"
    assert messages(driven.send({"type": "ping"}, after=1.0))[0]["type"] == "pong"
    assert code_of(driven.send({"type": "ping"})) == "rate_limited"
    assert code_of(driven.send({"type": "ping"})) == "rate_limited"
    assert not driven.link.closed


def test_a_request_becomes_a_call_and_its_reply_the_answer() -> None:
    """A service request goes out with its data; the service's reply is delivered with its ref."""
    driven = Driven()
    driven.authenticate()
    call = driven.call({"type": "chat.send", "ref": 9, "room": "r", "text": "hi"})
    assert call == Call(9, "chat", "chat.send", {"room": "r", "text": "hi"}, ())
    assert driven.session.inflight == 1
    actions = driven.run(driven.session.answered(call, reply({"id": "1-0"}), ""))
    assert messages(actions) == [{"type": "reply", "ref": 9, "ok": True, "data": {"id": "1-0"}}]
    assert driven.session.inflight == 0
    assert driven.gate.counted["request"] == 1


def test_a_refusal_and_a_timeout_are_delivered() -> None:
    """The service's error goes to the client as it is; no answer is service_unavailable."""
    driven = Driven()
    driven.authenticate()
    call = driven.call({"type": "chat.send", "ref": 1, "room": "r", "text": "hi"})
    refused = reply(error={"code": "room_not_found", "message": "no room"})
    assert error_of(driven.session.answered(call, refused, ""))["code"] == "room_not_found"
    call = driven.call({"type": "chat.send", "ref": 2, "room": "r", "text": "hi"})
    error = error_of(driven.session.answered(call, None, "service 'chat' did not answer in time"))
    assert error == {
        "code": "service_unavailable",
        "message": "service 'chat' did not answer in time",
    }


def test_a_reply_to_a_closed_connection_is_dropped() -> None:
    """Once the outbox closed, a reply sends nothing (and frees its in-flight place)."""
    driven = Driven()
    driven.authenticate()
    call = driven.call({"type": "chat.send", "room": "r", "text": "hi"})
    driven.link.closed = True
    assert driven.session.answered(call, reply({}), "") == []
    assert driven.session.inflight == 0


def test_requests_awaiting_replies_are_capped() -> None:
    """Beyond RT_MAX_INFLIGHT requests without reply, the next is rate_limited, not sent."""
    driven = Driven(max_inflight=2)
    driven.authenticate()
    first = driven.call({"type": "bids.list"})
    driven.call({"type": "bids.list"})
    actions = driven.send({"type": "bids.list", "ref": "x"})
    assert error_of(actions) == {
        "code": "rate_limited",
        "message": "too many requests awaiting replies",
    }
    driven.session.answered(first, reply({}), "")
    assert driven.call({"type": "bids.list"}).type == "bids.list"


def test_requests_over_their_service_size_are_too_large() -> None:
    """A request over RT_MAX_REQUEST_BYTES of its service is refused with its limit."""
    driven = Driven(max_request_bytes={"chat": 100})
    driven.authenticate()
    actions = driven.send({"type": "chat.send", "ref": 1, "room": "r", "text": "x" * 100})
    assert error_of(actions) == {
        "code": "too_large",
        "message": "a chat request may have at most 100 bytes",
        "limit": 100,
    }
    assert driven.gate.refused == ["request_too_large"]
    # Characters are counted as UTF-8 bytes: 20 two-byte characters fit, 40 do not.
    assert driven.call({"type": "chat.send", "room": "r", "text": "é" * 20}).service == "chat"
    assert code_of(driven.send({"type": "chat.send", "room": "r", "text": "é" * 40})) == (
        "too_large"
    )
    # A service without a limit takes any size the frame limit lets through.
    assert driven.call({"type": "bids.get", "auction": "a" * 1000}).service == "bids"


def test_a_request_field_the_type_does_not_take_is_refused() -> None:
    """An unknown field is bad_request naming it in ``field``; nothing is sent."""
    driven = Driven()
    driven.authenticate()
    error = error_of(driven.send({"type": "chat.send", "room": "r", "text": "t", "pad": 1}))
    assert (error["code"], error["field"]) == ("bad_request", "pad")
