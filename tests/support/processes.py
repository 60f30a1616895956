"""Real gateway and service processes for end-to-end tests.

Each process runs ``python -m <module>`` on a free loopback port with an environment made of
the caller's overrides (every ``RT_*`` variable of the test runner's own environment is
dropped, so a developer's settings never leak in). Its stdout and stderr go to a log file,
whose tail is shown when it fails to start and when a test fails (see tests/e2e/conftest.py).
Processes are stopped by PID: SIGTERM, then SIGKILL after a deadline.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.support.ports import free_port
from tests.support.redis_users import credentials
from tests.support.stub_service import STUB_REQUESTS


__all__ = [
    "JWT_SECRET",
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

REPO_ROOT = Path(__file__).resolve().parents[2]
#: The HS256 secret every test gateway verifies tokens with (at least 32 characters).
JWT_SECRET = "e2e-test-secret-0123456789abcdef-0123456789"
#: How long a process may take to answer 200 on /readyz after it was started.
START_TIMEOUT = 20.0
#: How long a stopped process may take to exit after SIGTERM before it is killed.
STOP_TIMEOUT = 15.0
_POLL = 0.05

_running: dict[int, ManagedProcess] = {}


class ProcessError(RuntimeError):
    """A test process did not start, or misbehaved while stopping."""


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    """GET ``url``; return the status and body (a refused connection is status 0)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, OSError) as exc:
        return 0, repr(exc)


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


class ManagedProcess:
    """One ``python -m`` process listening on ``port``, with its log in ``log_path``.

    ``command``, when given, is run instead of ``python -m <module> <args>``.
    """

    def __init__(
        self,
        name: str,
        module: str,
        args: list[str],
        env: dict[str, str],
        port: int,
        log: Path,
        *,
        command: list[str] | None = None,
    ) -> None:
        self.name = name
        self.module = module
        self.env = env
        self.port = port
        self.log_path = log
        self._log_file = log.open("ab")
        self.process = subprocess.Popen(
            command or [sys.executable, "-m", module, *args],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            # Its own session: a Ctrl-C meant for pytest must not kill it before the fixture
            # that owns it stops it.
            start_new_session=True,
        )
        self.pid = self.process.pid
        _running[self.pid] = self

    def __repr__(self) -> str:
        return f"<{self.name} pid {self.pid} port {self.port}>"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(text.splitlines()[-lines:])

    def describe(self) -> str:
        state = "running" if self.running else f"exited with {self.process.returncode}"
        return f"{self!r} {state}; log {self.log_path}:\n{self.log_tail()}"

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, str]:
        return http_get(self.base_url + path, timeout)

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
        within: float = 5.0,
    ) -> None:
        """Wait until one sample of /metrics is at least ``value``; fail after ``within`` s."""
        deadline = time.monotonic() + within
        while (now := await self.metric(name, labels)) < value:
            if time.monotonic() >= deadline:
                raise AssertionError(f"{name} {labels or ''} still {now} after {within} s")
            await asyncio.sleep(_POLL)

    def ready(self) -> bool:
        return self.get("/readyz", timeout=1.0)[0] == 200

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Return once /readyz answers 200.

        Raises:
            ProcessError: the process exited, or was not ready within ``timeout`` seconds.
        """
        wait_all_ready([self], timeout)

    def signal(self, signum: int) -> None:
        if self.running:
            os.kill(self.pid, signum)

    def wait(self, timeout: float) -> int | None:
        """The exit code, or None if the process still runs after ``timeout`` seconds."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, wait up to ``timeout`` seconds, else SIGKILL; return the exit code.

        Idempotent: a process that already exited just reports its code.
        """
        try:
            if self.running:
                os.kill(self.pid, signal.SIGTERM)
            code = self.wait(timeout)
            if code is None:
                os.kill(self.pid, signal.SIGKILL)
                code = self.process.wait(timeout=timeout)
            return code
        finally:
            _running.pop(self.pid, None)
            self._log_file.close()


def live_processes() -> list[ManagedProcess]:
    """Every process started here and not yet stopped (for failure reports)."""
    return list(_running.values())


def wait_all_ready(processes: list[ManagedProcess], timeout: float = START_TIMEOUT) -> None:
    """Wait for every process's /readyz to answer 200, all within one deadline.

    Raises:
        ProcessError: one exited or was still not ready at the deadline.
    """
    deadline = time.monotonic() + timeout
    waiting = list(processes)
    while waiting:
        for process in list(waiting):
            if not process.running:
                raise ProcessError(f"{process.name} exited while starting: {process.describe()}")
            if process.ready():
                waiting.remove(process)
        if not waiting:
            return
        if time.monotonic() > deadline:
            details = "\n".join(process.describe() for process in waiting)
            raise ProcessError(f"not ready within {timeout} s:\n{details}")
        time.sleep(_POLL)


def _environment(overrides: Mapping[str, str]) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("RT_")}
    env.update({"RT_LOG_FORMAT": "console", "RT_LOG_LEVEL": "info", "PYTHONUNBUFFERED": "1"})
    env.update(overrides)
    return env


def start_process(
    name: str,
    module: str,
    *,
    log_dir: Path,
    env: Mapping[str, str],
    args: list[str] | None = None,
    wait: bool = True,
    port: int | None = None,
) -> ManagedProcess:
    """Start ``python -m module`` on ``port`` (``RT_PORT``; default a free one), ready unless
    ``wait=False``. A given port lets a test replace a process it stopped by a new one."""
    port = port or free_port()
    url = env.get("RT_REDIS_URL")
    # Each process as its own ACL user, unless the test chose one.
    users = {}
    if url is not None and "RT_REDIS_USERNAME" not in env:
        users = credentials(url, module, args or [])
    environment = _environment({"RT_HOST": "127.0.0.1", "RT_PORT": str(port), **users, **env})
    log_path = log_dir / f"{name}-{port}.log"
    process = ManagedProcess(name, module, list(args or []), environment, port, log_path)
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
) -> ManagedProcess:
    """Start ``python -m realtime_gateway`` with test settings plus ``env`` (``RT_*`` names)."""
    settings = {
        "RT_REDIS_URL": redis_url,
        "RT_JWT_SECRET": JWT_SECRET,
        "RT_GATEWAY_ID": gateway_id,
        "RT_REQUEST_TIMEOUT": "2",
        "RT_SHUTDOWN_GRACE": "3",
        "RT_CLOSE_TIMEOUT": "2",
        # Every test speaks from 127.0.0.1: one module's bad tokens must not slow the next
        # test's authentications (tests/e2e/test_edge.py sets its own per-address limits).
        "RT_AUTH_FAILURE_BURST": "100000",
        # The stub services' request types, which the gateway refuses unless told of them.
        "RT_CLIENT_REQUESTS": STUB_REQUESTS,
        **(env or {}),
    }
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
