"""``scripts/run --cluster``: the system on a private Redis Cluster, its nodes printed."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import ClusterNode

from devtools.net import free_ports
from devtools.processes import environment
from devtools.registry import routes_to
from tests.support.processes import REPO_ROOT
from tests.support.waiting import MS, wait_until_blocking


pytestmark = pytest.mark.cluster

LAUNCH = REPO_ROOT / "scripts" / "launch.py"
PASSWORD_FILE = REPO_ROOT / ".dev" / "redis" / "default.password"
#: The processes it starts, each on a port of the test's.
PORTS = ("RT_PORT", "RT_CHAT_PORT", "RT_PRESENCE_PORT", "RT_BIDS_PORT")


@pytest.fixture
def launched(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, int]]:
    """``launch.py --cluster --replicas 0`` running, with its output in a file; stopped by PID."""
    log = tmp_path / "launch.log"
    ports = dict(zip(PORTS, free_ports(len(PORTS)), strict=True))
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(LAUNCH), "--cluster", "--replicas", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=environment({"NO_COLOR": "1", **{name: str(port) for name, port in ports.items()}}),
            start_new_session=True,
        )
    try:
        yield process, log, ports["RT_PORT"]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_run_cluster_runs_the_system_on_a_protected_cluster_and_stops_it(
    launched: tuple[subprocess.Popen[bytes], Path, int],
) -> None:
    """The nodes it prints form a cluster whose default user needs the password; the gateway
    and the services run on it (the poll service left out, said so); SIGTERM stops all."""
    process, log, gateway_port = launched
    gateway = f"http://127.0.0.1:{gateway_port}"

    def routing() -> bool:
        assert process.poll() is None, log.read_text()
        return routes_to(gateway, 3)

    wait_until_blocking(routing, "the gateway to route to the services", within=60_000 * MS)
    output = log.read_text()
    assert "left out: the poll service does not run on a Redis Cluster yet" in output, output
    assert "poll " not in output.replace("poll service", "")
    ports = [int(port) for port in re.findall(r"redis://127\.0\.0\.1:(\d+)/0  master", output)]
    assert len(ports) == 3
    password = PASSWORD_FILE.read_text().strip()
    seeds = [ClusterNode("127.0.0.1", port) for port in ports]  # type: ignore[no-untyped-call]
    with redis.RedisCluster(startup_nodes=seeds, password=password) as client:
        assert client.cluster_info()["cluster_state"] == "ok"
        # Each service reads one stream per master.
        streams = [name.decode() for name in client.scan_iter(match="svc:*", _type="stream")]
        assert {"svc:{bids.0}:requests", "svc:{bids.2}:requests"} <= set(streams), streams
    with (
        redis.Redis(port=ports[0]) as anonymous,
        pytest.raises(redis.AuthenticationError),
    ):
        anonymous.ping()

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert "stopped the cluster" in log.read_text()
    with (
        redis.Redis(port=ports[0], socket_connect_timeout=1) as gone,
        pytest.raises(redis.ConnectionError),
    ):
        gone.ping()


def test_run_cluster_refuses_the_poll_service_by_name() -> None:
    result = subprocess.run(
        [sys.executable, str(LAUNCH), "--cluster", "poll"],
        capture_output=True,
        text=True,
        env=environment({}),
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "the poll service does not run on a Redis Cluster yet" in result.stderr
