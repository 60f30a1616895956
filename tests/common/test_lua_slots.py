"""Towards Redis Cluster: would each Lua script of the services run on one hash slot?

The stores run for a sample entity against a real Redis, which records (MONITOR) the keys each
script call is given and touches (tests/support/lua_audit.py); a call whose keys hash to more
than one slot would fail on a cluster with CROSSSLOT. Today's keys have no hash tags, so most
scripts would: those are expected failures, each with its reason, and one turns into an
unexpected pass (a failure, xfail_strict) once its keys share a tag, to be unmarked then.
docs/architecture.md ("Towards Redis Cluster") lists the keys of each script.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from redis.asyncio import Redis

from bids_service.rules import PlaceCommand, parse_auction_spec
from bids_service.store import BidStore
from chat_service.settings import ChatSettings
from chat_service.store import ChatStore
from common.envelope import new_id, now_ms
from common.keys import GATEWAY_LEASES
from devtools.redis_server import RedisServer
from presence_service.rules import Change, Query
from presence_service.store import PresenceStore
from tests.bids.support import make_store, spread
from tests.support.lua_audit import (
    ScriptUse,
    parse_monitor_line,
    record_scripts,
    script_files,
    summarize,
)
from tests.support.waiting import wait_until


Script = tuple[str, str]

# Why each script's calls span slots today, as the audit records them (the key names:
# docs/architecture.md, "Towards Redis Cluster"). "built" keys are not in KEYS: the script
# makes them from a prefix, which a cluster client cannot route by either.
CROSSSLOT_TODAY: dict[Script, str] = {
    ("chat_service", "create"): "the room's chat:room: and chat:members:, the user's "
    "chat:owned: and chat:create-rate:",
    ("chat_service", "history"): "chat:room:<room>, chat:members:<room> and chat:log:<room>",
    ("chat_service", "open"): "the room's chat:room:, chat:members: and chat:log:, the user's "
    "chat:owned: and chat:create-rate:",
    ("chat_service", "send"): "the room's chat:room:, chat:members: and chat:log:, "
    "chat:sent:<room>|<user>|<client_id>, the user's chat:rate:",
    ("chat_service", "typing"): "chat:room:<room>, chat:members:<room>, chat:typing:<room>|<user>",
    ("presence_service", "drop"): "presence:conn:<id>, and built: presence:gw:<gateway>, "
    "presence:dead, presence:ch:<channel>, presence:channels, presence:users, and for a "
    "restart presence:linger:<id>, presence:lingering, presence:lu:<user>",
    ("presence_service", "expire"): "presence:lingering, and built: each record's "
    "presence:linger:<id>, presence:lu:<user>, presence:ch:<channel>, presence:channels, "
    "presence:users",
    ("presence_service", "reap"): "gw:leases and presence:dead, and built: each connection's "
    "presence:conn:<id>, presence:gw:<gateway>, presence:ch:<channel>, presence:channels, "
    "presence:users",
    ("presence_service", "track"): "presence:conn:<id>, and built: presence:ch:<channel>, "
    "presence:channels, presence:users, presence:gw:<gateway>, presence:dead, "
    "presence:lu:<user>",
    ("presence_service", "untrack"): "presence:conn:<id>, and built: presence:ch:<channel>, "
    "presence:channels, presence:users, presence:dead",
}


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
    store = ChatStore(redis, ChatSettings())
    await store.load()
    calls = [
        store.create("r1", "ann", True, ("bob",)),
        store.open("r1", "ann", create=False, since=None, latest=10),
        store.send("r1", "ann", "hello", "c1", new_id()),
        store.typing("r1", "ann", new_id()),
        store.history("r1", "ann", None, 10),
    ]
    results = await store.run(calls)
    assert not [result for result in results if isinstance(result, Exception)], results


async def _presence(redis: Redis) -> None:
    store = PresenceStore(redis, grace=0.05, tombstone_ttl=600, batch=10)
    await store.load()
    seq = iter(range(1, 100))

    def change(kind: str, conn: str, channel: str = "", *, restart: bool = False) -> Change:
        gateway = conn.split(".")[0]
        return Change(kind, conn, gateway, "ann", next(seq), now_ms(), channel, restart)  # type: ignore[arg-type]

    await store.run([change("track", "gw1.1", "room:x"), Query("room:x", None, 10)])
    await store.run([change("untrack", "gw1.1", "room:x"), change("track", "gw1.1", "room:y")])
    # A drop for a restart lingers for the grace, then expire releases it.
    await store.run([change("drop", "gw1.1", restart=True)])

    async def released() -> bool:
        return (await store.expire_lingering())[0] == 1

    await wait_until(released, "the lingering connection released")
    # A gateway whose lease expired long ago: reap releases its connection.
    await store.run([change("track", "gw2.1", "room:x")])
    await redis.zadd(GATEWAY_LEASES, {"gw2": 1})
    assert (await store.reap_dead_gateways()).gateways == ("gw2",)
    # A plain drop: the user's last connection leaves at once.
    await store.run([change("track", "gw3.1", "room:z"), change("drop", "gw3.1")])


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
    """Every call's keys, given and touched, hash to one slot, as a cluster requires."""
    crossing = audit[script].crossing()
    assert not crossing, f"{script[1]}.lua would hit CROSSSLOT: " + ", ".join(
        f"{key} (slot {slot})" for key, slot in crossing[0].key_slots()
    )


def test_a_monitor_line_gives_its_client_and_exact_arguments() -> None:
    """MONITOR's quoting is undone: spaces, escaped quotes and bytes stay in their argument."""
    line = r'1796292143.830637 [0 lua] "SET" "a b" "say \"hi\"\x00"'
    assert parse_monitor_line(line) == ("lua", ["SET", "a b", 'say "hi"\x00'])
    assert parse_monitor_line("OK") is None
