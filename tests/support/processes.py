"""Real gateway and service processes for end-to-end tests, started by devtools/processes.py.

Each process runs ``python -m <module>`` on a free loopback port as its own ACL user, with
the test settings plus the caller's overrides (none of the test runner's ``RT_*`` variables).
Its log's tail is shown when it fails to start and when a test fails (tests/conftest.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from devtools import processes as devtools_processes
from devtools.net import free_port
from devtools.processes import REPO_ROOT, ProcessError, environment, http_get, python_command
from tests.support.bus_redis import cluster_settings
from tests.support.redis_users import credentials
from tests.support.registry import announce_built_ins
from tests.support.waiting import MS, wait_until


__all__ = [
    "JWT_SECRET",
    "POLL_COMMAND",
    "REPO_ROOT",
    "START_TIMEOUT",
    "STOP_TIMEOUT",
    "ManagedProcess",
    "ProcessError",
    "http_get",
    "http_get_async",
    "live_processes",
    "metric_value",
    "start_gateway",
    "start_process",
    "start_stub_service",
    "wait_all_ready",
]

#: The HS256 secret every test gateway verifies tokens with (at least 32 characters).
JWT_SECRET = "e2e-test-secret-0123456789abcdef-0123456789"
#: How long a process may take to answer 200 on /readyz after it was started.
START_TIMEOUT = 20_000 * MS
#: How long a stopped process may take to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 15_000 * MS

#: The Node.js poll service (polls_service/; its node_modules installed by scripts/_node.sh).
POLL_COMMAND = ("node", str(REPO_ROOT / "polls_service" / "src" / "main.js"))

_running: dict[int, ManagedProcess] = {}


async def http_get_async(url: str, within: float = 2.0) -> tuple[int, str]:
    """:func:`http_get` off the event loop."""
    return await asyncio.to_thread(http_get, url, within)


def metric_value(text: str, name: str, labels: Mapping[str, str] | None = None) -> float:
    """The value of the sample ``name`` with ``labels`` in a Prometheus scrape; 0 if absent.

    A labelled counter has no sample until a label set is first used, hence 0.
    """
    wanted = dict(labels or {})
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == wanted:
                return float(sample.value)
    return 0.0


class ManagedProcess(devtools_processes.ManagedProcess):
    """A process of a test, listed by :func:`live_processes` until it is stopped.

    ``command``, when given, is run instead of ``python -m <module> <args>``.
    """

    def __init__(
        self,
        name: str,
        module: str,
        args: Sequence[str],
        env: Mapping[str, str],
        port: int,
        log: Path,
        *,
        command: Sequence[str] | None = None,
    ) -> None:
        self.module = module
        command = command or python_command(module, args)
        super().__init__(name, command, env=env, port=port, log=log)
        _running[self.pid] = self

    async def get_async(self, path: str, within: float = 2.0) -> tuple[int, str]:
        return await http_get_async(self.base_url + path, within)

    async def metric(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        """The current value of one sample of this process's /metrics."""
        status, body = await self.get_async("/metrics")
        if status != 200:
            raise ProcessError(f"/metrics answered {status}: {body[:200]}\n{self.describe()}")
        return metric_value(body, name, labels)

    async def metric_reaches(
        self,
        name: str,
        value: float,
        labels: Mapping[str, str] | None = None,
        *,
        within: float = 5_000 * MS,
    ) -> None:
        """Wait until one sample of /metrics is at least ``value``; fail after ``within`` s."""

        async def reached() -> bool:
            return await self.metric(name, labels) >= value

        await wait_until(reached, f"{name} {labels or ''} at {value}", within=within)

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Return once /readyz answers 200.

        Raises:
            ProcessError: the process exited, or was not ready within ``timeout`` seconds.
        """
        devtools_processes.wait_all_ready([self], timeout)

    def stop(self, timeout: float = STOP_TIMEOUT, *, signum: int | None = None) -> int:
        try:
            return super().stop(timeout, signum=signum)
        finally:
            _running.pop(self.pid, None)


def live_processes() -> list[ManagedProcess]:
    """Every process started here and not yet stopped (for failure reports)."""
    return list(_running.values())


def wait_all_ready(
    processes: Sequence[devtools_processes.ManagedProcess], timeout: float = START_TIMEOUT
) -> None:
    """Wait for every process's /readyz to answer 200, all within one deadline.

    Raises:
        ProcessError: one exited or was still not ready at the deadline.
    """
    devtools_processes.wait_all_ready(processes, timeout)


def _environment(overrides: Mapping[str, str]) -> dict[str, str]:
    logs = {"RT_LOG_FORMAT": "console", "RT_LOG_LEVEL": "info", "PYTHONUNBUFFERED": "1"}
    return environment({**logs, **overrides})


def start_process(
    name: str,
    module: str,
    *,
    log_dir: Path,
    env: Mapping[str, str],
    args: list[str] | None = None,
    wait: bool = True,
    port: int | None = None,
    command: Sequence[str] | None = None,
) -> ManagedProcess:
    """Start ``python -m module`` (or ``command``, a process that ``module`` names for its ACL
    user) on ``port`` (``RT_PORT``; default a free one), ready unless ``wait=False``. A given
    port lets a test replace a process it stopped by a new one. On a cluster's URL
    (tests/support/bus_redis.py) it runs in cluster mode."""
    port = port or free_port()
    url = env.get("RT_REDIS_URL")
    # Each process as its own ACL user, unless the test chose one; on a cluster's URL, in
    # cluster mode.
    users: dict[str, str] = {}
    if url is not None and "RT_REDIS_USERNAME" not in env:
        users = credentials(url, module, args or [])
    mode = cluster_settings(url) if url is not None else {}
    settings = _environment({"RT_HOST": "127.0.0.1", "RT_PORT": str(port), **users, **mode, **env})
    log_path = log_dir / f"{name}-{port}.log"
    process = ManagedProcess(
        name, module, list(args or []), settings, port, log_path, command=command
    )
    if wait:
        try:
            process.wait_ready()
        except BaseException:
            process.stop(timeout=2.0)
            raise
    return process


def start_gateway(
    redis_url: str,
    *,
    log_dir: Path,
    gateway_id: str,
    env: Mapping[str, str] | None = None,
    wait: bool = True,
    port: int | None = None,
    announce: bool = True,
) -> ManagedProcess:
    """Start ``python -m realtime_gateway`` with test settings plus ``env`` (``RT_*`` names).

    With ``announce``, the built-in services (and the stubs' types) are announced first,
    for an hour (tests/support/registry.py): the gateway routes to them whether or not one
    runs, as with the hard-coded table of old.
    """
    settings = {
        "RT_REDIS_URL": redis_url,
        "RT_JWT_SECRET": JWT_SECRET,
        "RT_GATEWAY_ID": gateway_id,
        "RT_REQUEST_TIMEOUT": "2",
        "RT_SHUTDOWN_GRACE": "3",
        "RT_CLOSE_TIMEOUT": "2",
        # Every test speaks from 127.0.0.1: one module's bad tokens must not slow the next
        # test's authentications (tests/e2e/test_edge_*.py set their own per-address limits).
        "RT_AUTH_FAILURE_BURST": "100000",
        **(env or {}),
    }
    if announce:
        announce_built_ins(redis_url)
    return start_process(
        gateway_id, "realtime_gateway", log_dir=log_dir, env=settings, wait=wait, port=port
    )


def start_stub_service(
    redis_url: str,
    *,
    log_dir: Path,
    service: str = "chat",
    instance: str | None = None,
    env: Mapping[str, str] | None = None,
    wait: bool = True,
) -> ManagedProcess:
    """Start the stub service of tests/support/stub_service.py as ``service``."""
    instance = instance or f"stub-{service}-{free_port()}"
    settings = {
        "RT_REDIS_URL": redis_url,
        "RT_INSTANCE_ID": instance,
        # Short, so that the worker notices a lost consumer group (FLUSHALL) quickly.
        "RT_CLAIM_INTERVAL": "0.5",
        **(env or {}),
    }
    return start_process(
        instance,
        "tests.support.stub_service",
        log_dir=log_dir,
        env=settings,
        args=["--service", service],
        wait=wait,
    )
