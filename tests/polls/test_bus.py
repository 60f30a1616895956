"""The poll service on the bus alone: each request, its refusals, idempotency, tallies,
replay with since, and the worker's duties (undecodable entries, claims, a lost group)."""

from __future__ import annotations

import asyncio
import functools
import itertools
from typing import Any

import pytest
from redis.asyncio import Redis

from common.codec import load_bus, pack_bus
from tests.polls.support import POLL_STREAM, BusClient, Launcher
from tests.support.processes import ManagedProcess, http_get_async
from tests.support.waiting import MS, wait_until


@pytest.fixture(scope="module", autouse=True)
def service(launcher: Launcher) -> ManagedProcess:
    """One instance of the poll service for the module."""
    return launcher.poll()


def tallies(client: BusClient, poll: str) -> list[dict[str, Any]]:
    return [event for event in client.events[f"poll:{poll}"] if event["event"] == "poll.tally"]


async def test_create_vote_and_get(client: BusClient) -> None:
    """A created poll counts a vote and shows it in poll.get."""
    created = await client.ok(
        "poll.create", {"question": " Tea? ", "options": ["yes", "no"], "closes_in": 60}
    )
    assert created["question"] == "Tea?"
    assert created["options"] == ["yes", "no"]
    assert created["channel"] == f"poll:{created['poll']}"
    voted = await client.ok("poll.vote", {"poll": created["poll"], "option": "yes", "key": "k"})
    assert voted == {"poll": created["poll"], "option": "yes", "changed": True}
    got = await client.ok("poll.get", {"poll": created["poll"]})
    assert got["counts"] == {"yes": 1, "no": 0}
    assert got["closed"] is False
    assert got["closes_at"] == created["closes_at"]
    assert got["question"] == "Tea?"


async def test_a_vote_retried_with_its_key_counts_once_with_the_same_reply(
    client: BusClient,
) -> None:
    """The same key twice is one vote and one reply, even after the vote was changed."""
    poll = await client.create()
    first = await client.ok("poll.vote", {"poll": poll, "option": "yes", "key": "a"})
    await client.ok("poll.vote", {"poll": poll, "option": "no", "key": "b"})
    again = await client.ok("poll.vote", {"poll": poll, "option": "yes", "key": "a"})
    assert again == first
    got = await client.ok("poll.get", {"poll": poll})
    assert got["counts"] == {"yes": 0, "no": 1}


async def test_a_redelivered_create_makes_one_poll(client: BusClient, bus: Redis) -> None:
    """A create entry handled twice (same request id) answers the same poll."""
    request = client.request(
        "poll.create", {"question": "Q", "options": ["a", "b"], "closes_in": 60}
    )
    await client.send(request)
    first = await client.reply(request.id)
    await client.send(request)
    second = await client.reply(request.id)
    assert first["data"] == second["data"]
    assert len([key async for key in bus.scan_iter("poll:poll:*")]) >= 1


async def test_a_changed_vote_moves_and_the_tally_follows(client: BusClient) -> None:
    """Bob's second vote leaves his first option; the last tally shows the move."""
    poll = await client.create()
    await client.listen(f"poll:{poll}")
    await client.ok("poll.vote", {"poll": poll, "option": "yes", "key": "1"}, user="bob")
    moved = await client.ok("poll.vote", {"poll": poll, "option": "no", "key": "2"}, user="bob")
    assert moved == {"poll": poll, "option": "no", "previous": "yes", "changed": True}

    def settled() -> bool:
        seen = tallies(client, poll)
        return bool(seen) and seen[-1]["data"]["counts"] == {"yes": 0, "no": 1}

    await wait_until(settled, "the tally of the moved vote")
    same = await client.ok("poll.vote", {"poll": poll, "option": "no", "key": "3"}, user="bob")
    assert same["changed"] is False


async def test_tallies_are_coalesced_to_the_configured_rate(client: BusClient) -> None:
    """60 votes in a burst make at most 4 tallies a second, the last with every vote."""
    poll = await client.create()
    await client.listen(f"poll:{poll}")
    votes = [
        client.ok("poll.vote", {"poll": poll, "option": "yes", "key": "k"}, user=f"u{n}")
        for n in range(60)
    ]
    await asyncio.gather(*votes)

    def complete() -> bool:
        seen = tallies(client, poll)
        return bool(seen) and seen[-1]["data"]["counts"]["yes"] == 60

    await wait_until(complete, "a tally with all 60 votes")
    seen = tallies(client, poll)
    stamps = [event["ts"] for event in seen]
    # Stamps come from Redis's clock (TIME in the script): 250 ms apart at 4 per second.
    assert all(later - earlier >= 250 for earlier, later in itertools.pairwise(stamps))
    assert len(seen) < 60
    positions = [event["position"] for event in seen]
    assert positions == sorted(positions, key=lambda p: tuple(map(int, p.split("-"))))


