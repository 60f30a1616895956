"""ServiceWorker against a real Redis: replies, acks, refusals, bad entries, batches."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from common.bus.worker import Outcome, traced
from common.codec import pack_bus
from common.envelope import Event, Reply, ReplyAddress, Request
from common.errors import ServiceError
from common.keys import Partitions
from common.log import trace_id
from tests.common.worker_support import (
    GATEWAY,
    SERVICE,
    STREAM,
    Handler,
    Replies,
    StartWorker,
    _add,
    _is_acked,
    _request,
    replies_fixture,  # noqa: F401 (a fixture: pytest finds it in this module)
    start_worker_fixture,  # noqa: F401 (a fixture too)
)
from tests.support.waiting import wait_until


# Handling and replying.


async def test_requests_are_handled_replied_to_and_acked(
    redis: Redis, replies: Replies, start_worker: StartWorker
) -> None:
    """Each request gets one ok reply on its gateway's channel, in order, and is acknowledged."""
    handler = Handler()
    running = start_worker(handler)
    requests = [_request(n=n) for n in range(5)]
    await _add(redis, *requests)
    answers = await replies.wait(running, *requests)
    for request, reply in zip(requests, answers, strict=True):
        assert reply.ok
        assert reply.data == {"echo": request.data}
        assert reply.connection == request.connection
    assert [reply.request_id for reply in replies.received] == [r.id for r in requests]
    assert handler.requests == requests
    await wait_until(lambda: _is_acked(redis), "XPENDING to be empty")
    assert running.observer.results == [("chat.echo", "ok")] * 5
    assert running.worker.alive


async def test_every_partition_stream_is_read_and_each_read_handled_alone(
    redis: Redis, replies: Replies, start_worker: StartWorker
) -> None:
    """A worker of a service with 3 partitions reads the 3 streams; each batch it hands the
    handler comes from one stream, and every request is answered and acknowledged there."""
    partitions = Partitions(SERVICE, 3)
    batches: list[list[Request]] = []
    handler = Handler()

    async def handle(requests: list[Request]) -> list[Outcome]:
        batches.append(requests)
        return await handler(requests)

    running = start_worker(handle, partitions=3)
    assert running.worker.streams == tuple(partitions.streams())
    sent = {stream: [_request(n=n) for n in range(4)] for stream in partitions.streams()}
    for stream, requests in sent.items():
        await _add(redis, *requests, stream=stream)
    everything = [request for requests in sent.values() for request in requests]
    await replies.wait(running, *everything)
    streams = [{request.id for request in requests} for requests in sent.values()]
    for batch in batches:
        ids = {request.id for request in batch}
        assert any(ids <= stream for stream in streams), "a batch mixed streams"

    async def all_acked() -> bool:
        for stream in partitions.streams():
            if int((await redis.xpending(stream, SERVICE))["pending"]):
                return False
        return True

    await wait_until(all_acked, "every stream's XPENDING to be empty")
    await wait_until(lambda: running.observer.last_backlog is not None, "a backlog sample")
    assert running.worker.alive


async def test_a_handler_may_return_a_whole_reply(
    redis: Redis, replies: Replies, start_worker: StartWorker
) -> None:
    """A Reply returned by the handler is published as it is, server-side subscriptions included."""
    running = start_worker(Handler())
    request = _request("chat.whole")
    await _add(redis, request)
    (reply,) = await replies.wait(running, request)
    assert reply.data == {"whole": True}
    assert reply.subscribe == ("chat:a",)


async def test_a_service_error_becomes_an_error_reply_with_details(
    redis: Redis, replies: Replies, start_worker: StartWorker
) -> None:
    """A ServiceError is answered as an error reply carrying code, message and details."""
    running = start_worker(Handler())
    request = _request("chat.refuse")
    await _add(redis, request)
    (reply,) = await replies.wait(running, request)
    assert not reply.ok
    assert reply.error == {
        "code": "room_not_found",
        "message": "no such room",
        "room": "r-9",
        "tried": [1, 2],
    }
    await wait_until(lambda: _is_acked(redis), "XPENDING to be empty")
    assert running.observer.results == [("chat.refuse", "room_not_found")]


