"""The auction rules, pure: no Redis, no event loop."""

from __future__ import annotations

from typing import Any

import pytest

from bids_service.rules import (
    CLOSED,
    MAX_AMOUNT,
    PlaceCommand,
    Verdict,
    minimum_bid,
    parse_auction_spec,
    parse_get,
    parse_list,
    parse_place,
    parse_subscribe,
    verdict_outcome,
)
from common.errors import ServiceError
from tests.bids.model import Auction, apply_bid, close_auction, extended_end, verdict_ttl


def _error(call: Any, *args: Any) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        call(*args)
    return caught.value


def test_minimum_is_the_starting_price_then_the_highest_plus_increment() -> None:
    """The first bid needs the starting price; later ones the highest bid plus the increment."""
    assert minimum_bid(None, 500, 25) == 500
    assert minimum_bid(500, 500, 25) == 525


@pytest.mark.parametrize(
    ("now", "ends_at", "window", "by", "expected"),
    [
        (0, 100_000, 30_000, 30_000, 100_000),  # far from the end: unchanged
        (70_000, 100_000, 30_000, 30_000, 100_000),  # exactly window before: now + by = end
        (80_000, 100_000, 30_000, 30_000, 110_000),  # inside the window: by after the bid
        (95_000, 100_000, 30_000, 2_000, 100_000),  # never moves the end earlier
        (99_999, 100_000, 0, 30_000, 100_000),  # no window: no anti-sniping
    ],
)
def test_extended_end(now: int, ends_at: int, window: int, by: int, expected: int) -> None:
    """A bid in the last ``window`` moves the end to ``by`` after it, never earlier."""
    assert extended_end(now, ends_at, window, by) == expected


def _auction(**changes: Any) -> Auction:
    fields: dict[str, Any] = {"id": "a", "starting_price": 100, "increment": 10, "ends_at": 1000}
    return Auction(**{**fields, **changes})


def test_apply_bid_accepts_and_emits_bid_placed() -> None:
    """An accepted bid takes the next sequence number and becomes the highest."""
    state, verdict, events = apply_bid(_auction(), "a", 100, "ann", now=10)
    assert verdict == Verdict("a", 100, ok=True, seq=1, ends_at=1000)
    assert state is not None
    assert (state.current, state.bidder, state.seq) == (100, "ann", 1)
    placed = {"amount": 100, "bidder": "ann", "seq": 1, "ends_at": 1000, "placed_at": 10}
    assert events == [("bid.placed", 1, placed)]


def test_apply_bid_refusals_change_nothing() -> None:
    """Too low, closed, past its end or unknown: a refusal with no event and no new state."""
    auction = _auction(current=200, bidder="bob", seq=4)
    state, verdict, events = apply_bid(auction, "a", 205, "ann", now=10)
    assert (state, events) == (auction, [])
    assert (verdict.code, verdict.minimum) == ("bid_too_low", 210)
    assert apply_bid(auction, "a", 500, "ann", now=1000)[1].code == "auction_closed"
    assert apply_bid(_auction(status=CLOSED), "a", 500, "ann", 0)[1].code == "auction_closed"
    assert apply_bid(None, "zz", 500, "ann", now=0)[1].code == "auction_not_found"


def test_apply_bid_in_the_window_extends_with_a_second_event() -> None:
    """A late bid emits bid.placed then auction.extended, each with its own position."""
    auction = _auction(extend_window=300, extend_by=500, seq=2, current=100, bidder="bob")
    state, verdict, events = apply_bid(auction, "a", 110, "ann", now=900)
    assert verdict.ok
    assert verdict.extended
    assert verdict.seq == 3
    assert verdict.ends_at == 1400
    assert [(name, position) for name, position, _ in events] == [
        ("bid.placed", 3),
        ("auction.extended", 4),
    ]
    assert events[1][2] == {"ends_at": 1400}
    assert state is not None
    assert (state.seq, state.ends_at) == (4, 1400)


