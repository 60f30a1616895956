"""Idempotency keys: a retry gets the same verdict and the same seq, and changes state once."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from common.codec import load_bus, pack_bus
from common.envelope import Reply, Request
from common.keys import reply_channel, request_stream
from tests.bids.support import BidClient, Launcher, create_auction, history, state
from tests.support.processes import ManagedProcess


@pytest.fixture(scope="module")
def processes(launcher: Launcher) -> tuple[list[ManagedProcess], list[ManagedProcess]]:
    """Two gateways and two bids instances."""
    return launcher.stack(gateways=2, instances=2)


async def test_retry_on_the_same_connection(
    processes: tuple[list[ManagedProcess], list[ManagedProcess]], bus: Redis, name: str
) -> None:
    """Sending the same bid again, one after the other or both at once, repeats one reply."""
    gateways, instances = processes
    await create_auction(instances[0], id=name)
    client = await BidClient.open(gateways[0], f"{name}-ann")
    first = await client.place(name, 150, "key-1")
    again = await client.place(name, 150, "key-1")
    assert first["ok"]
    assert first["data"] == again["data"]
    assert first["data"]["seq"] == 1
    futures = [
        await client.send({"type": "bids.place", "auction": name, "amount": 170, "key": "key-2"})
        for _ in range(5)
    ]
    async with asyncio.timeout(10):
        replies = [await future for future in futures]
    assert all(reply["data"] == replies[0]["data"] for reply in replies), replies
    assert replies[0]["data"]["seq"] == 2
    assert [event["key"] for event in await history(bus, name)] == ["key-1", "key-2"]
    assert (await state(bus, name))["bids"] == "2"
    await client.close()


async def test_retry_after_a_reconnect_and_through_another_gateway(
    processes: tuple[list[ManagedProcess], list[ManagedProcess]], bus: Redis, name: str
) -> None:
    """The same user retrying on a new connection, on either gateway, gets the first verdict."""
    gateways, instances = processes
    await create_auction(instances[0], id=name)
    user = f"{name}-ann"
    client = await BidClient.open(gateways[0], user)
    first = await client.place(name, 200, "retry-me")
    await client.close()
    other = await BidClient.open(gateways[0], f"{name}-bob")
    assert (await other.place(name, 300, "bob-1"))["ok"]
    for gateway in gateways:
        again = await BidClient.open(gateway, user)
        retried = await again.place(name, 200, "retry-me")
        assert (
            retried["data"]
            == first["data"]
            == {
                "accepted": True,
                "seq": 1,
                "amount": 200,
                "ends_at": first["data"]["ends_at"],
            }
        )
        await again.close()
    events = await history(bus, name)
    assert [(e["data"]["amount"], e["key"]) for e in events] == [(200, "retry-me"), (300, "bob-1")]
    final = await state(bus, name)
    assert (final["current"], final["bids"]) == ("300", "2")
    await other.close()


async def test_a_refusal_is_replayed_unchanged(
    processes: tuple[list[ManagedProcess], list[ManagedProcess]], name: str
) -> None:
    """A retried too-low bid gets the original minimum, even after the auction moved on."""
    gateways, instances = processes
    await create_auction(instances[0], id=name, starting_price=100, increment=10)
    ann = await BidClient.open(gateways[0], f"{name}-ann")
    bob = await BidClient.open(gateways[1], f"{name}-bob")
    assert (await bob.place(name, 100, "b1"))["ok"]
    refused = await ann.place(name, 105, "a1")
    assert refused["error"]["code"] == "bid_too_low"
    assert refused["error"]["minimum"] == 110
    assert (await bob.place(name, 500, "b2"))["ok"]
    again = await ann.place(name, 105, "a1")
    assert again["error"] == refused["error"]
    await asyncio.gather(ann.close(), bob.close())


async def test_keys_belong_to_their_user(
    processes: tuple[list[ManagedProcess], list[ManagedProcess]], bus: Redis, name: str
) -> None:
    """Two users may use the same key string: each gets a verdict of their own."""
    gateways, instances = processes
    await create_auction(instances[0], id=name)
    ann = await BidClient.open(gateways[0], f"{name}-ann")
    bob = await BidClient.open(gateways[0], f"{name}-bob")
    assert (await ann.place(name, 100, "1"))["data"]["seq"] == 1
    assert (await bob.place(name, 110, "1"))["data"]["seq"] == 2
    assert len(await history(bus, name)) == 2
    await asyncio.gather(ann.close(), bob.close())


async def test_a_request_delivered_twice_has_one_effect(
    processes: tuple[list[ManagedProcess], list[ManagedProcess]], bus: Redis, name: str
) -> None:
    """A request entry handled twice (as after a reclaim) gets two equal replies and one bid."""
    _, instances = processes
    await create_auction(instances[0], id=name)
    gateway_id = f"{name}-fake-gateway"
    request = Request(
        type="bids.place",
        data={"auction": name, "amount": 400, "key": "once"},
        gateway=gateway_id,
        connection=f"{gateway_id}.1",
        user=f"{name}-ann",
    )
    pubsub = bus.pubsub()
    await pubsub.subscribe(reply_channel(gateway_id))
    replies: list[Reply] = []
    async with asyncio.timeout(10):
        await pubsub.get_message(timeout=1.0)  # the subscribe confirmation
        for _ in range(2):
            await bus.xadd(request_stream("bids", 0), {b"e": pack_bus(request.to_wire())})
        while len(replies) < 2:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None:
                reply = Reply.from_wire(load_bus(message["data"]))
                assert reply.request_id == request.id
                replies.append(reply)
    await pubsub.aclose()  # type: ignore[no-untyped-call]
    assert replies[0].data == replies[1].data
    assert replies[0].data is not None
    assert replies[0].data["seq"] == 1
    assert [event["key"] for event in await history(bus, name)] == ["once"]
