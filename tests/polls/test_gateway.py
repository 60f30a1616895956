"""The poll service through a real gateway, which learns of it from the namespace registry:
requests, tallies to another client, retries, a moved vote, one close among three racing
instances, replay after a reconnect, and refusals."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from tests.polls.support import Launcher
from tests.support.client import call, connect_user, recv_until
from tests.support.processes import ManagedProcess
from tests.support.waiting import MS


_refs = itertools.count(1)


@pytest.fixture(scope="module")
def gateway(launcher: Launcher) -> ManagedProcess:
    """One poll instance, then a gateway that finds it in the registry."""
    launcher.poll()
    return launcher.gateway({"RT_REGISTRY_POLL": "0.2"})


async def request(ws: ClientConnection, type_: str, **fields: Any) -> dict[str, Any]:
    return await call(ws, {"type": type_, "ref": next(_refs), **fields})


async def ok(ws: ClientConnection, type_: str, **fields: Any) -> dict[str, Any]:
    reply = await request(ws, type_, **fields)
    assert reply["ok"], reply
    data: dict[str, Any] = reply["data"]
    return data


async def next_event(
    ws: ClientConnection, event: str, *, within: float = 5_000 * MS, **data: Any
) -> dict[str, Any]:
    """The next ``event`` frame whose data has ``data``'s items."""

    def matches(frame: dict[str, Any]) -> bool:
        return (
            frame.get("type") == "event"
            and frame.get("event") == event
            and all(frame["data"].get(key) == value for key, value in data.items())
        )

    frame, _ = await recv_until(ws, matches, within=within)
    return frame


async def create(ws: ClientConnection, closes_in: float = 60) -> str:
    created = await ok(
        ws, "poll.create", question="Lunch?", options=["pizza", "salad"], closes_in=closes_in
    )
    poll: str = created["poll"]
    return poll


async def test_votes_reach_another_client_as_tallies(gateway: ManagedProcess) -> None:
    """Alice's votes, retried and changed, reach Bob's subscription as tallies."""
    alice = await connect_user(gateway.ws_url, "alice")
    bob = await connect_user(gateway.ws_url, "bob")
    try:
        poll = await create(alice)
        subscribed = await ok(bob, "subscribe", channel=f"poll:{poll}")
        assert subscribed["position"] == "0-0"
        first = await ok(alice, "poll.vote", poll=poll, option="pizza", key="v1")
        tally = await next_event(bob, "poll.tally", counts={"pizza": 1, "salad": 0})
        assert tally["channel"] == f"poll:{poll}"
        again = await ok(alice, "poll.vote", poll=poll, option="pizza", key="v1")
        assert again == first
        moved = await ok(alice, "poll.vote", poll=poll, option="salad", key="v2")
        assert moved["previous"] == "pizza"
        await next_event(bob, "poll.tally", counts={"pizza": 0, "salad": 1})
        got = await ok(bob, "poll.get", poll=poll)
        assert got["counts"] == {"pizza": 0, "salad": 1}
        assert got["closed"] is False
    finally:
        await alice.close()
        await bob.close()


async def test_unknown_poll_and_option(gateway: ManagedProcess) -> None:
    """An unknown poll and an unknown option are refused with their codes, through the gateway."""
    alice = await connect_user(gateway.ws_url, "alice")
    try:
        missing = await request(alice, "poll.get", poll="0123456789abcdef")
        assert missing["error"]["code"] == "poll_not_found"
        unsubscribable = await request(alice, "subscribe", channel="poll:0123456789abcdef")
        assert unsubscribable["error"]["code"] == "poll_not_found"
        poll = await create(alice)
        wrong = await request(alice, "poll.vote", poll=poll, option="soup", key="k")
        assert wrong["error"]["code"] == "unknown_option"
    finally:
        await alice.close()


async def test_a_reconnected_client_gets_what_it_missed(gateway: ManagedProcess) -> None:
    """Bob, back with since, gets the tallies published while he was away, then live ones."""
    alice = await connect_user(gateway.ws_url, "alice")
    bob = await connect_user(gateway.ws_url, "bob")
    try:
        poll = await create(alice)
        await ok(bob, "subscribe", channel=f"poll:{poll}")
        await ok(alice, "poll.vote", poll=poll, option="pizza", key="a")
        seen = await next_event(bob, "poll.tally", counts={"pizza": 1, "salad": 0})
        await bob.close()
        for user in ("carol", "dave"):
            voter = await connect_user(gateway.ws_url, user)
            await ok(voter, "poll.vote", poll=poll, option="salad", key="b")
            await voter.close()
        bob = await connect_user(gateway.ws_url, "bob")
        back = await ok(bob, "subscribe", channel=f"poll:{poll}", since=seen["position"])
        assert back["recovered"] is True
        # Replayed, or live if its coalesced tally was not due yet: either way, once.
        await next_event(bob, "poll.tally", counts={"pizza": 1, "salad": 2})
        await ok(alice, "poll.vote", poll=poll, option="salad", key="c")
        await next_event(bob, "poll.tally", counts={"pizza": 0, "salad": 3})
    finally:
        await alice.close()
        await bob.close()


async def test_three_racing_instances_close_a_poll_once(
    launcher: Launcher, gateway: ManagedProcess
) -> None:
    """With three instances closing every 10 ms, a watcher gets one poll.closed, final counts."""
    env = {"RT_POLL_CLOSE_INTERVAL": "0.01"}
    await asyncio.to_thread(lambda: [launcher.poll(env) for _ in range(2)])
    alice = await connect_user(gateway.ws_url, "alice")
    try:
        poll = await create(alice, closes_in=1)
        await ok(alice, "subscribe", channel=f"poll:{poll}")
        await ok(alice, "poll.vote", poll=poll, option="pizza", key="k")
        closed = await next_event(alice, "poll.closed", poll=poll)
        assert closed["data"]["counts"] == {"pizza": 1, "salad": 0}
        refused = await request(alice, "poll.vote", poll=poll, option="salad", key="late")
        assert refused["error"]["code"] == "poll_closed"
        # Nothing else arrives on the channel: no second close, no tally after it.
        with pytest.raises(AssertionError, match=r"no (matching )?frame within"):
            await recv_until(
                alice,
                lambda frame: frame.get("type") == "event" and frame["data"].get("poll") == poll,
                within=1_000 * MS,
            )
    finally:
        await alice.close()
