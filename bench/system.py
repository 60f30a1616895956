"""The machine side of the fan-out benchmark: the gateway process, CPU pinning, /proc."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from common.settings import Secret
from devtools.net import LOOPBACK, free_port
from devtools.processes import (
    REPO_ROOT,
    ManagedProcess,
    ProcessError,
    environment,
    python_command,
    wait_all_ready,
)


__all__ = [
    "CAN_PIN",
    "GATEWAY_CPU",
    "LOADGEN_CPU",
    "BenchError",
    "GatewayProcess",
    "cpu_times",
    "free_port",
    "out",
    "process_cpu_ns",
    "process_times",
    "progress",
    "raise_open_files_limit",
    "rss_bytes",
]

GATEWAY_CPU, LOADGEN_CPU = 0, 1
READY_TIMEOUT = 20.0
SETTLE_TIMEOUT = 10.0

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """The benchmark could not run (a process failed, connections were refused...)."""


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def out(line: str = "") -> None:
    print(line, flush=True)


def process_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process, all its threads (``/proc/<pid>/stat``)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) / _CLOCK_TICKS, int(fields[12]) / _CLOCK_TICKS


def process_cpu_ns(pid: int) -> int:
    """CPU nanoseconds of a process, all its threads (``/proc/<pid>/task/*/schedstat``): the
    scheduler's own count, where ``/proc/<pid>/stat`` rounds to clock ticks (10 ms), too
    coarse for what a Redis spends on a few thousand events."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that just ended
            total += int((task / "schedstat").read_text().split()[0])
    return total


def cpu_times(cpu: int) -> tuple[float, float]:
    """Busy and softirq seconds of one CPU, whatever ran on it (``/proc/stat``)."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            user, nice, system, _, _, irq, softirq = (int(v) for v in line.split()[1:8])
            return (user + nice + system + irq + softirq) / _CLOCK_TICKS, softirq / _CLOCK_TICKS
    raise BenchError(f"no cpu{cpu} in /proc/stat")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise BenchError(f"no VmRSS for pid {pid}")


#: Whether both CPUs are ours to pin to (decided before this process pins itself).
CAN_PIN = {GATEWAY_CPU, LOADGEN_CPU} <= os.sched_getaffinity(0)


class GatewayProcess:
    """``python -m realtime_gateway`` of ``code_root``'s checkout on a free port, pinned with
    taskset, logging to a file."""

    def __init__(
        self,
        redis_env: Mapping[str, str],
        secret: Secret,
        *,
        max_connections: int,
        code_root: Path = REPO_ROOT,
    ) -> None:
        # Only the variables set here: an RT_* of the caller must not change what is measured.
        port = free_port()
        env = environment(
            dict(
                **redis_env,
                # ``code_root`` first on the path (and the working directory): another
                # checkout's gateway wins over the editable install of this one (--compare).
                PYTHONPATH=str(code_root),
                RT_JWT_SECRET=secret.reveal(),
                RT_HOST=LOOPBACK,
                RT_PORT=str(port),
                RT_GATEWAY_ID="gw-bench",
                RT_LOG_LEVEL="warning",
                RT_LOG_FORMAT="console",
                RT_MAX_CONNECTIONS=str(max_connections),
                RT_RATE_LIMIT="100000",
                RT_RATE_BURST="100000",
                RT_OUTBOX_MAX_MESSAGES="100000",
                RT_OUTBOX_MAX_BYTES=str(256 * 1024 * 1024),
                RT_SHUTDOWN_GRACE="2",
                # Every client is on one loopback address: per-address edge limits off.
                RT_CONNECT_RATE="100000",
                RT_CONNECT_BURST="100000",
                RT_MAX_UNAUTHENTICATED=str(max_connections),
                RT_MAX_UNAUTHENTICATED_PER_IP=str(max_connections),
            )
        )
        command = python_command("realtime_gateway")
        if CAN_PIN:
            command = ["taskset", "-c", str(GATEWAY_CPU), *command]
        # Removed in stop(), with the log in it.
        self._log_dir = tempfile.TemporaryDirectory(prefix="bench-gateway-")
        log = Path(self._log_dir.name) / "gateway.log"
        self._process = ManagedProcess(
            "gateway", command, env=env, port=port, log=log, cwd=code_root
        )
        self.port = port
        self.pid = self._process.pid

    async def wait_ready(self) -> None:
        """Return once ``/readyz`` answers 200."""
        try:
            await asyncio.to_thread(wait_all_ready, [self._process], READY_TIMEOUT)
        except ProcessError as exc:
            raise BenchError(str(exc)) from None

    def cpu_seconds(self) -> float:
        return sum(process_times(self.pid))

    def rss_bytes(self) -> int:
        return rss_bytes(self.pid)

    def log_tail(self, lines: int = 10) -> list[str]:
        return self._process.log_tail(lines).splitlines()

    async def settle(self) -> None:
        """Return once the gateway used at most one clock tick of CPU in 0.25 s (or 10 s)."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        before = self.cpu_seconds()
        while time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            now = self.cpu_seconds()
            if now - before <= 1.0 / _CLOCK_TICKS:
                return
            before = now

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s. Idempotent; prints the gateway's log if any."""
        self._process.stop(15.0)
        tail = self.log_tail(20)
        if tail:
            progress(f"gateway log (last {len(tail)} lines):\n  " + "\n  ".join(tail))
        self._log_dir.cleanup()


def raise_open_files_limit(needed: int) -> int:
    """Raise this process's RLIMIT_NOFILE (children inherit it) to at least ``needed``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return soft
    if hard != resource.RLIM_INFINITY and hard < needed:
        with contextlib.suppress(ValueError, OSError):  # needs CAP_SYS_RESOURCE
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            return needed
    target = needed if hard == resource.RLIM_INFINITY else hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        raise BenchError(f"need {needed} open files, the hard limit is {hard}: raise it")
    return target