async def test_an_unexpected_exception_becomes_internal_error_and_is_acked(
    redis: Redis, replies: Replies, start_worker: StartWorker
) -> None:
    """A handler crash is answered internal_error without its details, acked, and work goes on."""
    running = start_worker(Handler())
    crash, after = _request("chat.crash"), _request(n=1)
    # One at a time: a crash fails its whole batch (see the batch tests below).
    await _add(redis, crash)
    (failed,) = await replies.wait(running, crash)
    await _add(redis, after)
    (ok,) = await replies.wait(running, after)
    assert failed.error == {"code": "internal_error", "message": "internal error"}
    assert ok.ok
    await wait_until(lambda: _is_acked(redis), "XPENDING to be empty")
    assert ("chat.crash", "internal_error") in running.observer.results


async def test_a_reply_that_cannot_be_encoded_becomes_internal_error(
    redis: Redis, replies: Replies, start_worker: StartWorker
) -> None:
    """Reply data msgpack cannot encode is answered internal_error; the worker keeps running."""
    running = start_worker(Handler())
    odd, after = _request("chat.odd"), _request(n=1)
    await _add(redis, odd, after)
    failed, ok = await replies.wait(running, odd, after)
    assert failed.error is not None
    assert failed.error["code"] == "internal_error"
    assert ok.ok
    await wait_until(lambda: _is_acked(redis), "XPENDING to be empty")


async def test_a_notification_is_handled_and_acked_without_a_reply(
    redis: Redis, replies: Replies, start_worker: StartWorker
) -> None:
    """A noreply request is handled and acknowledged, and nothing is published for it."""
    handler = Handler()
    running = start_worker(handler)
    notification = Request("chat.echo", {}, GATEWAY, "conn-1", "alice", noreply=True)
    after = _request(n=1)
    await _add(redis, notification, after)
    await replies.wait(running, after)
    # Replies are published in entry order, so a reply to the notification would be here now.
    assert replies.for_(notification) == []
    assert handler.ids() == [notification.id, after.id]
    await wait_until(lambda: _is_acked(redis), "XPENDING to be empty")


# Entries that are not requests.


async def test_undecodable_entries_are_acked_and_dropped(
    redis: Redis, replies: Replies, start_worker: StartWorker
) -> None:
    """Garbage, a missing field, an unknown version and a non-request are dropped; work goes on."""
    handler = Handler()
    running = start_worker(handler)
    await redis.xadd(STREAM, {b"e": b"\xc1 not msgpack"})
    await redis.xadd(STREAM, {b"other": pack_bus(_request().to_wire())})
    await redis.xadd(STREAM, {b"e": pack_bus({**_request().to_wire(), "v": 99})})
    await redis.xadd(STREAM, {b"e": pack_bus({**_request().to_wire(), "ts": "yesterday"})})
    await redis.xadd(STREAM, {b"e": pack_bus(Event("chat:a", "message", {}).to_wire())})
    await redis.xadd(STREAM, {b"e": pack_bus(Reply("x", "c", data={}).to_wire())})
    after = _request(n=1)
    await _add(redis, after)
    await replies.wait(running, after)
    assert [reply.request_id for reply in replies.received] == [after.id]
    assert handler.requests == [after]
    await wait_until(lambda: _is_acked(redis), "XPENDING to be empty")
    assert running.observer.results.count(("undecodable", "dropped")) == 6


async def test_an_entry_with_an_unhashable_kind_is_dropped_without_crashing(
    redis: Redis, replies: Replies, start_worker: StartWorker
) -> None:
    """An envelope whose kind is a list is dropped like any undecodable entry."""
    running = start_worker(Handler())
    await redis.xadd(STREAM, {b"e": pack_bus({**_request().to_wire(), "kind": ["request"]})})
    after = _request(n=1)
    await _add(redis, after)
    await replies.wait(running, after)
    await wait_until(lambda: _is_acked(redis), "XPENDING to be empty")


# Undecodable entries with a reply address (field r).


def _nested(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels - 1):
        value = [value]
    return value


