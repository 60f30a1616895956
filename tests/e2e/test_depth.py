"""Deeply nested requests: every one with a ``ref`` gets exactly one reply, and soon."""

from __future__ import annotations

import json
import uuid
from typing import Any, cast

import pytest
from redis.asyncio import Redis

from common.codec import load_bus, pack_bus
from common.envelope import Reply, ReplyAddress, Request, parse_envelope
from common.keys import reply_channel, request_stream
from realtime_gateway.protocol import MAX_DEPTH
from tests.e2e.conftest import Launcher
from tests.support.client import DEADLINE, call, connect_user, recv_json
from tests.support.processes import ManagedProcess, wait_all_ready
from tests.support.waiting import wait_until


#: The gateway waits this long for a service: a reply must come well before it.
REQUEST_TIMEOUT = 8.0
#: A refusal is immediate; anything near REQUEST_TIMEOUT is the gateway giving up instead.
PROMPT = 3.0


@pytest.fixture(scope="module")
def gateway(launcher: Launcher) -> ManagedProcess:
    """A gateway with a long request timeout, and a stub chat service behind it."""
    gateway = launcher.gateway({"RT_REQUEST_TIMEOUT": str(REQUEST_TIMEOUT)}, wait=False)
    stub = launcher.stub("chat", wait=False)
    wait_all_ready([gateway, stub])
    return gateway


def _nested(depth: int) -> str:
    """JSON for a value ``depth`` levels deep: arrays inside arrays, the innermost empty."""
    return "[" * depth + "]" * depth


def _frame(depth: int, ref: str) -> str:
    """A ``chat.echo`` request ``depth`` levels deep, counting the frame's own object."""
    return f'{{"type":"chat.echo","ref":"{ref}","deep":{_nested(depth - 1)}}}'


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 64, 1023, 1024])
async def test_a_request_nested_too_deep_gets_bad_request_with_its_ref(
    gateway: ManagedProcess, depth: int
) -> None:
    """A request nested beyond the limit, up to what JSON parsing allows, is refused at once."""
    ref = f"deep-{uuid.uuid4().hex[:8]}"
    async with await connect_user(gateway.ws_url, "alice") as ws:
        await ws.send(_frame(depth, ref))
        reply = await recv_json(ws, within=PROMPT)
        assert (reply["type"], reply["ref"], reply["ok"]) == ("reply", ref, False), reply
        assert reply["error"]["code"] == "bad_request", reply
        assert str(MAX_DEPTH) in reply["error"]["message"], reply
        # The connection carries on.
        assert (await call(ws, {"type": "chat.echo", "ref": "after"}))["ok"] is True


async def test_a_request_at_the_depth_limit_reaches_the_service(gateway: ManagedProcess) -> None:
    """A request exactly MAX_DEPTH levels deep is handled and echoed back whole."""
    async with await connect_user(gateway.ws_url, "alice") as ws:
        await ws.send(_frame(MAX_DEPTH, "limit"))
        reply = await recv_json(ws, within=PROMPT)
        assert (reply["ref"], reply["ok"]) == ("limit", True), reply
        echoed: Any = reply["data"]["echo"]["deep"]
        levels = 1
        while echoed:
            (echoed,) = echoed
            levels += 1
        assert levels == MAX_DEPTH - 1


async def test_the_gateway_writes_each_request_s_reply_address_beside_it(
    gateway: ManagedProcess, bus: Redis
) -> None:
    """A routed request's stream entry has e and an r naming the same gateway, connection, id."""
    marker = uuid.uuid4().hex
    # To a service with no instance here: a handled entry is deleted from its stream.
    stream = request_stream("presence", 0)
    found: list[dict[bytes, bytes]] = []

    async def appended() -> bool:
        entries = cast("list[tuple[bytes, dict[bytes, bytes]]]", await bus.xrange(stream))
        found[:] = [f for _, f in entries if marker.encode() in f[b"e"]]
        return bool(found)

    async with await connect_user(gateway.ws_url, "alice") as ws:
        await ws.send(json.dumps({"type": "presence.echo", "ref": "addr", "marker": marker}))
        await wait_until(appended, "the request appended")
    (fields,) = found
    request = parse_envelope(load_bus(fields[b"e"]))
    assert isinstance(request, Request)
    assert ReplyAddress.from_wire(load_bus(fields[b"r"])) == ReplyAddress.of(request)


async def test_a_service_refuses_a_request_it_cannot_decode_where_r_says(
    gateway: ManagedProcess, bus: Redis
) -> None:
    """A real service answers an entry msgpack cannot unpack with bad_request, and acks it."""
    address = ReplyAddress(f"gw-probe-{uuid.uuid4().hex[:8]}", "gw-probe.1", uuid.uuid4().hex)
    # One level more than msgpack unpacks: what a 1,024-deep client frame became on the bus.
    deep: list[Any] = []
    for _ in range(1022):
        deep = [deep]
    request = Request("chat.echo", {"deep": deep}, address.gateway, address.connection, "bob")
    pubsub = bus.pubsub()
    try:
        await pubsub.subscribe(reply_channel(address.gateway))
        assert await pubsub.get_message(timeout=DEADLINE) is not None  # the confirmation
        fields = {b"e": pack_bus(request.to_wire()), b"r": pack_bus(address.to_wire())}
        await bus.xadd(request_stream("chat", 0), fields)  # type: ignore[arg-type]
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=PROMPT)
        assert message is not None, "no reply from the service"
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
    reply = parse_envelope(load_bus(message["data"]))
    assert isinstance(reply, Reply)
    assert (reply.request_id, reply.connection) == (address.request_id, address.connection)
    assert reply.error is not None
    assert reply.error["code"] == "bad_request"

    async def acked() -> bool:
        summary = await bus.xpending(request_stream("chat", 0), "chat")
        return int(summary["pending"]) == 0

    await wait_until(acked, "the refused entry to be acknowledged")
