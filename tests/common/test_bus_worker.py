"""ServiceWorker against a real Redis: replies, acks, refusals, bad entries, claims, recovery."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, cast

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError

from common.bus.worker import BatchHandler, Outcome, RequestHandler, ServiceWorker
from common.codec import load_bus, pack_bus
from common.envelope import Event, Reply, Request, parse_envelope
from common.errors import ErrorCode, ServiceError
from common.keys import reply_channel, request_stream
from common.redis_server import RedisServer
from common.settings import BusSettings, Secret, ServiceSettings
from tests.common import cancel_and_wait, eventually


SERVICE = "chat"
STREAM = request_stream(SERVICE)
GATEWAY = "gw-test"


class Observer:
    """A WorkerObserver that remembers what the worker reported."""

    def __init__(self) -> None:
        self.results: list[tuple[str, str]] = []
        self.claim_passes = 0
        self.bus_errors = 0

    def handled(self, request_type: str, result: str, seconds: float) -> None:
        assert seconds >= 0
        self.results.append((request_type, result))

    def backlog(self, pending: int, lag: int) -> None:
        # Reported after every claim pass, so this counts the worker's claim cycles.
        self.claim_passes += 1

    def bus_error(self) -> None:
        self.bus_errors += 1


class Handler:
    """A request handler that records each request and answers by its type.

    ``chat.echo`` returns the data; ``chat.refuse`` raises a ServiceError with details;
    ``chat.crash`` raises an unexpected exception; ``chat.odd`` returns data msgpack cannot
    encode; ``chat.flaky`` loses the Redis connection the first time it is handled;
    ``chat.whole`` returns a whole Reply.
    """

    def __init__(self) -> None:
        self.requests: list[Request] = []

    def ids(self) -> list[str]:
        return [request.id for request in self.requests]

    async def __call__(self, request: Request) -> dict[str, Any] | Reply:
        self.requests.append(request)
        if request.type == "chat.refuse":
            raise ServiceError(ErrorCode.ROOM_NOT_FOUND, "no such room", room="r-9", tried=[1, 2])
        if request.type == "chat.crash":
            raise RuntimeError("boom: internal detail")
        if request.type == "chat.odd":
            return {"unencodable": {1, 2, 3}}
        if request.type == "chat.flaky" and self.ids().count(request.id) == 1:
            raise RedisConnectionError("lost the connection mid-request")
        if request.type == "chat.whole":
            return Reply(
                request.id, request.connection, data={"whole": True}, subscribe=("chat:a",)
            )
        return {"echo": request.data}


@dataclass
class Running:
    """A worker running as a task of the test's loop."""

    worker: ServiceWorker
    task: asyncio.Task[None]
    observer: Observer

    def check(self) -> None:
        """Fail at once, with the cause, if the worker task has ended."""
        if self.task.done():
            error = None if self.task.cancelled() else self.task.exception()
            raise AssertionError(f"the worker stopped: {error!r}")

    def until(self, condition: Callable[[], bool]) -> Callable[[], bool]:
        """``condition``, failing fast if the worker dies meanwhile."""

        def check() -> bool:
            self.check()
            return condition()

        return check


StartWorker = Callable[..., Running]


@pytest.fixture
async def start_worker(redis: Redis, redis_url: str) -> AsyncIterator[StartWorker]:
    """Starts workers of the chat service as tasks; cancels them all at the end of the test."""
    running: list[Running] = []

    def start(
        handler: RequestHandler,
        *,
        instance: str = "w1",
        claim_idle_ms: int = 60_000,
        claim_interval: float = 0.05,
        batch: int = 16,
        batch_handler: BatchHandler | None = None,
    ) -> Running:
        settings = ServiceSettings(
            bus=BusSettings(redis_url=Secret(redis_url)),
            service=SERVICE,
            instance=instance,
            batch=batch,
            claim_idle_ms=claim_idle_ms,
            claim_interval=claim_interval,
        )
        observer = Observer()
        worker = ServiceWorker(redis, settings, handler, observer, batch_handler=batch_handler)
        task = asyncio.get_running_loop().create_task(worker.run())
        running.append(Running(worker, task, observer))
        return running[-1]

    try:
        yield start
    finally:
        await cancel_and_wait([each.task for each in running], "workers")