def _bodies_that_do_not_decode(request: Request) -> list[bytes | None]:
    """Values of ``e`` a worker cannot turn into ``request``; None for an entry without ``e``."""
    wire = request.to_wire()
    return [
        b"\xc1 not msgpack",
        # One level more than msgpack unpacks: what a 1,024-deep client message became.
        pack_bus({**wire, "data": {"deep": _nested(1023)}}),
        pack_bus({**wire, "v": 99}),
        pack_bus({**wire, "ts": "yesterday"}),
        pack_bus(Event("chat:a", "message", {}).to_wire()),
        None,
    ]


async def test_an_undecodable_entry_with_a_reply_address_gets_bad_request(
    redis: Redis, replies: Replies, start_worker: StartWorker
) -> None:
    """Each entry whose e does not decode but whose r does is refused to r's gateway, and acked."""
    handler = Handler()
    running = start_worker(handler)
    requests = [_request(n=n) for n in range(len(_bodies_that_do_not_decode(_request())))]
    for request, body in zip(requests, _bodies_that_do_not_decode(_request()), strict=True):
        fields = {b"r": pack_bus(ReplyAddress.of(request).to_wire())}
        if body is not None:
            fields[b"e"] = body
        await redis.xadd(STREAM, fields)  # type: ignore[arg-type]
    answers = await replies.wait(running, *requests)
    for request, reply in zip(requests, answers, strict=True):
        assert reply.connection == request.connection
        assert reply.error is not None
        assert reply.error["code"] == "bad_request"
    assert handler.requests == []
    await wait_until(lambda: _is_acked(redis), "XPENDING to be empty")
    assert running.observer.results == [("undecodable", "bad_request")] * len(requests)


@pytest.mark.parametrize(
    "address",
    [
        pytest.param(b"\xc1", id="not-msgpack"),
        pytest.param(pack_bus({"gw": GATEWAY, "conn": "conn-1"}), id="no-re"),
        pytest.param(pack_bus({"gw": GATEWAY, "conn": "conn-1", "re": 7}), id="re-not-a-string"),
        pytest.param(pack_bus({"gw": [GATEWAY], "conn": "c", "re": "x"}), id="gw-not-a-string"),
    ],
)
async def test_an_undecodable_entry_with_a_bad_reply_address_is_dropped(
    redis: Redis, replies: Replies, start_worker: StartWorker, address: bytes
) -> None:
    """An r that is no valid address leaves nobody to answer: acked, dropped, work goes on."""
    running = start_worker(Handler())
    await redis.xadd(STREAM, {b"e": b"\xc1", b"r": address})
    after = _request(n=1)
    await _add(redis, after)
    await replies.wait(running, after)
    assert [reply.request_id for reply in replies.received] == [after.id]
    await wait_until(lambda: _is_acked(redis), "XPENDING to be empty")
    assert running.observer.results == [("undecodable", "dropped"), ("chat.echo", "ok")]


async def test_a_decodable_entry_is_answered_where_e_says_whatever_r_says(
    redis: Redis, replies: Replies, start_worker: StartWorker
) -> None:
    """e is the source of truth: a valid request is handled and answered as e says, r unread."""
    handler = Handler()
    running = start_worker(handler)
    request = _request(n=1)
    elsewhere = ReplyAddress("gw-elsewhere", "conn-9", "not-this-request")
    fields = {b"e": pack_bus(request.to_wire()), b"r": pack_bus(elsewhere.to_wire())}
    await redis.xadd(STREAM, fields)  # type: ignore[arg-type]
    (reply,) = await replies.wait(running, request)
    assert (reply.ok, reply.connection) == (True, request.connection)
    assert handler.requests == [request]


# Batch handlers.


class BatchRecorder:
    """A batch handler that records each batch and answers with the given function."""

    def __init__(self, answer: Callable[[list[Request]], list[Outcome]]) -> None:
        self.batches: list[list[Request]] = []
        self._answer = answer

    async def __call__(self, requests: list[Request]) -> list[Outcome]:
        self.batches.append(requests)
        return self._answer(requests)


