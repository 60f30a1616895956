"""Auction rules, pure (no I/O): valid input, the lowest acceptable bid, replies to verdicts.

The rule itself runs in Redis, in ``lua/place.lua`` and ``lua/close.lua``, atomically; its
reference model in Python is the tests' (``tests/bids/model.py``: they replay an auction's
accepted bids through it and compare with what Redis holds). Money is an integer number of
minor units (cents), never a float. Times are integer milliseconds since the epoch, on
Redis's clock so that instances agree.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from common.errors import ErrorCode, ServiceError
from common.keys import channel_prefix
from common.namespaces import Access, Namespace
from common.registry import Offer
from common.requests import RequestTable, unknown_field, unknown_field_message


__all__ = [
    "AUCTION_CHANNEL_PREFIX",
    "CLOSED",
    "MAX_AMOUNT",
    "MAX_KEY_LENGTH",
    "OFFER",
    "OPEN",
    "REQUESTS",
    "AuctionSpec",
    "PlaceCommand",
    "Verdict",
    "minimum_bid",
    "parse_auction_id",
    "parse_auction_spec",
    "parse_get",
    "parse_list",
    "parse_place",
    "parse_subscribe",
    "verdict_outcome",
]

#: The largest amount: exact in Lua's doubles (below 2**53) even with an increment added.
MAX_AMOUNT: Final = 10**15
MAX_KEY_LENGTH: Final = 128
MAX_TITLE_LENGTH: Final = 200
MAX_DURATION_S: Final = 30 * 86_400
MAX_EXTEND_S: Final = 86_400
OPEN: Final = "open"
CLOSED: Final = "closed"

_AUCTION_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SINCE = re.compile(r"[0-9]{1,16}")
#: Client channels of auctions are ``auction:<id>``.
AUCTION_CHANNEL_PREFIX: Final = channel_prefix("auction")
_PLACE_FIELDS = frozenset({"auction", "amount", "key"})
_GET_FIELDS = frozenset({"auction"})
_LIST_FIELDS: frozenset[str] = frozenset()
#: The client requests bids answers and the fields of each: announced to the gateways, which
#: refuse others, and checked again by the parsers below.
REQUESTS: Final[RequestTable] = MappingProxyType(
    {"bids.place": _PLACE_FIELDS, "bids.get": _GET_FIELDS, "bids.list": _LIST_FIELDS}
)
#: What bids announces in the namespace registry: ``auction``, open to every user, with
#: history and presence; its partitions (run_service announces ``RT_BIDS_PARTITIONS``), and
#: the field of each request type that names an auction, so that a gateway sends it to the
#: auction's partition (``bids.list`` names none: partition 0).
OFFER: Final = Offer(
    "bids",
    REQUESTS,
    (Namespace("auction", "bids", Access.AUTHENTICATED, history=True, presence=True),),
    partitions=1,
    entities=MappingProxyType({"bids.place": "auction", "bids.get": "auction"}),
)
_SUBSCRIBE_FIELDS = frozenset({"channel", "since"})
_SPEC_FIELDS = frozenset(
    {
        "id",
        "title",
        "starting_price",
        "increment",
        "ends_at",
        "duration_s",
        "extend_window",
        "extend_by",
    }
)


def _bad(message: str, **details: Any) -> ServiceError:
    return ServiceError(ErrorCode.BAD_REQUEST, message, **details)


def _shown(value: str) -> str:
    return repr(value if len(value) <= 64 else value[:64] + "...")


def _check_fields(data: Mapping[str, Any], allowed: frozenset[str], what: str) -> None:
    unknown = unknown_field(data, allowed)
    if unknown is not None:
        raise _bad(unknown_field_message(unknown, what, allowed), field=unknown)


# Client requests.


@dataclass(frozen=True, slots=True)
class PlaceCommand:
    """A well-formed ``bids.place``: which auction, how much, and its idempotency key."""

    auction: str
    amount: int
    key: str


def parse_auction_id(value: object) -> str:
    """The auction a request names.

    Raises:
        ServiceError: ``bad_request`` when missing or not a string; ``auction_not_found`` for a
            string that cannot be an auction id (ids are 1-64 letters, digits, ``_`` or ``-``).
    """
    if value is None:
        raise _bad("missing field 'auction' (an auction id)", field="auction")
    if not isinstance(value, str):
        raise _bad("field 'auction' must be a string (an auction id)", field="auction")
    if not _AUCTION_ID.fullmatch(value):
        raise ServiceError(ErrorCode.AUCTION_NOT_FOUND, f"no auction {_shown(value)}")
    return value


def _parse_amount(value: object) -> int:
    if value is None:
        raise _bad("missing field 'amount' (an integer number of minor units)", field="amount")
    if isinstance(value, bool) or not isinstance(value, int):
        kind = type(value).__name__
        raise ServiceError(
            ErrorCode.INVALID_AMOUNT,
            f"'amount' must be an integer number of minor units (cents), not {kind}",
        )
    if value <= 0:
        raise ServiceError(ErrorCode.INVALID_AMOUNT, "'amount' must be positive")
    if value > MAX_AMOUNT:
        raise ServiceError(ErrorCode.INVALID_AMOUNT, f"'amount' must be at most {MAX_AMOUNT}")
    return value


def _parse_key(value: object) -> str:
    if value is None:
        raise _bad(
            "missing field 'key': an idempotency key, new for each bid and reused by its retries",
            field="key",
        )
    if not isinstance(value, str) or not 0 < len(value) <= MAX_KEY_LENGTH:
        raise _bad(f"field 'key' must be a string of 1-{MAX_KEY_LENGTH} characters", field="key")
    return value


def parse_place(data: Mapping[str, Any]) -> PlaceCommand:
    """Check a ``bids.place`` request's fields.

    Raises:
        ServiceError: ``bad_request``, ``invalid_amount`` or ``auction_not_found``.
    """
    _check_fields(data, _PLACE_FIELDS, "bids.place")
    key = _parse_key(data.get("key"))
    amount = _parse_amount(data.get("amount"))
    return PlaceCommand(parse_auction_id(data.get("auction")), amount, key)


def parse_get(data: Mapping[str, Any]) -> str:
    """The auction id of a ``bids.get`` request."""
    _check_fields(data, _GET_FIELDS, "bids.get")
    return parse_auction_id(data.get("auction"))


def parse_list(data: Mapping[str, Any]) -> None:
    """Check that a ``bids.list`` request carries no fields."""
    _check_fields(data, _LIST_FIELDS, "bids.list")


def parse_subscribe(data: Mapping[str, Any]) -> tuple[str, int | None]:
    """The auction and the ``since`` position (or None) of a ``subscribe`` request.

    Raises:
        ServiceError: ``auction_not_found`` for a channel that names no possible auction,
            ``bad_request`` for a ``since`` that is not a position of an auction channel.
    """
    _check_fields(data, _SUBSCRIBE_FIELDS, "subscribe")
    channel = data.get("channel")
    if not isinstance(channel, str) or not channel.startswith(AUCTION_CHANNEL_PREFIX):
        raise _bad("the bids service answers for 'auction:<id>' channels only", field="channel")
    auction = parse_auction_id(channel[len(AUCTION_CHANNEL_PREFIX) :])
    since = data.get("since")
    if since is None:
        return auction, None
    if not isinstance(since, str) or not _SINCE.fullmatch(since):
        raise _bad(
            "'since' must be a position of an auction channel: a sequence number such as '42'",
            field="since",
        )
    return auction, int(since)


# The rules themselves.


def minimum_bid(current: int | None, starting_price: int, increment: int) -> int:
    """The lowest acceptable bid: the starting price, then the highest bid plus the increment."""
    return starting_price if current is None else current + increment


@dataclass(frozen=True, slots=True)
class Verdict:
    """What became of one bid: stored under its idempotency key and replayed on a retry."""

    auction: str
    amount: int
    ok: bool
    code: str | None = None
    seq: int | None = None
    ends_at: int | None = None
    minimum: int | None = None
    #: The bid moved the auction's end (anti-sniping).
    extended: bool = False
    #: For ``rate_limited``: when the bidder may bid again, in ms.
    retry_after_ms: int | None = None

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Verdict:
        """The verdict as the place script stores it (a msgpack map)."""
        return cls(
            auction=str(wire["auction"]),
            amount=int(wire["amount"]),
            ok=bool(wire["ok"]),
            code=wire.get("code"),
            seq=wire.get("seq"),
            ends_at=wire.get("ends_at"),
            minimum=wire.get("minimum"),
            extended=bool(wire.get("extended", False)),
            retry_after_ms=wire.get("retry_after_ms"),
        )


def verdict_outcome(verdict: Verdict, command: PlaceCommand) -> dict[str, Any] | ServiceError:
    """The reply to ``command`` given the verdict stored under its key."""
    if verdict.auction != command.auction or verdict.amount != command.amount:
        return _bad(
            "this idempotency key was already used for another bid: use a new key per bid",
            field="key",
        )
    if verdict.ok:
        return {
            "accepted": True,
            "seq": verdict.seq,
            "amount": verdict.amount,
            "ends_at": verdict.ends_at,
        }
    if verdict.code == ErrorCode.BID_TOO_LOW:
        return ServiceError(
            ErrorCode.BID_TOO_LOW,
            f"bid too low: the lowest acceptable bid is {verdict.minimum}",
            minimum=verdict.minimum,
        )
    if verdict.code == ErrorCode.AUCTION_CLOSED:
        message = f"auction {_shown(verdict.auction)} is closed"
        return ServiceError(ErrorCode.AUCTION_CLOSED, message)
    if verdict.code == ErrorCode.RATE_LIMITED:
        return ServiceError(
            ErrorCode.RATE_LIMITED,
            "too many bids: slow down (this bid was not judged; send it again later)",
            retry_after_ms=verdict.retry_after_ms,
        )
    return ServiceError(ErrorCode.AUCTION_NOT_FOUND, f"no auction {_shown(verdict.auction)}")


# Creating auctions (the admin API).


@dataclass(frozen=True, slots=True)
class AuctionSpec:
    """A valid new auction; exactly one of ``ends_at`` and ``duration_ms`` is set."""

    id: str | None
    title: str
    starting_price: int
    increment: int
    ends_at: int | None
    duration_ms: int | None
    extend_window_ms: int
    extend_by_ms: int


def _spec_money(body: Mapping[str, Any], name: str) -> int:
    value = body.get(name)
    if value is None:
        raise _bad(f"missing field {name!r} (an integer number of minor units)", field=name)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_AMOUNT:
        raise _bad(f"{name!r} must be an integer from 1 to {MAX_AMOUNT}", field=name)
    return value


def _spec_seconds(
    body: Mapping[str, Any], name: str, default: float, low: float, high: float
) -> int:
    value = body.get(name, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        raise _bad(f"{name!r} must be a number of seconds from {low:g} to {high:g}", field=name)
    return round(value * 1000)


def parse_auction_spec(
    body: Mapping[str, Any], *, extend_window: float, extend_by: float
) -> AuctionSpec:
    """Check the JSON body of ``POST /auctions``.

    Raises:
        ServiceError: ``bad_request`` naming the offending ``field``.
    """
    _check_fields(body, _SPEC_FIELDS, "an auction")
    auction_id = body.get("id")
    if auction_id is not None and (
        not isinstance(auction_id, str) or not _AUCTION_ID.fullmatch(auction_id)
    ):
        raise _bad("'id' must be 1-64 letters, digits, '_' or '-'", field="id")
    title = body.get("title")
    if not isinstance(title, str) or not title.strip() or len(title) > MAX_TITLE_LENGTH:
        raise _bad(f"'title' must be a string of 1-{MAX_TITLE_LENGTH} characters", field="title")
    starting_price = _spec_money(body, "starting_price")
    increment = _spec_money(body, "increment")
    ends_at, duration_ms = body.get("ends_at"), None
    if (ends_at is None) == (body.get("duration_s") is None):
        raise _bad(
            "give exactly one of 'ends_at' (ms since the epoch) and 'duration_s'", field="ends_at"
        )
    if ends_at is not None:
        if isinstance(ends_at, bool) or not isinstance(ends_at, int) or not 0 < ends_at < 2**53:
            message = "'ends_at' must be an integer of milliseconds since the epoch"
            raise _bad(message, field="ends_at")
    else:
        duration_ms = _spec_seconds(body, "duration_s", 0.0, 0.001, MAX_DURATION_S)
    return AuctionSpec(
        id=auction_id,
        title=title,
        starting_price=starting_price,
        increment=increment,
        ends_at=ends_at,
        duration_ms=duration_ms,
        extend_window_ms=_spec_seconds(body, "extend_window", extend_window, 0, MAX_EXTEND_S),
        extend_by_ms=_spec_seconds(body, "extend_by", extend_by, 0, MAX_EXTEND_S),
    )
