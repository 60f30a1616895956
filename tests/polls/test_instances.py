"""Several poll service instances on one consumer group: each poll closes exactly once, and
a claimed namespace stops a service at start."""

from __future__ import annotations

import asyncio
from typing import cast

from redis.asyncio import Redis

from tests.polls.support import BusClient, Launcher
from tests.support.waiting import MS, wait_until


async def test_three_instances_racing_close_each_poll_once(
    launcher: Launcher, client: BusClient, bus: Redis
) -> None:
    """Three instances closing every 10 ms publish one poll.closed per poll, and one only."""
    env = {"RT_POLL_CLOSE_INTERVAL": "0.01"}
    instances = await asyncio.to_thread(lambda: [launcher.poll(env) for _ in range(3)])
    polls = [await client.create(closes_in=0.5) for _ in range(20)]
    for poll in polls:
        await client.listen(f"poll:{poll}")

    def closes(poll: str) -> int:
        return sum(e["event"] == "poll.closed" for e in client.events[f"poll:{poll}"])

    await wait_until(lambda: all(closes(poll) >= 1 for poll in polls), "every poll closed")
    # Let the other instances have their turns: a second close would come within this time.
    await asyncio.sleep(300 * MS)
    assert [closes(poll) for poll in polls] == [1] * len(polls)
    for poll in polls:
        history = cast(
            "list[tuple[bytes, dict[bytes, bytes]]]", await bus.xrange(f"poll:history:{poll}")
        )
        assert [fields[b"event"] for _, fields in history].count(b"poll.closed") == 1
    closed_by = [await instance.metric("rt_poll_closes_total") for instance in instances]
    assert sum(closed_by) == len(polls)


async def test_a_namespace_owned_by_another_service_stops_the_service(
    launcher: Launcher, bus: Redis
) -> None:
    """With poll: owned by another service, a new instance logs why and exits 3, writing nothing."""
    previous = await bus.hget("{registry}:owners", "poll")
    await bus.hset("{registry}:owners", "poll", "quiz")
    try:
        before = await bus.hget("{registry}:services", "poll")
        process = await asyncio.to_thread(launcher.poll, wait=False)
        code = await asyncio.to_thread(process.wait, 10_000 * MS)
        assert code == 3
        log = process.log_tail()
        assert "namespace 'poll' is owned by 'quiz'" in log
        assert await bus.hget("{registry}:services", "poll") == before
    finally:
        if previous is None:
            await bus.hdel("{registry}:owners", "poll")
        else:
            await bus.hset("{registry}:owners", "poll", previous)