async def test_a_batch_handler_gets_each_read_together(
    redis: Redis, replies: Replies, start_worker: StartWorker
) -> None:
    """Requests already waiting are handed over in one batch, and each outcome becomes its reply."""

    def answer(requests: list[Request]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for request in requests:
            n = request.data["n"]
            if n == 1:
                outcomes.append(ServiceError("bid_too_low", "too low", minimum=5))
            elif n == 2:
                outcomes.append(Reply(request.id, request.connection, data={"whole": n}))
            else:
                outcomes.append({"n": n})
        return outcomes

    batch = BatchRecorder(answer)
    requests = [_request(n=n) for n in range(4)]
    await _add(redis, *requests)
    running = start_worker(batch)
    answers = await replies.wait(running, *requests)
    assert batch.batches == [requests]
    assert [reply.data for reply in answers] == [{"n": 0}, None, {"whole": 2}, {"n": 3}]
    assert answers[1].error == {"code": "bid_too_low", "message": "too low", "minimum": 5}
    await wait_until(lambda: _is_acked(redis), "XPENDING to be empty")
    assert running.observer.results.count(("chat.echo", "ok")) == 3


async def test_replies_of_one_read_to_a_gateway_that_batches_go_in_one_message(
    redis: Redis, replies: Replies, start_worker: StartWorker
) -> None:
    """Requests that say ``batch`` get their replies in one ``replies`` message, in order; a
    reply that cannot be encoded is replaced alone; requests without ``batch`` get one
    message per reply, as an older gateway expects."""
    batched = [_request(n=n, batch=True) for n in range(3)]
    odd = _request("chat.odd", batch=True)
    alone = [_request(n=n) for n in range(3, 5)]
    await _add(redis, *batched, odd, *alone)
    running = start_worker(Handler())
    answers = await replies.wait(running, *batched, odd, *alone)
    assert [reply.data for reply in answers[:3]] == [{"echo": {"n": n}} for n in range(3)]
    assert answers[3].error == {"code": "internal_error", "message": "internal error"}
    assert [reply.request_id for reply in replies.received] == [
        r.id for r in (*alone, *batched, odd)
    ]
    assert replies.messages == [1, 1, 4]
    await wait_until(lambda: _is_acked(redis), "XPENDING to be empty")


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(lambda requests: [], id="too-few-outcomes"),
        pytest.param(lambda requests: 1 / 0, id="raises"),
    ],
)
async def test_a_failing_batch_handler_answers_internal_error_to_all(
    redis: Redis,
    replies: Replies,
    start_worker: StartWorker,
    answer: Callable[[list[Request]], list[Outcome]],
) -> None:
    """A batch handler that raises or miscounts its outcomes makes every reply internal_error."""
    requests = [_request(n=n) for n in range(3)]
    await _add(redis, *requests)
    running = start_worker(BatchRecorder(answer))
    for reply in await replies.wait(running, *requests):
        assert reply.error == {"code": "internal_error", "message": "internal error"}
    await wait_until(lambda: _is_acked(redis), "XPENDING to be empty")


# Trace ids.


class TraceRecorder(logging.Handler):
    """Keeps each record's message with the trace id bound when it was logged."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[str, str | None]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.getMessage(), trace_id.get()))


async def test_log_lines_about_a_request_carry_its_trace_id(
    redis: Redis, replies: Replies, start_worker: StartWorker
) -> None:
    """The worker's line per request, and a handler's lines under traced(), name its trace."""
    handler_log = logging.getLogger("tests.handler")

    def answer(requests: list[Request]) -> list[Outcome]:
        for request in requests:
            with traced(request):
                handler_log.warning("handling")
        return [{} for _ in requests]

    recorder = TraceRecorder()
    worker_log = logging.getLogger("common.bus.worker")
    level = worker_log.level
    worker_log.setLevel(logging.DEBUG)
    for log in (worker_log, handler_log):
        log.addHandler(recorder)
    try:
        requests = [
            Request("chat.echo", {}, GATEWAY, "conn-1", "alice", trace=f"t{n}") for n in range(3)
        ]
        await _add(redis, *requests)
        running = start_worker(BatchRecorder(answer))
        await replies.wait(running, *requests)
    finally:
        for log in (worker_log, handler_log):
            log.removeHandler(recorder)
        worker_log.setLevel(level)
    traces = [request.trace for request in requests]
    assert [trace for line, trace in recorder.lines if line == "handling"] == traces
    assert [trace for line, trace in recorder.lines if line == "request handled"] == traces
    assert trace_id.get() is None