async def test_refusals(client: BusClient) -> None:
    """Unknown poll, unknown option, anonymous voter, unknown type: each its code."""
    poll = await client.create()
    missing = await client.error("poll.get", {"poll": "0123456789abcdef"})
    assert missing["code"] == "poll_not_found"
    assert (await client.error("poll.vote", {"poll": "nope", "option": "a", "key": "k"}))[
        "code"
    ] == "poll_not_found"
    wrong = await client.error("poll.vote", {"poll": poll, "option": "maybe", "key": "k"})
    assert wrong["code"] == "unknown_option"
    anonymous = await client.error(
        "poll.vote", {"poll": poll, "option": "yes", "key": "k"}, user=None
    )
    assert anonymous["code"] == "unauthenticated"
    unknown = await client.error("poll.nothing", {})
    assert unknown["code"] == "unknown_type"


@pytest.mark.parametrize(
    ("type_", "data", "words"),
    [
        ("poll.create", {"question": "Q", "options": ["a"], "closes_in": 5}, "2 to 20 options"),
        ("poll.create", {"question": "Q", "options": ["a", "a"], "closes_in": 5}, "differ"),
        ("poll.create", {"question": "", "options": ["a", "b"], "closes_in": 5}, "empty"),
        ("poll.create", {"question": 3, "options": ["a", "b"], "closes_in": 5}, "string"),
        ("poll.create", {"question": "Q", "options": "a,b", "closes_in": 5}, "array"),
        ("poll.create", {"question": "Q", "options": ["a", 2], "closes_in": 5}, "string"),
        ("poll.create", {"question": "Q", "options": ["a", "b"], "closes_in": "5"}, "seconds"),
        ("poll.create", {"question": "Q", "options": ["a", "b"], "closes_in": 0}, "seconds"),
        ("poll.create", {"question": "Q" * 501, "options": ["a", "b"], "closes_in": 5}, "500"),
        ("poll.create", {"question": "Q", "options": ["a", "b"], "closes_in": 5, "x": 1}, "'x'"),
        ("poll.vote", {"poll": "0123456789abcdef", "option": "a"}, "'key'"),
        ("poll.vote", {"poll": ["x"], "option": "a", "key": "k"}, "'poll'"),
        ("poll.vote", {"poll": "0123456789abcdef", "option": 1, "key": "k"}, "'option'"),
        ("poll.get", {}, "'poll'"),
    ],
)
async def test_malformed_fields_are_bad_requests(
    client: BusClient, type_: str, data: dict[str, Any], words: str
) -> None:
    """A malformed field is a bad_request naming what is wrong."""
    error = await client.error(type_, data)
    assert error["code"] == "bad_request"
    assert words in error["message"]


async def test_a_closed_poll_refuses_votes_and_says_closed(client: BusClient) -> None:
    """After closes_in, a vote is poll_closed and poll.get says closed, with one poll.closed."""
    poll = await client.create(closes_in=0.3)
    await client.listen(f"poll:{poll}")
    await client.ok("poll.vote", {"poll": poll, "option": "yes", "key": "k"})

    def closed() -> bool:
        return any(e["event"] == "poll.closed" for e in client.events[f"poll:{poll}"])

    await wait_until(closed, "poll.closed")
    refused = await client.error("poll.vote", {"poll": poll, "option": "no", "key": "k2"})
    assert refused["code"] == "poll_closed"
    got = await client.ok("poll.get", {"poll": poll})
    assert got["closed"] is True
    assert got["counts"] == {"yes": 1, "no": 0}
    (event,) = [e for e in client.events[f"poll:{poll}"] if e["event"] == "poll.closed"]
    assert event["data"]["counts"] == {"yes": 1, "no": 0}
    assert event["position"] == got["position"]


