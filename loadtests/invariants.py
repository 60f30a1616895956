"""End-of-run invariants of the bids service, read straight from Redis (blocking redis-py).

For every auction of the run:

- the history holds positions 1..seq with no gap, and the hash's seq is the last of them;
- accepted amounts (``bid.placed``) strictly increase with the position;
- no (bidder, idempotency key) was accepted twice;
- the auction's highest bid and bidder are those of its last accepted bid;
- an auction closed at most once, with the highest bid as winner and amount, as its last
  event, and is closed exactly when its status says so;

and for every accepted verdict a client received: the bid is in the history at that position
with that amount and bidder (no accepted bid lost), and no key got two different verdicts.

The keys are read under the names of this checkout (``bids:{bids.<n>}:...``). Asked to
(``legacy_names``, for the REF side of ``scripts/bench-bids --compare``), the check reads
those of a checkout from before the partitions (``bids:auction:<id>``, ``bids:history:<id>``,
before commit f5046c0) when the auctions are found there only, and says so in its summary.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from bids_service.keys import BidKeys
from common.codec import load_bus
from common.keys import Partitions
from devtools.private_redis import BlockingClient, blocking_client


__all__ = ["LEGACY_NAMES", "Accepted", "Report", "check_invariants"]

_CHUNK = 5000


class _Names(Protocol):
    """Where an auction's hash and history are."""

    def auction(self, auction: str) -> str: ...

    def history(self, auction: str) -> str: ...


class _LegacyNames:
    """The names of a bids service from before the partitions: ``bids:auction:<id>``."""

    def auction(self, auction: str) -> str:
        return f"bids:auction:{auction}"

    def history(self, auction: str) -> str:
        return f"bids:history:{auction}"


LEGACY_NAMES = _LegacyNames()


@dataclass(frozen=True, slots=True)
class Accepted:
    """An accepted verdict as a client received it."""

    auction: str
    seq: int
    amount: int
    bidder: str
    key: str


@dataclass
class Report:
    auctions: int = 0
    accepted_in_history: int = 0
    closed: int = 0
    client_accepted: int = 0
    violations: list[str] = field(default_factory=list)
    #: Whether the keys were read under the names from before the partitions.
    legacy_names: bool = False

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> str:
        verdict = "OK" if self.ok else f"FAILED ({len(self.violations)} violations)"
        lines = [
            f"invariants: {verdict}: {self.auctions} auctions, {self.accepted_in_history} "
            f"accepted bids in history, {self.client_accepted} accepted verdicts seen by "
            f"clients, {self.closed} auctions closed"
            + (
                " (read under the key names from before the partitions)"
                if self.legacy_names
                else ""
            )
        ]
        lines += [f"  - {violation}" for violation in self.violations[:20]]
        if len(self.violations) > 20:
            lines.append(f"  ... and {len(self.violations) - 20} more")
        return "\n".join(lines)


_Entry = tuple[int, dict[str, Any], str | None]


def _pairs(reply: dict[bytes, bytes] | list[bytes]) -> dict[bytes, bytes]:
    """A reply of field-value pairs as a dict: a cluster client's transaction hands back
    HGETALL's and XRANGE's fields as flat lists (it applies no reply parsing)."""
    if isinstance(reply, dict):
        return reply
    return dict(zip(reply[::2], reply[1::2], strict=True))


def _entry(entry_id: bytes, reply: dict[bytes, bytes] | list[bytes]) -> _Entry:
    """A history entry as (position, envelope, idempotency key or None)."""
    fields = _pairs(reply)
    key = fields.get(b"k")
    return (
        int(entry_id.split(b"-")[0]),
        load_bus(fields[b"e"]),
        None if key is None else key.decode(),
    )


def _read_auction(
    client: BlockingClient, names: _Names, auction: str
) -> tuple[dict[str, str], list[_Entry]]:
    """An auction's hash and every entry of its history, as of one instant.

    The history is read in chunks, and its tail in one transaction with the hash: a bid that
    lands while the check reads (a request that timed out client-side may still commit) is then
    in both or in neither, never seen as a gap or a stale highest bid.
    """
    entries: list[_Entry] = []
    start = "-"
    # One partition's keys, in one slot: the transaction below runs on a cluster too.
    history_key, auction_key = names.history(auction), names.auction(auction)
    while True:
        chunk = cast("list[Any]", client.xrange(history_key, start, "+", count=_CHUNK))
        if len(chunk) < _CHUNK:
            break
        entries += [_entry(entry_id, fields) for entry_id, fields in chunk]
        start = "(" + chunk[-1][0].decode()
    with client.pipeline(transaction=True) as pipeline:
        pipeline.hgetall(auction_key)
        pipeline.xrange(history_key, start, "+")
        state, tail = pipeline.execute()
    entries += [_entry(entry_id, fields) for entry_id, fields in tail]
    return {k.decode(): v.decode() for k, v in _pairs(state).items()}, entries


