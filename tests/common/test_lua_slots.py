"""Does each Lua script of the services run on one hash slot, as a Redis Cluster requires?

The stores run for sample entities over one and three partitions against a real Redis,
which records (MONITOR) the keys each script call is given and touches and the channels it
publishes on (tests/support/lua_audit.py); a call whose keys or channels hash to more than
one slot would fail on a cluster with CROSSSLOT. A script may be listed in
``CROSSSLOT_TODAY`` with its reason while it does not run on one slot yet: an expected
failure, which turns into an unexpected pass (a failure, xfail_strict) once mended. None is
listed today. docs/architecture.md ("On a Redis Cluster") lists the keys of each script.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Literal

import pytest
from redis.asyncio import Redis

from bids_service.rules import PlaceCommand, parse_auction_spec
from bids_service.store import BidStore
from chat_service.settings import ChatSettings
from chat_service.store import ChatStore
from common.envelope import now_ms
from common.keys import GATEWAY_LEASES, Partitions
from devtools.redis_server import RedisServer
from presence_service.rules import Change, Query
from presence_service.store import PresenceStore
from tests.bids.support import make_store, spread
from tests.chat.support import batch_over_every_partition
from tests.presence.store_support import channel_in
from tests.support.lua_audit import (
    ScriptUse,
    parse_monitor_line,
    record_scripts,
    script_files,
    summarize,
)
from tests.support.waiting import wait_until


Script = tuple[str, str]
Kind = Literal["track", "untrack", "drop"]

# Why each script's calls span slots today, as the audit records them (the key names:
# docs/architecture.md, "Towards Redis Cluster"). "built" keys are not in KEYS: the script
# makes them from a prefix, which a cluster client cannot route by either.
CROSSSLOT_TODAY: dict[Script, str] = {}


async def _bids(redis: Redis) -> None:
    # Three partitions, and each batch mixes auctions of all three: a call that took bids,
    # or auctions to close, of two partitions would span two slots.
    store: BidStore = make_store(redis, partitions=3)
    await store.load()
    partitions = store.keys.partitions
    spec = {"title": "t", "starting_price": 1, "increment": 1, "duration_s": 60}
    lasting = spread(partitions, "a", per_partition=2)
    for auction in lasting:
        await store.create(auction, parse_auction_spec(spec, extend_window=0, extend_by=0))
    bids = [(PlaceCommand(auction, 5, f"k-{auction}"), "ann") for auction in lasting]
    await store.place([*bids, (PlaceCommand(lasting[0], 6, "k-again"), "bob")])
    for auction in lasting:
        await store.replay(auction, 0)
    short = {**spec, "duration_s": 0.05}
    ending = spread(partitions, "b")
    for auction in ending:
        await store.create(auction, parse_auction_spec(short, extend_window=0, extend_by=0))

    async def due() -> bool:
        return sorted(await store.due(10)) == sorted(ending)

    await wait_until(due, "auctions b-* due")
    assert sorted(await store.close(ending)) == sorted(ending)


async def _chat(redis: Redis) -> None:
    # With one partition, then three: one batch has rooms of every partition, and one user's
    # rooms in each up to the quota, whose pruning reads keys the script builds.
    for count in (1, 3):
        store = ChatStore(redis, ChatSettings(max_rooms=2), Partitions("chat", count))
        await store.load()
        batch = batch_over_every_partition(store, Partitions("chat", count))
        results = await store.run(batch.calls)
        assert not [result for result in results if isinstance(result, Exception)], results
        refused = batch.results_of("create over the quota", results)
        assert [result[0] for result in refused] == [b"too_many_rooms"] * count


async def _presence(redis: Redis) -> None:
    # With one partition, then three, where every batch mixes channels of several: a call
    # that mixed them would cross slots.
    for count in (1, 3):
        await _presence_in(redis, Partitions("presence", count))


async def _presence_in(redis: Redis, partitions: Partitions) -> None:
    store = PresenceStore(redis, partitions, grace=0.05, tombstone_ttl=600, batch=10)
    await store.load()
    seq = iter(range(1, 100))
    x, y, z = (channel_in(partitions, n % partitions.count, f"room:{n}-") for n in range(3))

    def change(kind: Kind, conn: str, channel: str = "", *, restart: bool = False) -> Change:
        # Connection gw1.1 of gateway gw1 is gw1-3.1 of gw1-3 with three partitions.
        gateway, number = conn.split(".")
        gateway += f"-{partitions.count}"
        connection = f"{gateway}.{number}"
        return Change(kind, connection, gateway, "ann", next(seq), now_ms(), channel, restart)

    await store.run([change("track", "gw1.1", x), change("track", "gw1.1", y), Query(x, None, 10)])
    await store.run([change("untrack", "gw1.1", x), change("track", "gw1.1", z), Query(y, "a", 1)])
    # A drop for a restart lingers for the grace (in each partition of y and z), then expire
    # releases it.
    await store.run([change("drop", "gw1.1", restart=True)])
    lingering = len({partitions.of(y), partitions.of(z)})
    released = [0]

    async def all_released() -> bool:
        # Each partition's record has its own expiry: they may end in different sweeps.
        released[0] += (await store.expire_lingering())[0]
        return released[0] == lingering

    await wait_until(all_released, "the lingering connection released")
    # A gateway whose lease expired long ago: reap releases its connections, partition by
    # partition, then its lease goes.
    await store.run([change("track", "gw2.1", x), change("track", "gw2.2", y)])
    await redis.zadd(GATEWAY_LEASES, {f"gw2-{partitions.count}": 1})
    assert (await store.reap_dead_gateways()).gateways == (f"gw2-{partitions.count}",)
    # A plain drop: the user's last connection leaves at once.
    await store.run([change("track", "gw3.1", z), change("track", "gw3.1", x)])
    await store.run([change("drop", "gw3.1")])


SCENARIOS: tuple[Callable[[Redis], Awaitable[None]], ...] = (_bids, _chat, _presence)


@pytest.fixture(scope="module")
async def audit() -> AsyncIterator[dict[Script, ScriptUse]]:
    """Every script's recorded calls, from a Redis of the module's own (MONITOR sees all)."""
    with RedisServer() as server:
        redis = Redis.from_url(server.url)
        recorded: dict[Script, list[tuple[list[str], list[list[str]]]]] = {}
        try:
            async with record_scripts(server.url, recorded):
                for scenario in SCENARIOS:
                    await scenario(redis)
            yield {script: await summarize(redis, calls) for script, calls in recorded.items()}
        finally:
            await redis.aclose()


async def test_the_audit_runs_every_script_of_the_services(audit: dict[Script, ScriptUse]) -> None:
    """Each ``*_service/lua/*.lua`` but the libraries was called: a new script joins a scenario."""
    assert sorted(audit) == script_files()


def _case(script: Script) -> object:
    reason = CROSSSLOT_TODAY.get(script)
    marks = [pytest.mark.xfail(reason=f"CROSSSLOT on a cluster: {reason}")] if reason else []
    return pytest.param(script, id=f"{script[0]}/{script[1]}", marks=marks)


@pytest.mark.parametrize("script", [_case(script) for script in script_files()])
async def test_each_call_of_a_script_touches_one_hash_slot(
    audit: dict[Script, ScriptUse], script: Script
) -> None:
    """Every call's keys, given and touched, and the channels it publishes on hash to one
    slot, as a cluster requires."""
    crossing = audit[script].crossing()
    assert not crossing, f"{script[1]}.lua would hit CROSSSLOT: " + ", ".join(
        f"{key} (slot {slot})" for key, slot in crossing[0].key_slots()
    )


def test_a_monitor_line_gives_its_client_and_exact_arguments() -> None:
    """MONITOR's quoting is undone: spaces, escaped quotes and bytes stay in their argument."""
    line = r'1796292143.830637 [0 lua] "SET" "a b" "say \"hi\"\x00"'
    assert parse_monitor_line(line) == ("lua", ["SET", "a b", 'say "hi"\x00'])
    assert parse_monitor_line("OK") is None
