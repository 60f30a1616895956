"""The load test's end-of-run invariant check catches each kind of broken state."""

from __future__ import annotations

import asyncio
from typing import cast

from redis.asyncio import Redis

from bids_service.rules import PlaceCommand, parse_auction_spec
from common.codec import load_bus, pack_bus
from loadtests.invariants import Accepted, check_invariants
from tests.bids.support import KEYS, make_store, spread


async def _auction_with_bids(redis: Redis) -> list[Accepted]:
    store = make_store(redis)
    await store.load()
    spec = parse_auction_spec(
        {"title": "t", "starting_price": 10, "increment": 5, "duration_s": 60},
        extend_window=0,
        extend_by=0,
    )
    await store.create("a", spec)
    bids = [(PlaceCommand("a", amount, f"k{amount}"), "ann") for amount in (10, 20, 30)]
    verdicts = await store.place(bids)
    return [
        Accepted("a", verdict.seq or 0, command.amount, "ann", command.key)
        for (command, _), (verdict, _) in zip(bids, verdicts, strict=True)
    ]


async def _check(redis_url: str, accepted: list[Accepted]) -> list[str]:
    report = await asyncio.to_thread(check_invariants, redis_url, ["a"], accepted)
    return report.violations


async def test_a_consistent_auction_passes(redis: Redis, redis_url: str) -> None:
    """Bids placed through the store satisfy every invariant."""
    accepted = await _auction_with_bids(redis)
    assert await _check(redis_url, accepted) == []


async def test_a_bid_no_client_saw_accepted_is_no_violation(redis: Redis, redis_url: str) -> None:
    """A bid in the history whose verdict never reached its client (timed out) is not lost."""
    accepted = await _auction_with_bids(redis)
    assert await _check(redis_url, accepted[:1]) == []


async def test_a_lost_or_altered_bid_is_caught(redis: Redis, redis_url: str) -> None:
    """An accepted verdict missing from the history, or different there, is a violation."""
    accepted = await _auction_with_bids(redis)
    ghost = Accepted("a", 9, 90, "ann", "k90")
    changed = Accepted("a", 2, 25, "ann", "k20")
    violations = await _check(redis_url, [*accepted, ghost, changed])
    assert any("missing from the history" in violation for violation in violations)
    assert any("accepted bid at 2 is" in violation for violation in violations)


async def test_a_wrong_highest_bid_is_caught(redis: Redis, redis_url: str) -> None:
    """A highest bid other than the last accepted one is a violation."""
    accepted = await _auction_with_bids(redis)
    await redis.hset(KEYS.auction("a"), "current", "999")
    violations = await _check(redis_url, accepted)
    assert any("highest bid is (999" in violation for violation in violations)


async def test_a_falling_amount_a_doubled_key_and_a_double_close_are_caught(
    redis: Redis, redis_url: str
) -> None:
    """A bid not above the previous, a key accepted twice and two closes are violations."""
    accepted = await _auction_with_bids(redis)
    entries = cast("list[tuple[bytes, dict[bytes, bytes]]]", await redis.xrange(KEYS.history("a")))
    envelope = load_bus(entries[-1][1][b"e"])
    for seq in (4, 5, 6):
        envelope["position"] = str(seq)
        if seq == 4:
            envelope["data"] = {**envelope["data"], "amount": 30, "seq": 4}
            fields = {b"e": pack_bus(envelope), b"k": b"k30"}
        else:
            envelope = {**envelope, "event": "auction.closed"}
            envelope["data"] = {"winner": "ann", "amount": 30}
            fields = {b"e": pack_bus(envelope)}
        await redis.xadd(KEYS.history("a"), fields, id=f"{seq}-0")  # type: ignore[arg-type]
    await redis.hset(KEYS.auction("a"), mapping={"seq": "6", "status": "closed"})
    violations = await _check(redis_url, accepted)
    assert any("does not exceed 30" in violation for violation in violations)
    assert any("key 'k30' of ann accepted twice" in violation for violation in violations)
    assert any("closed 2 times" in violation for violation in violations)


async def test_the_check_reads_each_auction_in_its_partition(redis: Redis, redis_url: str) -> None:
    """On three partitions the check finds each auction's keys in its own partition, and
    catches a broken auction in any of them."""
    store = make_store(redis, partitions=3)
    await store.load()
    spec = parse_auction_spec(
        {"title": "t", "starting_price": 10, "increment": 5, "duration_s": 60},
        extend_window=0,
        extend_by=0,
    )
    auctions = spread(store.keys.partitions, "p")
    for auction in auctions:
        await store.create(auction, spec)
    bids = [
        (PlaceCommand(a, amount, f"{a}-{amount}"), "ann") for amount in (10, 20) for a in auctions
    ]
    accepted = [
        Accepted(command.auction, verdict.seq or 0, command.amount, "ann", command.key)
        for (command, _), (verdict, _) in zip(bids, await store.place(bids), strict=True)
    ]

    def check(partitions: int) -> list[str]:
        return check_invariants(redis_url, auctions, accepted, partitions=partitions).violations

    assert await asyncio.to_thread(check, 3) == []
    # Read as one partition, the auctions of partitions 1 and 2 are not where it looks.
    missing = {violation for violation in await asyncio.to_thread(check, 1) if "exist" in violation}
    assert missing == {f"{auction}: the auction does not exist" for auction in auctions[1:]}
    await redis.hset(store.keys.auction(auctions[2]), "current", "999")
    violations = await asyncio.to_thread(check, 3)
    assert [violation.split(":")[0] for violation in violations] == [auctions[2]]