def _only_legacy(client: BlockingClient, names: _Names, auction: str) -> bool:
    """Whether ``auction`` exists under the names from before the partitions only."""
    return not client.exists(names.auction(auction)) and bool(
        client.exists(LEGACY_NAMES.auction(auction))
    )


def check_invariants(
    redis_url: str,
    auctions: list[str],
    accepted: list[Accepted] | None = None,
    *,
    partitions: int = 1,
    cluster: bool = False,
    legacy_names: bool = False,
) -> Report:
    """Check the invariants over ``auctions`` and the verdicts clients received, on a bids
    service of ``partitions`` partitions (``RT_BIDS_PARTITIONS``), on one Redis or on a
    cluster (``redis_url`` then names its seeds, as ``RT_REDIS_URL`` does); with
    ``legacy_names``, under the names from before the partitions if the auctions are there."""
    names: _Names = BidKeys(Partitions("bids", partitions))
    report = Report(auctions=len(auctions))
    bad = report.violations.append
    placed: dict[tuple[str, int], tuple[int, str, str | None]] = {}
    with blocking_client(redis_url, cluster=cluster) as client:
        if legacy_names and auctions and _only_legacy(client, names, auctions[0]):
            names, report.legacy_names = LEGACY_NAMES, True
        for auction in auctions:
            state, history = _read_auction(client, names, auction)
            if not state:
                bad(f"{auction}: the auction does not exist")
                continue
            positions = [position for position, _, _ in history]
            if positions != list(range(1, len(history) + 1)):
                bad(f"{auction}: history positions are not 1..{len(history)} without gaps")
            if int(state["seq"]) != (positions[-1] if positions else 0):
                bad(f"{auction}: seq {state['seq']} is not the last history position")
            highest: tuple[int, str] | None = None
            keys: set[tuple[str, str | None]] = set()
            closes: list[int] = []
            for position, envelope, key in history:
                event, data = envelope["event"], envelope["data"]
                if envelope["position"] != str(position):
                    bad(f"{auction}: entry {position} carries position {envelope['position']}")
                if closes:
                    bad(f"{auction}: {event} at {position} after the auction closed")
                if event == "bid.placed":
                    report.accepted_in_history += 1
                    amount, bidder = data["amount"], data["bidder"]
                    if highest is not None and amount <= highest[0]:
                        bad(f"{auction}: bid {amount} at {position} does not exceed {highest[0]}")
                    highest = (amount, bidder)
                    if (bidder, key) in keys:
                        bad(f"{auction}: key {key!r} of {bidder} accepted twice")
                    keys.add((bidder, key))
                    placed[(auction, position)] = (amount, bidder, key)
                elif event == "auction.closed":
                    closes.append(position)
                    winner = (data["amount"], data["winner"]) if data["winner"] else None
                    if winner != highest:
                        bad(f"{auction}: closed with {winner}, but the highest bid is {highest}")
            current = (int(state["current"]), state["bidder"]) if "current" in state else None
            if current != highest:
                bad(f"{auction}: highest bid is {current}, the last accepted is {highest}")
            if len(closes) > 1:
                bad(f"{auction}: closed {len(closes)} times")
            if (state["status"] == "closed") != (len(closes) == 1):
                bad(f"{auction}: status {state['status']} with {len(closes)} close events")
            report.closed += len(closes)
    verdicts: dict[tuple[str, str], set[tuple[str, int]]] = defaultdict(set)
    for bid in accepted or ():
        report.client_accepted += 1
        verdicts[(bid.bidder, bid.key)].add((bid.auction, bid.seq))
        stored = placed.get((bid.auction, bid.seq))
        if stored is None:
            bad(f"{bid.auction}: accepted bid at {bid.seq} is missing from the history")
        elif stored != (bid.amount, bid.bidder, bid.key):
            bad(f"{bid.auction}: accepted bid at {bid.seq} is {stored} in the history")
    for (bidder, key), seen in verdicts.items():
        if len(seen) > 1:
            bad(f"key {key!r} of {bidder} got {len(seen)} different accepted verdicts")
    return report
