"""The reference model of the auction rules, in Python: what place.lua and close.lua do.

The rule that runs is the Lua in ``bids_service/lua/``; the tests replay an auction's
accepted bids through :func:`apply_bid` and compare with what Redis holds, and check each
rule here against the scripts' documented behaviour (times in ms, money in minor units).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from bids_service.rules import CLOSED, OPEN, Verdict, minimum_bid
from common.errors import ErrorCode


__all__ = ["Auction", "Emitted", "apply_bid", "close_auction", "extended_end", "verdict_ttl"]


def extended_end(now: int, ends_at: int, window: int, by: int) -> int:
    """The end time after a bid accepted at ``now`` (all in ms).

    A bid accepted when at most ``window`` remains moves the end to ``by`` after the bid, and
    never earlier: the auction ends only after ``by`` without a bid in its last ``window``.
    """
    if window > 0 and ends_at - now <= window:
        return max(ends_at, now + by)
    return ends_at


@dataclass(frozen=True, slots=True)
class Auction:
    """An auction's state, as the reference model holds it (times in ms)."""

    id: str
    starting_price: int
    increment: int
    ends_at: int
    extend_window: int = 0
    extend_by: int = 0
    status: str = OPEN
    current: int | None = None
    bidder: str | None = None
    seq: int = 0

    @property
    def minimum(self) -> int:
        return minimum_bid(self.current, self.starting_price, self.increment)


def verdict_ttl(verdict: Verdict, key_ttl_ms: int, refusal_ttl_ms: int) -> int | None:
    """How long a verdict is kept under its idempotency key (ms), or None: not kept.

    An accepted bid's verdict is kept for the key TTL, so that every retry gets the same seq.
    A too-low bid's is kept, shorter, so that a retry soon after gets the same ``minimum``
    (judged again, it would be refused too, as the minimum only rises, but with a newer one).
    The other refusals come out the same however often they are judged again (an auction that
    has closed stays closed; a missing one stays missing unless an admin creates it) or must
    not stick (``rate_limited``), so they are not kept: a bid on an auction that does not
    exist stores nothing. place.lua applies this.
    """
    if verdict.ok:
        return key_ttl_ms
    if verdict.code == ErrorCode.BID_TOO_LOW:
        return refusal_ttl_ms
    return None


#: An event an auction emitted: its name, its position (the auction's sequence) and data.
Emitted = tuple[str, int, dict[str, Any]]


def apply_bid(
    auction: Auction | None, auction_id: str, amount: int, bidder: str, now: int
) -> tuple[Auction | None, Verdict, list[Emitted]]:
    """Judge one bid at ``now``: the new state, the verdict and the events (what place.lua does)."""
    if auction is None:
        code = ErrorCode.AUCTION_NOT_FOUND.value
        return None, Verdict(auction_id, amount, ok=False, code=code), []
    if auction.status != OPEN or now >= auction.ends_at:
        verdict = Verdict(auction.id, amount, ok=False, code=ErrorCode.AUCTION_CLOSED.value)
        return auction, verdict, []
    minimum = auction.minimum
    if amount < minimum:
        code = ErrorCode.BID_TOO_LOW.value
        return auction, Verdict(auction.id, amount, ok=False, code=code, minimum=minimum), []
    seq = auction.seq + 1
    ends_at = extended_end(now, auction.ends_at, auction.extend_window, auction.extend_by)
    placed = {"amount": amount, "bidder": bidder, "seq": seq, "ends_at": ends_at, "placed_at": now}
    events: list[Emitted] = [("bid.placed", seq, placed)]
    last = seq
    if ends_at > auction.ends_at:
        last = seq + 1
        events.append(("auction.extended", last, {"ends_at": ends_at}))
    state = replace(auction, current=amount, bidder=bidder, seq=last, ends_at=ends_at)
    verdict = Verdict(auction.id, amount, ok=True, seq=seq, ends_at=ends_at, extended=last > seq)
    return state, verdict, events


def close_auction(auction: Auction, now: int) -> tuple[Auction, list[Emitted]]:
    """Close an open auction whose end has passed (what close.lua does); else change nothing."""
    if auction.status != OPEN or now < auction.ends_at:
        return auction, []
    seq = auction.seq + 1
    closed = {"winner": auction.bidder, "amount": auction.current}
    return replace(auction, status=CLOSED, seq=seq), [("auction.closed", seq, closed)]
