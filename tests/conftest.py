"""Fixtures every test may use: a private Redis server for the whole session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from common.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A private, non-persistent Redis on a free loopback port, shared by the session."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of the session's Redis, emptied (and started, if a test left it stopped)."""
    if not redis_server.is_running:
        redis_server.start()
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    return redis_server.url
