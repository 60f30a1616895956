"""Deeply nested requests: every one with a ``ref`` gets exactly one reply, and soon."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from realtime_gateway.protocol import MAX_DEPTH
from tests.e2e.conftest import Launcher
from tests.support.client import call, connect_user, recv_json
from tests.support.processes import ManagedProcess, wait_all_ready


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
