"""One test module's processes: started with names of their own, stopped together at its end."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar, TypeVar

import pytest

from tests.support.processes import (
    POLL_COMMAND,
    ManagedProcess,
    start_gateway,
    start_process,
    start_stub_service,
)


__all__ = ["ModuleProcesses", "module_processes"]


class ModuleProcesses:
    """Gateways, services and stubs of one test module, on the module's Redis.

    Subclasses set the defaults their tests need (``gateway_env``) and add their services.
    """

    #: Settings every gateway of this kind of module gets (a test's own ``env`` wins).
    gateway_env: ClassVar[Mapping[str, str]] = {}
    #: Settings every poll service instance of this kind of module gets.
    poll_env: ClassVar[Mapping[str, str]] = {}

    def __init__(self, redis_url: str, log_dir: Path, prefix: str) -> None:
        self.redis_url = redis_url
        self.log_dir = log_dir
        self.prefix = prefix
        self._count = itertools.count(1)
        self.processes: list[ManagedProcess] = []

    def name(self, kind: str) -> str:
        """A name unique in the session: ``<kind>-<module>-<n>``."""
        return f"{kind}-{self.prefix}-{next(self._count)}"

    def track(self, process: ManagedProcess) -> ManagedProcess:
        self.processes.append(process)
        return process

    def gateway(
        self, env: Mapping[str, str] | None = None, *, wait: bool = True, port: int | None = None
    ) -> ManagedProcess:
        """A gateway (``RT_GATEWAY_ID`` prefix ``gw-<module>-<n>``) with the test settings,
        on ``port`` when given (to replace one that was stopped)."""
        return self.track(
            start_gateway(
                self.redis_url,
                log_dir=self.log_dir,
                gateway_id=self.name("gw"),
                env={**self.gateway_env, **(env or {})},
                wait=wait,
                port=port,
            )
        )

    def service(
        self,
        module: str,
        kind: str,
        env: Mapping[str, str],
        *,
        wait: bool = True,
        args: list[str] | None = None,
    ) -> ManagedProcess:
        """``python -m <module> <args>`` as instance ``<kind>-<module>-<n>`` of the module's
        Redis."""
        instance = self.name(kind)
        settings = {"RT_REDIS_URL": self.redis_url, "RT_INSTANCE_ID": instance, **env}
        return self.track(
            start_process(
                instance, module, log_dir=self.log_dir, env=settings, wait=wait, args=args
            )
        )

    def poll(self, env: Mapping[str, str] | None = None, *, wait: bool = True) -> ManagedProcess:
        """An instance ``poll-<module>-<n>`` of the Node.js poll service (polls_service/)."""
        instance = self.name("poll")
        settings = {
            "RT_REDIS_URL": self.redis_url,
            "RT_INSTANCE_ID": instance,
            **self.poll_env,
            **(env or {}),
        }
        return self.track(
            start_process(
                instance,
                "polls_service",
                log_dir=self.log_dir,
                env=settings,
                wait=wait,
                command=POLL_COMMAND,
            )
        )

    def stub(
        self, service: str = "chat", env: Mapping[str, str] | None = None, *, wait: bool = True
    ) -> ManagedProcess:
        """A stub service instance (tests/support/stub_service.py) named ``service``."""
        return self.track(
            start_stub_service(
                self.redis_url,
                log_dir=self.log_dir,
                service=service,
                instance=self.name(f"stub-{service}"),
                env=env,
                wait=wait,
            )
        )

    def stop_all(self) -> None:
        for process in self.processes:
            process.stop()
        self.processes.clear()


_Processes = TypeVar("_Processes", bound=ModuleProcesses)


@contextmanager
def module_processes(
    kind: type[_Processes], request: pytest.FixtureRequest, bus_url: str, log_dir: Path
) -> Iterator[_Processes]:
    """The body of a module-scoped fixture: processes named after the module, all stopped."""
    prefix = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    started = kind(bus_url, log_dir, prefix)
    try:
        yield started
    finally:
        started.stop_all()
