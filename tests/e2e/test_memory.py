"""A full Redis (``maxmemory`` with ``noeviction``): clients get a clear error, nothing crashes."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.exceptions import OutOfMemoryError

from devtools.redis_server import RedisServer
from tests.support.client import call, connect_user
from tests.support.processes import ManagedProcess, start_gateway, start_process, wait_all_ready
from tests.support.redis_users import TestUsers, register


#: Small enough to fill in a moment, above what an empty Redis and the processes use.
MAXMEMORY = "8mb"
_FILLER = b"x" * 65536
#: Bounds the filling loop: 8 MB is about 130 values.
_MAX_FILLERS = 1000


@pytest.fixture(scope="module")
def tiny_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    users = TestUsers(tmp_path_factory.mktemp("memory-users"))
    with RedisServer(acl=users.aclfile_lines(), maxmemory=MAXMEMORY) as server:
        register(server.url, users)
        yield server


@pytest.fixture(scope="module")
def stack(tiny_redis: RedisServer, log_dir: Path) -> Iterator[tuple[ManagedProcess, ...]]:
    """A gateway and a chat service on the tiny Redis."""
    env = {"RT_REDIS_URL": tiny_redis.url}
    gateway = start_gateway(tiny_redis.url, log_dir=log_dir, gateway_id="gw-memory", wait=False)
    chat = start_process("chat-memory", "chat_service", log_dir=log_dir, env=env, wait=False)
    try:
        wait_all_ready([gateway, chat])
        yield gateway, chat
    finally:
        gateway.stop()
        chat.stop()


def _fill(server: RedisServer) -> int:
    """Write filler keys until Redis refuses one, then put it over its limit; return how
    many were written.

    The refused value's own bytes (in its query buffer) caused the refusal, so Redis is
    left just under the limit, where the next small write still fits and pushes it over,
    as one does in production. That last write is made here, the limit lifted for it.
    """
    with redis.Redis.from_url(server.url, **server.client_options()) as admin:
        for n in itertools.count():
            assert n < _MAX_FILLERS, "Redis never filled up: is maxmemory set?"
            try:
                admin.set(f"filler:{n}", _FILLER)
            except OutOfMemoryError:
                break
        admin.config_set("maxmemory", 0)
        # Well over, not just over: buffers freed after this (the admin's own query buffer,
        # a stream's deleted entries) must not bring Redis back under its limit.
        for extra in range(8):
            admin.set(f"filler:last:{extra}", _FILLER)
        admin.config_set("maxmemory", MAXMEMORY)
        memory = admin.info("memory")
        assert memory["used_memory"] > memory["maxmemory"]
    return n


def _empty(server: RedisServer) -> None:
    with redis.Redis.from_url(server.url, **server.client_options()) as admin:
        keys = list(admin.scan_iter("filler:*", count=1000))
        if keys:
            admin.delete(*keys)


async def test_a_full_redis_gets_a_clear_error_and_processes_stay_up(
    stack: tuple[ManagedProcess, ...], tiny_redis: RedisServer
) -> None:
    """With Redis full a chat.send is answered service_unavailable "out of memory"; the
    processes keep running and serve again once memory is freed."""
    gateway = stack[0]
    message = {"type": "chat.send", "room": "full", "text": "hi", "ref": 0}
    async with await connect_user(gateway.ws_url, "alice") as ws:
        assert (await call(ws, {"type": "chat.join", "room": "full", "ref": "j"}))["ok"]
        try:
            assert _fill(tiny_redis) > 0
            refused = await call(ws, {**message, "client_id": "c1", "ref": 1})
            assert refused["ok"] is False
            assert refused["error"]["code"] == "service_unavailable"
            assert "out of memory" in refused["error"]["message"]
            for process in stack:
                assert process.running, process.describe()
                assert (await process.get_async("/livez"))[0] == 200
        finally:
            _empty(tiny_redis)
        accepted = await call(ws, {**message, "client_id": "c2", "ref": 2})
        assert accepted["ok"], accepted
