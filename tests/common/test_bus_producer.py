"""RequestProducer against a real Redis: batching, stream layout, trimming and failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import cast

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError, ResponseError

from common.bus.producer import RequestProducer
from common.codec import load_bus, pack_bus
from common.envelope import ReplyAddress, Request, parse_envelope
from common.keys import request_stream
from devtools.redis_server import RedisServer
from tests.support.waiting import wait_until


class Failures:
    """Records what the producer reports as failed."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], BaseException]] = []

    def __call__(self, ids: list[str], error: BaseException) -> None:
        self.calls.append((ids, error))

    @property
    def ids(self) -> list[str]:
        return [request_id for ids, _ in self.calls for request_id in ids]


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    """An asyncio client of the session's (emptied) Redis, configured like the gateway's."""
    client = Redis.from_url(redis_url, socket_keepalive=True)
    try:
        yield client
    finally:
        await client.aclose()


def _request(service: str, n: int) -> Request:
    return Request(f"{service}.act", {"n": n}, "gw-test", f"c-{n}", "alice")


def _send(producer: RequestProducer, service: str, request: Request) -> None:
    producer.send(request_stream(service), request.id, pack_bus(request.to_wire()))


async def _connected_producer(redis: Redis, failures: Failures) -> RequestProducer:
    """A producer whose connection is open, for the stop of Redis to break."""
    producer = RequestProducer(redis, maxlen=1000, on_failure=failures)
    _send(producer, "warmup", _request("warmup", 0))

    async def appended() -> bool:
        return len(await _entries(redis, "warmup")) == 1

    await wait_until(appended, "the first append")
    assert failures.calls == []
    return producer


