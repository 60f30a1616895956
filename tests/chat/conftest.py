"""Fixtures of the chat tests: a Redis emptied once per module, and a log directory.

Processes are module-scoped (each module starts its own gateways and chat services). Redis is
flushed when a module starts, never under running services (a flush deletes the consumer
group); tests of one module stay apart by using room and user names of their own.
"""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import pytest
import redis

from common.redis_server import RedisServer
from tests.support.processes import live_processes


@pytest.fixture(scope="session")
def chat_log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the logs of the processes the chat tests start are written."""
    return tmp_path_factory.mktemp("chat-logs")


@pytest.fixture(scope="module")
def chat_redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, started if a test left it stopped, and emptied for this module."""
    if not redis_server.is_running:
        redis_server.start()
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    return redis_server.url


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On a failure, attach the log tail of every process still running to the report."""
    report = yield
    if report.failed:
        for process in live_processes():
            report.sections.append(
                (f"log of {process.name} ({process.log_path})", process.describe())
            )
    return report