def test_close_auction_once_after_its_end() -> None:
    """An auction closes once its end passed, naming the winner; closing again does nothing."""
    auction = _auction(current=300, bidder="ann", seq=7)
    assert close_auction(auction, now=999) == (auction, [])
    closed, events = close_auction(auction, now=1000)
    assert closed.status == CLOSED
    assert closed.seq == 8
    assert events == [("auction.closed", 8, {"winner": "ann", "amount": 300})]
    assert close_auction(closed, now=5000) == (closed, [])
    assert close_auction(_auction(), 1000)[1][0][2] == {"winner": None, "amount": None}


def test_parse_place_accepts_a_well_formed_bid() -> None:
    """A bid names an auction, an integer amount and an idempotency key."""
    command = parse_place({"auction": "a-1_B", "amount": 12_345, "key": "k"})
    assert command == PlaceCommand("a-1_B", 12_345, "k")


@pytest.mark.parametrize(
    ("data", "code", "words"),
    [
        ({"amount": 100, "key": "k"}, "bad_request", "missing field 'auction'"),
        ({"auction": 7, "amount": 100, "key": "k"}, "bad_request", "'auction' must be a string"),
        ({"auction": "a b", "amount": 100, "key": "k"}, "auction_not_found", "no auction"),
        ({"auction": "a", "key": "k"}, "bad_request", "missing field 'amount'"),
        ({"auction": "a", "amount": "100", "key": "k"}, "invalid_amount", "not str"),
        ({"auction": "a", "amount": 10.5, "key": "k"}, "invalid_amount", "not float"),
        ({"auction": "a", "amount": True, "key": "k"}, "invalid_amount", "not bool"),
        ({"auction": "a", "amount": 0, "key": "k"}, "invalid_amount", "positive"),
        ({"auction": "a", "amount": -5, "key": "k"}, "invalid_amount", "positive"),
        ({"auction": "a", "amount": MAX_AMOUNT + 1, "key": "k"}, "invalid_amount", "at most"),
        ({"auction": "a", "amount": 100}, "bad_request", "missing field 'key'"),
        ({"auction": "a", "amount": 100, "key": ""}, "bad_request", "'key' must be"),
        ({"auction": "a", "amount": 100, "key": "k" * 129}, "bad_request", "'key' must be"),
        ({"auction": "a", "amount": 100, "key": 5}, "bad_request", "'key' must be"),
        ({"auction": "a", "amount": 100, "key": "k", "ammount": 1}, "bad_request", "'ammount'"),
    ],
)
def test_parse_place_refuses_bad_input(data: dict[str, Any], code: str, words: str) -> None:
    """Every malformed bid gets its own code and a message naming the problem."""
    error = _error(parse_place, data)
    assert error.code == code
    assert words in error.message


def test_parse_get_list_and_subscribe() -> None:
    """get needs an auction, list takes nothing, subscribe takes an auction channel and since."""
    assert parse_get({"auction": "x"}) == "x"
    assert _error(parse_get, {}).code == "bad_request"
    parse_list({})
    assert _error(parse_list, {"page": 2}).code == "bad_request"
    assert parse_subscribe({"channel": "auction:x"}) == ("x", None)
    assert parse_subscribe({"channel": "auction:x", "since": "42"}) == ("x", 42)
    assert _error(parse_subscribe, {"channel": "auction:x", "since": "1-0"}).code == "bad_request"
    assert _error(parse_subscribe, {"channel": "auction:x", "since": 4}).code == "bad_request"
    assert _error(parse_subscribe, {"channel": "auction:a:b"}).code == "auction_not_found"
    assert _error(parse_subscribe, {"channel": "chat:x"}).code == "bad_request"


