"""Fixtures of the presence tests: a Redis emptied once per module, and real processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.presence.support import Cluster
from tests.support.launcher import module_processes


@pytest.fixture(scope="module")
def cluster(request: pytest.FixtureRequest, bus_url: str, log_dir: Path) -> Iterator[Cluster]:
    """Starts this module's processes; stops them (SIGTERM, then SIGKILL) when it ends."""
    with module_processes(Cluster, request, bus_url, log_dir) as started:
        yield started