async def test_subscribe_replays_after_since(client: BusClient) -> None:
    """subscribe with since answers every event after it, gap-free; a bad since is false."""
    poll = await client.create()
    channel = f"poll:{poll}"
    await client.listen(channel)

    def counted(count: int) -> bool:
        seen = tallies(client, poll)
        return bool(seen) and seen[-1]["data"]["counts"]["yes"] == count

    for n in range(1, 4):
        await client.ok("poll.vote", {"poll": poll, "option": "yes", "key": "k"}, user=f"r{n}")
        await wait_until(functools.partial(counted, n), f"the tally of vote {n}")
    live = [(e["position"], e["data"]) for e in client.events[channel]]
    answer = await client.ok("subscribe", {"channel": channel})
    assert answer == {"channel": channel, "position": live[-1][0]}
    everything = await client.ok("subscribe", {"channel": channel, "since": "0-0"})
    assert everything["recovered"] is True
    assert [(e["position"], e["data"]) for e in everything["events"]] == live
    after_first = await client.ok("subscribe", {"channel": channel, "since": live[0][0]})
    assert [(e["position"], e["data"]) for e in after_first["events"]] == live[1:]
    assert after_first["position"] == live[-1][0]
    up_to_date = await client.ok("subscribe", {"channel": channel, "since": live[-1][0]})
    assert up_to_date["recovered"] is True
    assert up_to_date["events"] == []
    for since in ("garbage", "1-2-x", "99999999999999-0", "1-0"):
        answer = await client.ok("subscribe", {"channel": channel, "since": since})
        assert answer["recovered"] is False, since
        assert answer["events"] == []
    missing = await client.error("subscribe", {"channel": "poll:0123456789abcdef"})
    assert missing["code"] == "poll_not_found"
    foreign = await client.error("subscribe", {"channel": "chat:general"})
    assert foreign["code"] == "invalid_channel"


async def test_an_undecodable_entry_is_refused_through_its_reply_address(
    client: BusClient, bus: Redis
) -> None:
    """Bytes that are no request get bad_request at r's address; without r they are dropped."""
    address = pack_bus({"gw": client.gateway, "conn": f"{client.gateway}.1", "re": "junk-1"})
    request = client.request("poll.get", {"poll": "0123456789abcdef"})
    await client.send(request, entry={"e": b"\xc1 not msgpack", "r": address})
    refusal = await client.reply("junk-1")
    assert refusal["error"]["code"] == "bad_request"
    assert refusal["conn"] == f"{client.gateway}.1"
    another_version = {**request.to_wire(), "v": 2}
    await client.send(request, entry={"e": pack_bus(another_version)})
    await client.send(request, entry={"x": b"no e at all"})
    # The service carries on, and nothing stays in the stream.
    assert (await client.error("poll.get", {"poll": "0123456789abcdef"}))["code"]
    await wait_until(lambda: _stream_empty(bus), "an empty request stream")


async def _stream_empty(bus: Redis) -> bool:
    return int(await bus.xlen(POLL_STREAM)) == 0


async def test_an_entry_left_pending_by_a_dead_consumer_is_claimed(
    client: BusClient, bus: Redis
) -> None:
    """An entry another consumer read and never acknowledged is answered after the idle time."""
    poll = await client.create()
    request = client.request("poll.get", {"poll": poll})
    await client.send(request)
    # A consumer that reads the entry and dies (it may win the race against the service).
    read = await bus.xreadgroup("poll", "poll-dead", {POLL_STREAM: ">"}, count=10)
    answer = await client.reply(request.id, within=5_000 * MS)
    assert answer["ok"], (answer, read)
    await wait_until(lambda: _stream_empty(bus), "an empty request stream")


async def test_a_lost_consumer_group_is_made_again(client: BusClient, bus: Redis) -> None:
    """After the group is destroyed (a Redis restart without persistence), requests are answered."""
    await bus.xgroup_destroy(POLL_STREAM, "poll")
    request = client.request("poll.get", {"poll": "0123456789abcdef"})

    async def answered() -> bool:
        await client.send(request)
        try:
            await client.reply(request.id, within=500 * MS)
        except TimeoutError:
            return False
        return True

    await wait_until(answered, "a reply after the group was lost", within=10_000 * MS)


async def test_health_and_metrics(service: ManagedProcess, client: BusClient) -> None:
    """/livez and /readyz answer; /metrics counts requests by type and result."""
    await client.error("poll.get", {"poll": "0123456789abcdef"})
    assert await http_get_async(service.base_url + "/livez") == (200, "ok\n")
    assert await http_get_async(service.base_url + "/readyz") == (200, "ready\n")
    labels = {"service": "poll", "type": "poll.get", "result": "poll_not_found"}
    assert await service.metric("rt_service_requests_total", labels) >= 1
    assert await service.metric("rt_ready") == 1


async def test_the_service_is_in_the_registry(bus: Redis) -> None:
    """The announcement names poll's requests and namespace, with a lease in the future."""
    assert await bus.hget("{registry}:owners", "poll") == b"poll"
    raw = await bus.hget("{registry}:services", "poll")
    assert isinstance(raw, bytes)
    announcement = load_bus(raw)
    assert announcement["kind"] == "announcement"
    assert announcement["service"] == "poll"
    assert announcement["requests"]["poll.vote"] == ["poll", "option", "key"]
    assert announcement["namespaces"] == [
        {"name": "poll", "access": "authenticated", "history": True, "presence": False}
    ]
    expiry = await bus.zscore("{registry}:alive", "poll")
    seconds, micros = await bus.time()
    assert expiry is not None
    assert expiry > seconds * 1000 + micros // 1000
