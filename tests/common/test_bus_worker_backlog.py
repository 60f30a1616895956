"""The request stream's backlog as the worker samples it for its metrics (real Redis)."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from common.bus.worker import Backlog, Outcome
from common.envelope import Request
from tests.common.worker_support import (
    SERVICE,
    STREAM,
    Running,
    StartWorker,
    _add,
    _request,
    start_worker_fixture,  # noqa: F401 (a fixture: pytest finds it in this module)
)
from tests.support.waiting import wait_until


class Gate:
    """A batch handler that holds each batch until the test lets it through."""

    def __init__(self) -> None:
        self.seen: list[Request] = []
        self._open = asyncio.Event()

    async def __call__(self, requests: list[Request]) -> list[Outcome]:
        self.seen += requests
        await self._open.wait()
        self._open.clear()
        return [{} for _ in requests]

    def release(self) -> None:
        self._open.set()


def _sampled(running: Running) -> Backlog:
    backlog = running.observer.last_backlog
    assert backlog is not None
    return backlog


async def _first_sample(running: Running) -> Backlog:
    await wait_until(running.until(lambda: running.observer.last_backlog is not None))
    return _sampled(running)


async def _ghost_reads(redis: Redis, count: int) -> None:
    """A consumer of another instance takes ``count`` entries and never acknowledges them."""
    await redis.xgroup_create(STREAM, SERVICE, id="0", mkstream=True)
    await redis.xgroup_createconsumer(STREAM, SERVICE, "ghost")
    await redis.xreadgroup(SERVICE, "ghost", {STREAM: ">"}, count=count)


async def test_an_idle_stream_reports_one_consumer_and_nothing_waiting(
    start_worker: StartWorker,
) -> None:
    """A worker alone on an empty stream samples length, pending and lag 0 and one consumer."""
    running = start_worker(Gate())
    assert await _first_sample(running) == Backlog(length=0, pending=0, lag=0, consumers=1)


async def test_entries_another_consumer_holds_count_as_pending(
    redis: Redis, start_worker: StartWorker
) -> None:
    """Entries delivered to a consumer that has not acknowledged them are pending, not lag."""
    await _add(redis, _request(), _request())
    await _ghost_reads(redis, 2)
    running = start_worker(Gate())
    assert await _first_sample(running) == Backlog(length=2, pending=2, lag=0, consumers=2)


async def test_a_consumer_unseen_for_the_claim_idle_time_is_not_counted(
    redis: Redis, start_worker: StartWorker
) -> None:
    """A dead instance's consumer stays in the group but stops counting once idle that long."""
    await _ghost_reads(redis, 1)
    running = start_worker(Gate(), claim_idle_ms=1_000)
    await wait_until(running.until(lambda: _consumers(running) == 2), "the ghost counted")
    await wait_until(running.until(lambda: _consumers(running) == 1), "the ghost forgotten")


def _consumers(running: Running) -> int | None:
    backlog = running.observer.last_backlog
    return None if backlog is None else backlog.consumers


async def test_entries_not_yet_read_are_lag_and_stream_length(
    redis: Redis, start_worker: StartWorker
) -> None:
    """While a slow handler holds one request, the ones behind it are sampled as lag."""
    gate = Gate()
    # A claim pass before every read, so that a sample falls between two requests.
    running = start_worker(gate, batch=1, claim_interval=0.0)
    await _first_sample(running)
    await _add(redis, _request(n=1), _request(n=2), _request(n=3))
    await wait_until(running.until(lambda: len(gate.seen) == 1), "the first request held")
    gate.release()
    await wait_until(running.until(lambda: len(gate.seen) == 2), "the second request held")
    # Sampled after the first was acknowledged (and deleted), before the second was read.
    assert _sampled(running) == Backlog(length=2, pending=0, lag=2, consumers=1)
    gate.release()
    await wait_until(running.until(lambda: len(gate.seen) == 3), "the third request held")
    gate.release()
    await wait_until(
        running.until(lambda: _sampled(running) == Backlog(0, 0, 0, 1)), "an empty stream"
    )
