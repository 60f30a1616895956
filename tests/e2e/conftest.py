"""Fixtures of the end-to-end tests: a Redis flushed once per module, and real processes.

Processes are module-scoped (started by each module's fixtures through :class:`Launcher`) so
that tests share them where their settings allow. Redis is flushed when a module starts, not
before each test: a flush under a running service would delete its consumer group. Tests of
one module stay apart by using channel names and markers of their own.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.support.processes import (
    ManagedProcess,
    start_gateway,
    start_stub_service,
)


class Launcher:
    """Starts the gateways and stub services of one test module and stops them all at its end."""

    def __init__(self, redis_url: str, log_dir: Path, prefix: str) -> None:
        self.redis_url = redis_url
        self._log_dir = log_dir
        self._prefix = prefix
        self._count = itertools.count(1)
        self._processes: list[ManagedProcess] = []

    def gateway(self, env: Mapping[str, str] | None = None, *, wait: bool = True) -> ManagedProcess:
        """A gateway with a unique id (``gw-<module>-<n>``) and the test settings plus ``env``."""
        gateway_id = f"gw-{self._prefix}-{next(self._count)}"
        process = start_gateway(
            self.redis_url, log_dir=self._log_dir, gateway_id=gateway_id, env=env, wait=wait
        )
        self._processes.append(process)
        return process

    def stub(
        self, service: str = "chat", env: Mapping[str, str] | None = None, *, wait: bool = True
    ) -> ManagedProcess:
        """A stub service instance (tests/support/stub_service.py) named ``service``."""
        instance = f"stub-{self._prefix}-{service}-{next(self._count)}"
        process = start_stub_service(
            self.redis_url,
            log_dir=self._log_dir,
            service=service,
            instance=instance,
            env=env,
            wait=wait,
        )
        self._processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in self._processes:
            process.stop()
        self._processes.clear()


@pytest.fixture(scope="module")
def launcher(request: pytest.FixtureRequest, bus_url: str, log_dir: Path) -> Iterator[Launcher]:
    """Starts processes for this module; stops them (SIGTERM, then SIGKILL) when it ends."""
    prefix = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    started = Launcher(bus_url, log_dir, prefix)
    try:
        yield started
    finally:
        started.stop_all()
