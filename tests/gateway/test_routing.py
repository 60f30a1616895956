"""The gateway's router against a real Redis: a request it cannot encode is still answered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import pytest
from redis.asyncio import Redis

from common.bus.producer import RequestProducer
from common.envelope import Reply
from common.keys import request_stream
from realtime_gateway.metrics import GatewayMetrics
from realtime_gateway.routing import Router
from tests.support.waiting import WAIT


if TYPE_CHECKING:
    from realtime_gateway.connection import Connection


@dataclass
class _Client:
    """What the router reads of a connection: its id and user."""

    id: str = "gw-route.1"
    user: str | None = "alice"


@pytest.fixture(scope="module")
def metrics() -> GatewayMetrics:
    """The gateway's metrics, made once: they register in the process-wide registry."""
    return GatewayMetrics()


@pytest.fixture
async def router(redis: Redis, metrics: GatewayMetrics) -> AsyncIterator[Router]:
    """A router of gateway ``gw-route`` whose producer appends to the test's Redis."""

    def producer(on_failure: Callable[[list[str], BaseException], None]) -> RequestProducer:
        return RequestProducer(redis, maxlen=1000, on_failure=on_failure)

    router = Router("gw-route", producer, timeout=WAIT, metrics=metrics)
    try:
        yield router
    finally:
        await router.aclose()


def _nested(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"deep": _nested(2000)}, id="too-deep-for-msgpack"),
        pytest.param({"n": 2**64}, id="integer-too-large"),
        pytest.param({"x": {1, 2}}, id="not-a-bus-type"),
    ],
)
async def test_a_request_that_cannot_be_encoded_gets_a_bad_request_reply(
    router: Router, redis: Redis, data: dict[str, Any]
) -> None:
    """Unencodable data is answered once, promptly, with bad_request, and nothing is sent."""
    replies: list[tuple[Reply | None, str]] = []
    answered = asyncio.Event()

    def on_reply(reply: Reply | None, why: str) -> None:
        replies.append((reply, why))
        answered.set()

    client = cast("Connection", _Client())
    router.request(client, "chat", "chat.echo", data, on_reply)
    assert not replies, "answered before request() returned"
    # Well within the router's timeout: the answer is not the timeout's.
    await asyncio.wait_for(answered.wait(), timeout=WAIT / 4)
    ((reply, why),) = replies
    assert reply is not None, why
    assert (reply.connection, reply.ok) == ("gw-route.1", False)
    assert reply.error is not None
    assert reply.error["code"] == "bad_request"
    assert router.pending == 0
    await router.aclose()
    assert await redis.xlen(request_stream("chat")) == 0
