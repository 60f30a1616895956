"""Start a real process (a gateway, a service, the launcher) and wait until it is ready.

The one way the tests, the benchmarks and the load tests run the project's processes. Each
runs from the checkout (or another one, ``cwd``) in a session of its own (a Ctrl-C meant for
the caller must not kill it before the caller stops it), with stdout and stderr in a log
file, and an environment made of the caller's overrides on top of ours minus every ``RT_*``
variable (a developer's settings never leak in). Ready means ``/readyz`` answers 200. A
process is stopped by PID: SIGTERM, then SIGKILL after a deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from devtools.net import LOOPBACK
from devtools.waiting import Deadline


__all__ = [
    "REPO_ROOT",
    "ManagedProcess",
    "ProcessError",
    "environment",
    "http_get",
    "python_command",
    "wait_all_ready",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
_POLL = 0.05


class ProcessError(RuntimeError):
    """A process did not start, or misbehaved while stopping."""


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    """GET ``url``; return the status and body (a refused connection is status 0)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, OSError) as exc:
        return 0, repr(exc)


def environment(overrides: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without its ``RT_*`` variables, plus ``overrides``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RT_")}
    env.update(overrides)
    return env


def python_command(
    module: str, args: Sequence[str] = (), *, profile: Path | None = None
) -> list[str]:
    """``python -m module args``, under cProfile writing to ``profile`` when given."""
    profiler = ["-m", "cProfile", "-o", str(profile)] if profile is not None else []
    return [sys.executable, *profiler, "-m", module, *args]


class ManagedProcess:
    """One process listening on ``port`` of the loopback, its output appended to ``log``."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        env: Mapping[str, str],
        port: int,
        log: Path,
        cwd: Path = REPO_ROOT,
    ) -> None:
        self.name = name
        self.env = dict(env)
        self.port = port
        self.log_path = log
        self._log_file = log.open("ab")
        self.process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.process.pid

    def __repr__(self) -> str:
        return f"<{self.name} pid {self.pid} port {self.port}>"

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{LOOPBACK}:{self.port}/ws"

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

    def ready(self) -> bool:
        return self.get("/readyz", timeout=1.0)[0] == 200

    def wait_ready(self, timeout: float) -> None:
        """Return once :meth:`ready`.

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

    def stop(self, timeout: float, *, signum: int | None = None) -> int:
        """``signum`` (SIGTERM), wait up to ``timeout`` seconds, else SIGKILL; return the exit
        code. Idempotent: a process that already exited just reports its code."""
        try:
            self.signal(signal.SIGTERM if signum is None else signum)
            code = self.wait(timeout)
            if code is None:
                os.kill(self.pid, signal.SIGKILL)
                code = self.process.wait(timeout=timeout)
            return code
        finally:
            self._log_file.close()


def wait_all_ready(processes: Sequence[ManagedProcess], timeout: float) -> None:
    """Wait until every process is :meth:`~ManagedProcess.ready`, all within one deadline.

    Raises:
        ProcessError: one exited or was still not ready at the deadline.
    """
    deadline = Deadline(timeout)
    waiting = list(processes)
    while waiting:
        for process in list(waiting):
            if not process.running:
                raise ProcessError(f"{process.name} exited while starting: {process.describe()}")
            if process.ready():
                waiting.remove(process)
        if not waiting:
            return
        if deadline.expired():
            details = "\n".join(process.describe() for process in waiting)
            raise ProcessError(f"not ready within {timeout} s:\n{details}")
        time.sleep(_POLL)
