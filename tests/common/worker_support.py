"""What the ServiceWorker tests share: a recording handler and observer, workers, replies."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError

from common.bus.worker import Backlog, BatchHandler, Outcome, ServiceWorker
from common.codec import load_bus, pack_bus
from common.envelope import Reply, ReplyBatch, Request, parse_envelope
from common.errors import ErrorCode, ServiceError
from common.keys import reply_channel, request_stream
from common.settings import BusSettings, Secret, ServiceSettings
from tests.common import cancel_and_wait
from tests.support.waiting import wait_until


__all__ = [
    "GATEWAY",
    "SERVICE",
    "STREAM",
    "Handler",
    "Observer",
    "Replies",
    "Running",
    "StartWorker",
    "_add",
    "_is_acked",
    "_request",
    "replies_fixture",
    "start_worker_fixture",
]

SERVICE = "chat"
STREAM = request_stream(SERVICE, 0)
GATEWAY = "gw-test"


class Observer:
    """A WorkerObserver that remembers what the worker reported."""

    def __init__(self) -> None:
        self.results: list[tuple[str, str]] = []
        self.claim_passes = 0
        self.last_backlog: Backlog | None = None
        self.bus_errors = 0

    def handled(self, request_type: str, result: str, seconds: float) -> None:
        assert seconds >= 0
        self.results.append((request_type, result))

    def backlog(self, backlog: Backlog) -> None:
        # Reported after every claim pass, so this counts the worker's claim cycles.
        self.claim_passes += 1
        self.last_backlog = backlog

    def bus_error(self) -> None:
        self.bus_errors += 1


class Handler:
    """A batch handler that records each request and answers each by its type, in order.

    ``chat.echo`` returns the data; ``chat.refuse`` a ServiceError with details; ``chat.odd``
    data msgpack cannot encode; ``chat.whole`` a whole Reply. ``chat.crash`` makes the batch
    raise an unexpected exception; ``chat.flaky`` makes it lose the Redis connection the
    first time that request is handled.
    """

    def __init__(self) -> None:
        self.requests: list[Request] = []

    def ids(self) -> list[str]:
        return [request.id for request in self.requests]

    async def __call__(self, requests: list[Request]) -> list[Outcome]:
        self.requests += requests
        return [self._answer(request) for request in requests]

    def _answer(self, request: Request) -> Outcome:
        if request.type == "chat.refuse":
            return ServiceError(ErrorCode.ROOM_NOT_FOUND, "no such room", room="r-9", tried=[1, 2])
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


@pytest.fixture(name="start_worker")
async def start_worker_fixture(redis: Redis, redis_url: str) -> AsyncIterator[StartWorker]:
    """Starts workers of the chat service as tasks; cancels them all at the end of the test."""
    running: list[Running] = []

    def start(
        handler: BatchHandler,
        *,
        instance: str = "w1",
        claim_idle_ms: int = 60_000,
        claim_interval: float = 0.05,
        batch: int = 16,
        partitions: int = 1,
    ) -> Running:
        settings = ServiceSettings(
            bus=BusSettings(redis_url=Secret(redis_url)),
            service=SERVICE,
            instance=instance,
            batch=batch,
            claim_idle_ms=claim_idle_ms,
            claim_interval=claim_interval,
            partitions=partitions,
        )
        observer = Observer()
        worker = ServiceWorker(redis, settings, handler, observer)
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
        #: How many replies each pub/sub message carried (1 unless a batch).
        self.messages: list[int] = []

    async def _drain(self) -> None:
        while True:
            message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0)
            if message is None:
                return
            envelope = parse_envelope(load_bus(message["data"]))
            replies = envelope.replies if isinstance(envelope, ReplyBatch) else (envelope,)
            for reply in replies:
                assert isinstance(reply, Reply)
                self.received.append(reply)
            self.messages.append(len(replies))

    def for_(self, request: Request) -> list[Reply]:
        return [reply for reply in self.received if reply.request_id == request.id]

    async def wait(self, running: Running, *requests: Request) -> list[Reply]:
        """The one reply to each request, waiting for them (and failing if the worker dies)."""

        async def arrived() -> bool:
            running.check()
            await self._drain()
            return all(self.for_(request) for request in requests)

        await wait_until(arrived, f"replies to {len(requests)} requests")
        answers = []
        for request in requests:
            (reply,) = self.for_(request)
            answers.append(reply)
        return answers


@pytest.fixture(name="replies")
async def replies_fixture(redis: Redis) -> AsyncIterator[Replies]:
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


def _request(kind: str = "chat.echo", *, batch: bool = False, **data: Any) -> Request:
    return Request(kind, data, GATEWAY, "conn-1", "alice", batch=batch)


async def _add(redis: Redis, *requests: Request, stream: str = STREAM) -> None:
    for request in requests:
        await redis.xadd(stream, {b"e": pack_bus(request.to_wire())})


async def _pending(redis: Redis) -> int:
    summary = await redis.xpending(STREAM, SERVICE)
    return int(summary["pending"])


async def _is_acked(redis: Redis) -> bool:
    return await _pending(redis) == 0
