"""The gateway's router against a real Redis: a request it cannot encode is still answered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, cast

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from common.bus.producer import RequestProducer
from common.codec import load_bus, pack_bus
from common.envelope import Reply, ReplyBatch, Request, parse_envelope
from common.keys import request_stream
from realtime_gateway.metrics import GatewayMetrics
from realtime_gateway.routing import Router
from tests.support.waiting import WAIT, wait_until


if TYPE_CHECKING:
    from realtime_gateway.connection import Connection


@dataclass
class _Client:
    """What the router reads of a connection: its id and user."""

    id: str = "gw-route.1"
    user: str | None = "alice"


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


async def _requests(redis: Redis) -> list[Request]:
    """The requests in chat's stream, oldest first."""
    entries = cast(
        "list[tuple[bytes, dict[bytes, bytes]]]", await redis.xrange(request_stream("chat"))
    )
    requests = [parse_envelope(load_bus(fields[b"e"])) for _, fields in entries]
    assert all(isinstance(request, Request) for request in requests)
    return cast("list[Request]", requests)


def _count(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def test_a_reply_batch_answers_each_of_its_requests_in_order(
    router: Router, redis: Redis
) -> None:
    """Requests say they take batched replies; a batch answers each pending one it holds, in
    order, and a reply in it to no pending request is dropped as late."""
    answers: list[str] = []

    def on_reply(reply: Reply | None, why: str) -> None:
        assert reply is not None, why
        answers.append(reply.request_id)

    client = cast("Connection", _Client())
    for n in range(3):
        router.request(client, "chat", "chat.echo", {"n": n}, on_reply)
    await router.aclose()  # appended
    requests = await _requests(redis)
    assert all(request.batch for request in requests)
    first, second, third = (request.id for request in requests)
    late = _count("rt_gateway_late_replies_total")
    batch = ReplyBatch(tuple(Reply(rid, client.id, data={}) for rid in (third, "gone", first)))
    router.on_message(pack_bus(batch.to_wire()))
    assert answers == [third, first]
    assert _count("rt_gateway_late_replies_total") == late + 1
    assert router.pending == 1

    errors = _count("rt_gateway_bus_errors_total")
    broken = {**ReplyBatch(()).head(), "replies": [Reply(second, client.id, data={}).to_wire(), 1]}
    router.on_message(pack_bus(broken))
    assert _count("rt_gateway_bus_errors_total") == errors + 1
    assert router.pending == 1, "a malformed batch is refused whole"


async def test_each_unanswered_request_expires_at_its_own_deadline(
    redis: Redis, metrics: GatewayMetrics
) -> None:
    """One timer serves every pending request: none expires early, each expires once, an
    answered one never, and a request sent from an expiry's callback expires in its turn."""
    timeout = 0.3

    def producer(on_failure: Callable[[list[str], BaseException], None]) -> RequestProducer:
        return RequestProducer(redis, maxlen=1000, on_failure=on_failure)

    router = Router("gw-expiry", producer, timeout=timeout, metrics=metrics)
    loop = asyncio.get_running_loop()
    client = cast("Connection", _Client())
    expired: dict[str, float] = {}
    sent: dict[str, float] = {}
    answers: list[str] = []

    def send(name: str) -> None:
        sent[name] = loop.time()
        router.request(client, "chat", "chat.echo", {}, partial(on_reply, name))

    def on_reply(name: str, reply: Reply | None, why: str) -> None:
        if reply is not None:
            answers.append(name)
            return
        assert "did not answer in time" in why, why
        expired[name] = loop.time()
        if name == "second":
            send("from-callback")

    try:
        send("first")
        await asyncio.sleep(timeout / 3)
        send("second")
        send("answered")
        await router.aclose()
        *_, answered = await _requests(redis)
        router.on_message(pack_bus(Reply(answered.id, client.id, data={}).to_wire()))
        await wait_until(lambda: len(expired) == 3, "three expiries", within=10 * timeout + WAIT)
    finally:
        await router.aclose()
    assert sorted(expired) == ["first", "from-callback", "second"]
    assert answers == ["answered"]
    for name, when in expired.items():
        assert when - sent[name] >= timeout, f"{name} expired early"
    assert router.pending == 0
