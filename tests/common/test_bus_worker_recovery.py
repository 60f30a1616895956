"""ServiceWorker against a real Redis: its consumer group, claims, recovery, cancellation."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from redis.asyncio import Redis

from common.keys import reply_channel
from devtools.redis_server import RedisServer
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
    await wait_until(lambda: _is_acked(redis), "XPENDING to be empty")
    # Let claim passes run for longer than the idle time again: nothing may be handled twice.
    passes, since = running.observer.claim_passes, loop.time()
    await wait_until(
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
    await wait_until(lambda: _is_acked(redis), "XPENDING to be empty")


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
        await wait_until(running.until(lambda: not running.worker.alive), "alive to go false")
        assert running.observer.bus_errors >= 1
    finally:
        redis_server.start()
        await redis.connection_pool.disconnect()  # the test's own connections died too
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
    await wait_until(lambda: running.worker.alive, "alive to come back")


# Stopping.


async def test_a_cancelled_worker_stops(start_worker: StartWorker) -> None:
    """One cancel stops a worker wherever it lands, even as a blocking XREADGROUP returns."""
    # The race is narrow: the cancel must land as a read under redis-py's socket timeout
    # (asyncio.timeout) completes; redis-py issue #2028 shows the same in BRPOPLPUSH. So cancel
    # many workers, at times spread over one 10 ms XREADGROUP period in 0.2 ms steps.
    for attempt in range(150):
        running = start_worker(Handler(), instance=f"w{attempt}", claim_interval=0.01)
        await wait_until(running.until(lambda: running.worker.alive), "the worker to start")  # noqa: B023
        # Where the cancel lands in the cycle (a placement, not a wait for a condition).
        await asyncio.sleep((attempt % 50) / 5000)
        running.task.cancel()
        done, _ = await asyncio.wait([running.task], timeout=2.0)
        assert done, f"attempt {attempt}: the worker swallowed the cancellation and kept running"
        assert running.task.cancelled()
