"""Fixtures of the end-to-end tests: a Redis flushed once per module, and real processes.

Processes are module-scoped (started by each module's fixtures through :class:`Launcher`) so
that tests share them where their settings allow. Redis is flushed when a module starts, not
before each test: a flush under a running service would delete its consumer group. Tests of
one module stay apart by using channel names and markers of their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.launcher import ModuleProcesses, module_processes


class Launcher(ModuleProcesses):
    """Starts the gateways and stub services of one test module and stops them all at its end."""


@pytest.fixture(scope="module")
def launcher(request: pytest.FixtureRequest, bus_url: str, log_dir: Path) -> Iterator[Launcher]:
    """Starts processes for this module; stops them (SIGTERM, then SIGKILL) when it ends."""
    with module_processes(Launcher, request, bus_url, log_dir) as started:
        yield started
