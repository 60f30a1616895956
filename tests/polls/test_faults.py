"""The poll service through failures: Redis restarting under it (no persistence: its group,
scripts and registry entry are gone), and a stop with SIGTERM."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from devtools.redis_server import RedisServer
from tests.polls.support import BusClient, Launcher
from tests.support.processes import http_get_async
from tests.support.waiting import MS, wait_until


async def test_the_service_comes_back_after_redis_restarts(
    launcher: Launcher, redis_server: RedisServer, bus: Redis
) -> None:
    """Unready while Redis is down; then it answers again and is in the registry again."""
    service = await asyncio.to_thread(launcher.poll, {"RT_REGISTRY_TTL": "1.5"})
    redis_server.stop()
    try:

        async def unready() -> bool:
            return (await http_get_async(service.base_url + "/readyz"))[0] == 503

        await wait_until(unready, "/readyz to answer 503")
    finally:
        redis_server.start()
    async with BusClient(bus) as client:
        request = client.request("poll.get", {"poll": "0123456789abcdef"})

        async def answered() -> bool:
            await client.send(request)
            try:
                reply = await client.reply(request.id, within=500 * MS)
            except TimeoutError:
                return False
            return bool(reply["error"]["code"] == "poll_not_found")

        await wait_until(answered, "a reply after the restart", within=15_000 * MS)
        # Scripts were lost with the restart: a create loads them again.
        assert await client.create()
    await wait_until(
        lambda: _announced(bus), "the announcement after the restart", within=5_000 * MS
    )
    assert (await http_get_async(service.base_url + "/readyz"))[0] == 200


async def _announced(bus: Redis) -> bool:
    return bool(await bus.hget("{registry}:owners", "poll") == b"poll")


def test_sigterm_stops_the_service_with_status_0(launcher: Launcher) -> None:
    """SIGTERM closes the HTTP server and the worker, and the process exits 0."""
    service = launcher.poll()
    assert service.stop() == 0
    assert "stopping" in service.log_tail()