async def _entries(redis: Redis, service: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """The entries of a service's request stream, oldest first."""
    return cast(
        "list[tuple[bytes, dict[bytes, bytes]]]", await redis.xrange(request_stream(service))
    )


async def test_requests_of_one_loop_turn_go_out_in_one_batch(redis: Redis) -> None:
    """Requests sent in one loop turn reach their services' streams in one round trip, in order."""
    failures = Failures()
    producer = RequestProducer(redis, maxlen=1000, on_failure=failures)
    chat = [_request("chat", n) for n in range(5)]
    bids = [_request("bids", n) for n in range(3)]
    before = producer.round_trips
    for request in chat[:3] + bids + chat[3:]:
        _send(producer, request.type.split(".")[0], request)
    # Nothing has gone out yet: the batch leaves when the loop next runs the flusher.
    assert producer.round_trips == before
    await producer.aclose()
    assert producer.round_trips - before == 1
    assert failures.calls == []
    for service, sent in (("chat", chat), ("bids", bids)):
        entries = await _entries(redis, service)
        assert [list(fields) for _, fields in entries] == [[b"e"]] * len(sent)
        assert [parse_envelope(load_bus(fields[b"e"])) for _, fields in entries] == sent


async def test_a_reply_address_is_written_beside_the_request(redis: Redis) -> None:
    """With reply_to, an entry holds e and r (the packed address); without, e alone."""
    producer = RequestProducer(redis, maxlen=1000, on_failure=Failures())
    answered, notified = _request("chat", 1), _request("chat", 2)
    address = ReplyAddress.of(answered)
    reply_to = pack_bus(address.to_wire())
    producer.send(
        request_stream("chat"), answered.id, pack_bus(answered.to_wire()), reply_to=reply_to
    )
    _send(producer, "chat", notified)
    await producer.aclose()
    (_, first), (_, second) = await _entries(redis, "chat")
    assert sorted(first) == [b"e", b"r"]
    assert parse_envelope(load_bus(first[b"e"])) == answered
    assert ReplyAddress.from_wire(load_bus(first[b"r"])) == address
    assert address == ReplyAddress(answered.gateway, answered.connection, answered.id)
    assert list(second) == [b"e"]


async def test_a_request_sent_in_a_later_turn_goes_out_in_the_next_batch(
    redis: Redis,
) -> None:
    """A request sent once a batch has left goes out in a round trip of its own, after it."""
    failures = Failures()
    producer = RequestProducer(redis, maxlen=1000, on_failure=failures)
    first, second = _request("chat", 1), _request("chat", 2)
    before = producer.round_trips
    _send(producer, "chat", first)
    await wait_until(lambda: producer.round_trips > before, "the first round trip")
    _send(producer, "chat", second)
    await producer.aclose()
    assert producer.round_trips - before == 2
    entries = await _entries(redis, "chat")
    assert [parse_envelope(load_bus(fields[b"e"])) for _, fields in entries] == [first, second]
    assert failures.calls == []


async def test_stream_is_capped_approximately(redis: Redis) -> None:
    """MAXLEN ~ keeps a stream near its cap: never below it, at most one node (100) above."""
    maxlen = 100
    producer = RequestProducer(redis, maxlen=maxlen, on_failure=Failures())
    for n in range(1000):
        _send(producer, "chat", _request("chat", n))
    await producer.aclose()
    length = await redis.xlen(request_stream("chat"))
    assert maxlen <= length <= maxlen + 100
    # The newest entries are the ones kept.
    *_, (_, last_fields) = await _entries(redis, "chat")
    last = parse_envelope(load_bus(last_fields[b"e"]))
    assert isinstance(last, Request)
    assert last.data == {"n": 999}


async def test_a_failed_append_is_reported_with_its_id(redis: Redis) -> None:
    """A command Redis refuses fails only its own request; the others of the batch are appended."""
    await redis.set(request_stream("bids"), "not a stream")
    failures = Failures()
    producer = RequestProducer(redis, maxlen=1000, on_failure=failures)
    good, bad = _request("chat", 1), _request("bids", 2)
    _send(producer, "chat", good)
    _send(producer, "bids", bad)
    await producer.aclose()
    assert failures.ids == [bad.id]
    assert isinstance(failures.calls[0][1], ResponseError)
    assert len(await _entries(redis, "chat")) == 1


async def test_redis_down_reports_every_id_of_the_batch(
    redis: Redis, redis_server: RedisServer
) -> None:
    """With Redis stopped, on_failure gets the ids of the whole batch; it works again once back."""
    failures = Failures()
    producer = await _connected_producer(redis, failures)
    requests = [_request("chat", 1), _request("bids", 2), _request("chat", 3)]
    redis_server.stop()
    try:
        for request in requests:
            _send(producer, request.type.split(".")[0], request)
        await wait_until(lambda: bool(failures.calls), "on_failure", within=30.0)
        await producer.aclose()
    finally:
        redis_server.start()
        await redis.connection_pool.disconnect()  # the test's own connections died too
    assert sorted(failures.ids) == sorted(request.id for request in requests)
    assert len(failures.calls) == 1
    assert isinstance(failures.calls[0][1], RedisConnectionError | OSError)

    after = _request("chat", 4)
    _send(producer, "chat", after)
    await producer.aclose()
    assert len(failures.calls) == 1
    entries = await _entries(redis, "chat")
    assert [parse_envelope(load_bus(fields[b"e"])) for _, fields in entries] == [after]


async def test_aclose_waits_for_the_batch_in_flight(redis: Redis) -> None:
    """aclose returns once the pending batch is appended, so a shutdown loses no request."""
    producer = RequestProducer(redis, maxlen=1000, on_failure=Failures())
    request = _request("chat", 1)
    _send(producer, "chat", request)
    await asyncio.wait_for(producer.aclose(), 10)
    assert len(await _entries(redis, "chat")) == 1
    await producer.aclose()  # nothing in flight: returns at once


async def test_a_notification_sent_while_redis_is_down_is_appended_once_it_is_back(
    redis: Redis, redis_server: RedisServer
) -> None:
    """A notification (retry=True) is not reported failed but kept, and appended after a restart."""
    failures = Failures()
    producer = await _connected_producer(redis, failures)
    kept = Request(
        "drop", {"channels": ["chat:r"], "seq": 3}, "gw-test", "c-1", "alice", noreply=True
    )
    lost = _request("chat", 2)
    redis_server.stop()
    try:
        producer.send(request_stream("presence"), kept.id, pack_bus(kept.to_wire()), retry=True)
        _send(producer, "chat", lost)
        await wait_until(lambda: bool(failures.calls), "on_failure", within=30.0)
    finally:
        redis_server.start()
        await redis.connection_pool.disconnect()
    # Only the request whose client waits for an answer was reported.
    assert failures.ids == [lost.id]

    async def appended() -> bool:
        return len(await _entries(redis, "presence")) == 1

    await wait_until(appended, "the notification appended after the restart", within=30.0)
    entries = await _entries(redis, "presence")
    assert [parse_envelope(load_bus(fields[b"e"])) for _, fields in entries] == [kept]
    assert await _entries(redis, "chat") == []
    await producer.aclose()