class Replies:
    """The replies published to the test gateway's reply channel, in order."""

    def __init__(self, pubsub: PubSub) -> None:
        self._pubsub = pubsub
        self.received: list[Reply] = []

    async def _drain(self) -> None:
        while True:
            message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0)
            if message is None:
                return
            reply = parse_envelope(load_bus(message["data"]))
            assert isinstance(reply, Reply)
            self.received.append(reply)

    def for_(self, request: Request) -> list[Reply]:
        return [reply for reply in self.received if reply.request_id == request.id]

    async def wait(self, running: Running, *requests: Request) -> list[Reply]:
        """The one reply to each request, waiting for them (and failing if the worker dies)."""

        async def arrived() -> bool:
            running.check()
            await self._drain()
            return all(self.for_(request) for request in requests)

        await eventually(arrived, f"replies to {len(requests)} requests")
        answers = []
        for request in requests:
            (reply,) = self.for_(request)
            answers.append(reply)
        return answers


@pytest.fixture
async def replies(redis: Redis) -> AsyncIterator[Replies]:
    """Subscribed (and confirmed by Redis) to the reply channel of the test gateway."""
    pubsub = redis.pubsub()
    try:
        await pubsub.subscribe(reply_channel(GATEWAY))
        confirmation = await pubsub.get_message(timeout=5.0)
        assert confirmation is not None
        assert confirmation["type"] == "subscribe"
        yield Replies(pubsub)
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]


def _request(kind: str = "chat.echo", **data: Any) -> Request:
    return Request(kind, data, GATEWAY, "conn-1", "alice")


async def _add(redis: Redis, *requests: Request) -> None:
    for request in requests:
        await redis.xadd(STREAM, {b"e": pack_bus(request.to_wire())})


async def _pending(redis: Redis) -> int:
    summary = await redis.xpending(STREAM, SERVICE)
    return int(summary["pending"])


async def _is_acked(redis: Redis) -> bool:
    return await _pending(redis) == 0


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
    await eventually(lambda: _is_acked(redis), "XPENDING to be empty")
    assert running.observer.results == [("chat.echo", "ok")] * 5
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
    await eventually(lambda: _is_acked(redis), "XPENDING to be empty")
    assert running.observer.results == [("chat.refuse", "room_not_found")]


async def test_an_unexpected_exception_becomes_internal_error_and_is_acked(
    redis: Redis, replies: Replies, start_worker: StartWorker
) -> None:
    """A handler crash is answered internal_error without its details, acked, and work goes on."""
    running = start_worker(Handler())
    crash, after = _request("chat.crash"), _request(n=1)
    await _add(redis, crash, after)
    failed, ok = await replies.wait(running, crash, after)
    assert failed.error == {"code": "internal_error", "message": "internal error"}
    assert ok.ok
    await eventually(lambda: _is_acked(redis), "XPENDING to be empty")
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
    await eventually(lambda: _is_acked(redis), "XPENDING to be empty")


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
    await eventually(lambda: _is_acked(redis), "XPENDING to be empty")


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
    await eventually(lambda: _is_acked(redis), "XPENDING to be empty")
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
    await eventually(lambda: _is_acked(redis), "XPENDING to be empty")


# Consumer group.


async def test_requests_sent_before_any_worker_ran_are_handled(
    redis: Redis, replies: Replies, start_worker: StartWorker
) -> None:
    """The worker creates the group at id 0, so requests already in the stream are handled."""
    early = [_request(n=n) for n in range(3)]
    await _add(redis, *early)
    running = start_worker(Handler())
    await replies.wait(running, *early)
    groups = await redis.xinfo_groups(STREAM)
    assert [group["name"] for group in groups] == [SERVICE.encode()]


async def test_a_worker_joins_an_existing_group(
    redis: Redis, replies: Replies, start_worker: StartWorker
) -> None:
    """A worker starting after the group exists (BUSYGROUP) just reads from it."""
    await redis.xgroup_create(STREAM, SERVICE, id="0", mkstream=True)
    running = start_worker(Handler())
    request = _request()
    await _add(redis, request)
    await replies.wait(running, request)


async def test_entries_of_a_dead_consumer_are_claimed_once_idle_and_handled_once(
    redis: Redis, replies: Replies, start_worker: StartWorker
) -> None:
    """Entries a dead consumer read and never acked are handled once each, after claim_idle_ms."""
    loop = asyncio.get_running_loop()
    await redis.xgroup_create(STREAM, SERVICE, id="0", mkstream=True)
    orphans = [_request(n=n) for n in range(3)]
    await _add(redis, *orphans)
    read = cast(
        "list[Any]", await redis.xreadgroup(SERVICE, f"{SERVICE}-dead", {STREAM: ">"}, count=10)
    )
    assert len(read[0][1]) == 3
    read_at = loop.time()
    handler = Handler()
    idle_ms = 400
    running = start_worker(handler, claim_idle_ms=idle_ms, claim_interval=0.05)
    await replies.wait(running, *orphans)
    assert loop.time() - read_at >= idle_ms / 1000 - 0.05, "claimed before it was idle"
    await eventually(lambda: _is_acked(redis), "XPENDING to be empty")
    # Let claim passes run for longer than the idle time again: nothing may be handled twice.
    passes, since = running.observer.claim_passes, loop.time()
    await eventually(
        running.until(
            lambda: (
                running.observer.claim_passes >= passes + 3
                and loop.time() - since > 2 * idle_ms / 1000
            )
        ),
        "more claim passes",
    )
    assert sorted(handler.ids()) == sorted(request.id for request in orphans)
    await replies.wait(running, *orphans)  # still exactly one reply each


