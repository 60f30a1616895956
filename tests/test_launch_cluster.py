"""``scripts/run --cluster``: a private Redis Cluster to try, with its seeds printed."""

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

from devtools.cluster_launch import NOT_YET
from devtools.processes import environment
from tests.support.processes import REPO_ROOT
from tests.support.waiting import MS, wait_until_blocking


pytestmark = pytest.mark.cluster

LAUNCH = REPO_ROOT / "scripts" / "launch.py"
PASSWORD_FILE = REPO_ROOT / ".dev" / "redis" / "default.password"


@pytest.fixture
def launched(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """``launch.py --cluster --replicas 0`` running, with its output in a file; stopped by PID."""
    log = tmp_path / "launch.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(LAUNCH), "--cluster", "--replicas", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=environment({"NO_COLOR": "1"}),
            start_new_session=True,
        )
    try:
        yield process, log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_run_cluster_prints_seeds_of_a_protected_cluster_and_stops_it(
    launched: tuple[subprocess.Popen[bytes], Path],
) -> None:
    """The seeds it prints lead to a cluster whose default user needs the password; it says
    that nothing runs on it yet, and SIGTERM stops every node."""
    process, log = launched
    wait_until_blocking(
        lambda: NOT_YET in log.read_text() or process.poll() is not None,
        "the cluster's seeds",
        within=60_000 * MS,
    )
    output = log.read_text()
    assert NOT_YET in output, output
    ports = [int(port) for port in re.findall(r"redis://127\.0\.0\.1:(\d+)/0  master", output)]
    assert len(ports) == 3
    password = PASSWORD_FILE.read_text().strip()
    seeds = [ClusterNode("127.0.0.1", port) for port in ports]  # type: ignore[no-untyped-call]
    with redis.RedisCluster(startup_nodes=seeds, password=password) as client:
        assert client.cluster_info()["cluster_state"] == "ok"
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