def test_verdict_outcome_replies() -> None:
    """A stored verdict becomes the reply, or bad_request when the key was used for another bid."""
    command = PlaceCommand("a", 100, "k")
    accepted = Verdict("a", 100, ok=True, seq=3, ends_at=99)
    assert verdict_outcome(accepted, command) == {
        "accepted": True,
        "seq": 3,
        "amount": 100,
        "ends_at": 99,
    }
    low = verdict_outcome(Verdict("a", 100, ok=False, code="bid_too_low", minimum=120), command)
    assert isinstance(low, ServiceError)
    assert low.to_error()["minimum"] == 120
    assert low.code == "bid_too_low"
    other = verdict_outcome(accepted, PlaceCommand("a", 200, "k"))
    assert isinstance(other, ServiceError)
    assert other.code == "bad_request"
    closed = verdict_outcome(Verdict("a", 100, ok=False, code="auction_closed"), command)
    assert isinstance(closed, ServiceError)
    assert closed.code == "auction_closed"
    missing = verdict_outcome(Verdict("a", 100, ok=False, code="auction_not_found"), command)
    assert isinstance(missing, ServiceError)
    assert missing.code == "auction_not_found"


def test_parse_auction_spec_with_defaults() -> None:
    """A new auction takes the anti-sniping defaults unless it gives its own, in seconds."""
    spec = parse_auction_spec(
        {"title": "t", "starting_price": 100, "increment": 5, "duration_s": 1.5},
        extend_window=30,
        extend_by=20,
    )
    assert (spec.id, spec.duration_ms, spec.ends_at) == (None, 1500, None)
    assert (spec.extend_window_ms, spec.extend_by_ms) == (30_000, 20_000)
    spec = parse_auction_spec(
        {"id": "x", "title": "t", "starting_price": 1, "increment": 1, "ends_at": 10**12,
         "extend_window": 0, "extend_by": 2.5},
        extend_window=30,
        extend_by=20,
    )  # fmt: skip
    assert (spec.id, spec.ends_at, spec.extend_window_ms, spec.extend_by_ms) == (
        "x",
        10**12,
        0,
        2500,
    )


_BASE = {"title": "t", "starting_price": 100, "increment": 5, "duration_s": 60}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"id": "has space"}, "id"),
        ({"title": ""}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"starting_price": 0}, "starting_price"),
        ({"starting_price": 1.5}, "starting_price"),
        ({"increment": None}, "increment"),
        ({"duration_s": None}, "ends_at"),
        ({"ends_at": 10**12}, "ends_at"),
        ({"duration_s": 0}, "duration_s"),
        ({"duration_s": float("nan")}, "duration_s"),
        ({"extend_window": -1}, "extend_window"),
        ({"extend_by": "30"}, "extend_by"),
        ({"color": "red"}, "color"),
    ],
)
def test_parse_auction_spec_refuses_bad_fields(changes: dict[str, Any], field: str) -> None:
    """Each invalid field of a new auction is named in a bad_request error."""
    body = {key: value for key, value in {**_BASE, **changes}.items() if value is not None}
    error = _error(lambda: parse_auction_spec(body, extend_window=0, extend_by=0))
    assert error.code == "bad_request"
    assert error.details["field"] == field


def test_which_verdicts_are_kept_and_for_how_long() -> None:
    """Accepted bids are kept the key TTL, too-low ones the refusal TTL, other refusals not."""
    accepted = Verdict("a", 100, ok=True, seq=1, ends_at=5)
    assert verdict_ttl(accepted, key_ttl_ms=1000, refusal_ttl_ms=10) == 1000
    too_low = Verdict("a", 100, ok=False, code="bid_too_low", minimum=110)
    assert verdict_ttl(too_low, key_ttl_ms=1000, refusal_ttl_ms=10) == 10
    for code in ("auction_not_found", "auction_closed", "rate_limited"):
        refused = Verdict("a", 100, ok=False, code=code)
        assert verdict_ttl(refused, key_ttl_ms=1000, refusal_ttl_ms=10) is None


def test_a_rate_limited_verdict_says_when_to_retry() -> None:
    """A rate_limited verdict becomes a rate_limited error carrying retry_after_ms."""
    verdict = Verdict("a", 100, ok=False, code="rate_limited", retry_after_ms=250)
    outcome = verdict_outcome(verdict, PlaceCommand("a", 100, "k"))
    assert isinstance(outcome, ServiceError)
    assert (outcome.code, outcome.details) == ("rate_limited", {"retry_after_ms": 250})
