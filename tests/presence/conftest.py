"""Fixtures of the presence tests: a Redis emptied once per module, and real processes.

``gateways`` and ``presence`` are the usual set-up of a module (test_read_your_writes.py
builds its own).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.presence.support import Cluster
from tests.support.launcher import module_processes
from tests.support.processes import ManagedProcess, wait_all_ready


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, bus_url: str, log_dir: Path) -> Iterator[Cluster]:
    """Starts this module's processes; stops them (SIGTERM, then SIGKILL) when it ends."""
    with module_processes(Cluster, request, bus_url, log_dir) as started:
        yield started


@pytest.fixture(scope="module")
def gateways(cluster: Cluster) -> tuple[ManagedProcess, ManagedProcess]:
    """Two gateways, one presence instance and stub owners of auctions and chat rooms."""
    processes = [
        cluster.gateway(wait=False),
        cluster.gateway(wait=False),
        cluster.presence(wait=False),
        cluster.owner("bids", wait=False),
        cluster.owner("chat", wait=False),
    ]
    wait_all_ready(processes)
    return processes[0], processes[1]


@pytest.fixture(scope="module")
def presence(cluster: Cluster, gateways: tuple[ManagedProcess, ManagedProcess]) -> ManagedProcess:
    """The module's first presence instance."""
    return next(p for p in cluster.processes if p.module == "presence_service")