async def test_a_retryable_failure_leaves_the_entry_to_be_handled_again(
    redis: Redis, replies: Replies, start_worker: StartWorker
) -> None:
    """A connection lost in the handler leaves the entry pending, to be claimed and retried."""
    handler = Handler()
    running = start_worker(handler, claim_idle_ms=200, claim_interval=0.05)
    request = _request("chat.flaky")
    await _add(redis, request)
    (reply,) = await replies.wait(running, request)
    assert reply.ok
    assert handler.ids() == [request.id, request.id]
    await eventually(lambda: _is_acked(redis), "XPENDING to be empty")


async def test_a_destroyed_group_is_recreated(
    redis: Redis, replies: Replies, start_worker: StartWorker
) -> None:
    """After XGROUP DESTROY the worker creates the group again and goes on handling requests."""
    running = start_worker(Handler())
    first = _request(n=1)
    await _add(redis, first)
    await replies.wait(running, first)
    assert await redis.xgroup_destroy(STREAM, SERVICE) == 1
    second = _request(n=2)
    await _add(redis, second)
    await replies.wait(running, second)
    groups = await redis.xinfo_groups(STREAM)
    assert [group["name"] for group in groups] == [SERVICE.encode()]
    assert running.worker.alive


async def test_a_redis_restart_is_survived(
    redis: Redis, replies: Replies, start_worker: StartWorker, redis_server: RedisServer
) -> None:
    """While Redis is down the worker is not alive; once Redis is back it handles requests again."""
    running = start_worker(Handler())
    first = _request(n=1)
    await _add(redis, first)
    await replies.wait(running, first)
    redis_server.stop()
    try:
        await eventually(running.until(lambda: not running.worker.alive), "alive to go false")
        assert running.observer.bus_errors >= 1
    finally:
        redis_server.start()
    # The restarted server is empty: the reply subscription and the group are gone.
    pubsub = redis.pubsub()
    try:
        await pubsub.subscribe(reply_channel(GATEWAY))
        assert (await pubsub.get_message(timeout=5.0) or {}).get("type") == "subscribe"
        fresh = Replies(pubsub)
        second = _request(n=2)
        await _add(redis, second)
        await fresh.wait(running, second)
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
    await eventually(lambda: running.worker.alive, "alive to come back")


# Stopping.


async def test_a_cancelled_worker_stops(start_worker: StartWorker) -> None:
    """One cancel stops a worker wherever it lands, even as a blocking XREADGROUP returns."""
    # The race is narrow: the cancel must land as a read under redis-py's socket timeout
    # (asyncio.timeout) completes; redis-py issue #2028 shows the same in BRPOPLPUSH. So cancel
    # many workers, at times spread over one 10 ms XREADGROUP period in 0.2 ms steps.
    for attempt in range(150):
        running = start_worker(Handler(), instance=f"w{attempt}", claim_interval=0.01)
        await eventually(running.until(lambda: running.worker.alive), "the worker to start")  # noqa: B023
        # Where the cancel lands in the cycle (a placement, not a wait for a condition).
        await asyncio.sleep((attempt % 50) / 5000)
        running.task.cancel()
        done, _ = await asyncio.wait([running.task], timeout=2.0)
        assert done, f"attempt {attempt}: the worker swallowed the cancellation and kept running"
        assert running.task.cancelled()


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
    running = start_worker(Handler(), batch_handler=batch)
    answers = await replies.wait(running, *requests)
    assert batch.batches == [requests]
    assert [reply.data for reply in answers] == [{"n": 0}, None, {"whole": 2}, {"n": 3}]
    assert answers[1].error == {"code": "bid_too_low", "message": "too low", "minimum": 5}
    await eventually(lambda: _is_acked(redis), "XPENDING to be empty")
    assert running.observer.results.count(("chat.echo", "ok")) == 3


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
    running = start_worker(Handler(), batch_handler=BatchRecorder(answer))
    for reply in await replies.wait(running, *requests):
        assert reply.error == {"code": "internal_error", "message": "internal error"}
    await eventually(lambda: _is_acked(redis), "XPENDING to be empty")
