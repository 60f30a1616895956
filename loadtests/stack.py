"""A private stack on loopback for load tests and benchmarks: Redis (one server, or a Redis
Cluster), gateways, bids instances.

Everything listens on 127.0.0.1 on free ports; the JWT secret and the admin token are made
for the run. Processes are stopped by PID (SIGTERM, then SIGKILL after a deadline), Redis
last. Logs go to ``log_dir``.
"""

from __future__ import annotations

import functools
import os
import secrets
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from common.auth import issue_token
from common.codec import dump_client, load_client
from common.settings import Secret
from devtools.net import free_port
from devtools.private_redis import SINGLE, PrivateRedis, RedisLayout
from devtools.processes import (
    REPO_ROOT,
    ManagedProcess,
    environment,
    python_command,
    wait_all_ready,
)
from devtools.registry import routes_to
from devtools.waiting import wait_until_blocking


__all__ = ["REPO_ROOT", "Process", "Stack", "cpu_seconds"]

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        # The command name may hold spaces: the fields after it start after the last ')'.
        fields = stat.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def http(
    method: str, url: str, body: dict[str, Any] | None = None, token: str | None = None
) -> tuple[int, dict[str, Any]]:
    """One JSON request; returns the status and the decoded JSON body ({} when there is none)."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else dump_client(body)
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5.0) as response:
            status, raw = int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    return status, load_client(raw) if raw else {}


class Process(ManagedProcess):
    """``python -m <module>`` on a free port with ``RT_*`` settings, its output in a log file."""

    def __init__(
        self,
        name: str,
        module: str,
        env: Mapping[str, str],
        log_dir: Path,
        *,
        profile: Path | None = None,
        code_root: Path = REPO_ROOT,
    ) -> None:
        port = free_port()
        # ``code_root`` first on the path (and the working directory): another checkout's
        # packages win over the editable install of this one (bench/compare.py).
        settings = environment(
            {"RT_HOST": "127.0.0.1", "RT_PORT": str(port), **env, "PYTHONPATH": str(code_root)}
        )
        profile_file = profile / f"{name}.prof" if profile is not None else None
        command = python_command(module, profile=profile_file)
        log = log_dir / f"{name}.log"
        super().__init__(name, command, env=settings, port=port, log=log, cwd=code_root)

    @property
    def url(self) -> str:
        return self.base_url

    def stop(self, timeout: float = STOP_TIMEOUT, *, signum: int | None = None) -> int:
        return super().stop(timeout, signum=signum)


class Stack:
    """Redis (``redis``: one server or a cluster), ``gateways`` gateways and ``instances`` bids
    instances, started together."""

    def __init__(
        self,
        log_dir: Path,
        *,
        gateways: int = 1,
        instances: int = 1,
        gateway_env: Mapping[str, str] | None = None,
        bids_env: Mapping[str, str] | None = None,
        profile: Path | None = None,
        code_root: Path = REPO_ROOT,
        redis: RedisLayout = SINGLE,
    ) -> None:
        self.log_dir = log_dir
        self.jwt_secret = secrets.token_hex(32)
        self.admin_token = secrets.token_hex(16)
        self.redis = PrivateRedis(redis)
        self.gateways: list[Process] = []
        self.instances: list[Process] = []
        self._gateway_count = gateways
        self._instance_count = instances
        self._gateway_env = dict(gateway_env or {})
        self._bids_env = dict(bids_env or {})
        #: Where cProfile writes each Python process's profile, if anywhere.
        self.profile = profile
        #: The checkout whose gateway and bids code runs (the driver's is always this one).
        self.code_root = code_root

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.redis.start()
        common = {**self.redis.env, "RT_LOG_LEVEL": "warning"}
        for index in range(self._gateway_count):
            env = {
                **common,
                "RT_JWT_SECRET": self.jwt_secret,
                "RT_GATEWAY_ID": f"gw-{index + 1}",
                # Every simulated user is on one loopback address: per-address limits off.
                "RT_CONNECT_RATE": "100000",
                "RT_CONNECT_BURST": "100000",
                "RT_MAX_UNAUTHENTICATED_PER_IP": "100000",
                **self._gateway_env,
            }
            name = f"gateway-{index + 1}"
            self.gateways.append(
                Process(
                    name,
                    "realtime_gateway",
                    env,
                    self.log_dir,
                    profile=self.profile,
                    code_root=self.code_root,
                )
            )
        for _ in range(self._instance_count):
            self.add_instance(wait=False)
        self.wait_ready([*self.gateways, *self.instances])
        if self.instances:
            self.wait_routed(1)

    def add_instance(self, *, wait: bool = True) -> Process:
        index = len(self.instances) + 1
        env = {
            **self.redis.env,
            "RT_LOG_LEVEL": "warning",
            "RT_INSTANCE_ID": f"i{index}",
            "RT_BIDS_ADMIN_TOKEN": self.admin_token,
            # Each simulated bidder bids far faster than a person may (up to ~100/s in the
            # benchmark's closed loop): the per-user limit is still checked on every bid.
            "RT_BIDS_BID_RATE": "1000000",
            "RT_BIDS_BID_BURST": "1000000",
            **self._bids_env,
        }
        process = Process(
            f"bids-{index}",
            "bids_service",
            env,
            self.log_dir,
            profile=self.profile,
            code_root=self.code_root,
        )
        self.instances.append(process)
        if wait:
            self.wait_ready([process])
        return process

    def wait_ready(self, processes: list[Process]) -> None:
        wait_all_ready(processes, START_TIMEOUT)

    def wait_routed(self, services: int) -> None:
        """Wait until every gateway has read ``services`` live services in the registry (it
        may be ready before the services started beside it announced themselves)."""
        for gateway in self.gateways:
            wait_until_blocking(
                functools.partial(routes_to, gateway.url, services),
                "the gateway routing to the services",
                within=START_TIMEOUT,
            )

    def stop(self) -> None:
        for process in [*self.gateways, *self.instances]:
            process.stop()
        self.gateways.clear()
        self.instances.clear()
        self.redis.stop()

    # Helpers for drivers.

    def token(self, user: str, ttl: float = 3600.0) -> str:
        return issue_token(Secret(self.jwt_secret), user, ttl)

    @property
    def bids_partitions(self) -> int:
        """The bids service's partitions (``RT_BIDS_PARTITIONS`` of its settings)."""
        return int(self._bids_env.get("RT_BIDS_PARTITIONS", "1"))

    def create_auction(self, **body: Any) -> dict[str, Any]:
        status, answer = http(
            "POST", self.instances[0].url + "/auctions", body, token=self.admin_token
        )
        if status != 201:
            raise RuntimeError(f"creating an auction failed: {status} {answer}")
        return answer
