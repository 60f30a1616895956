"""Fixtures of the bids tests: a Redis emptied once per module, processes, clients.

Processes are module-scoped (each module starts its own gateways and bids instances through
:class:`Launcher`). Redis is flushed when a module starts, never under running services (a
flush deletes the consumer group); tests of one module stay apart by using auctions and users
of their own.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bids.support import Launcher
from tests.support.launcher import module_processes


@pytest.fixture(scope="module")
def launcher(request: pytest.FixtureRequest, bus_url: str, log_dir: Path) -> Iterator[Launcher]:
    """Starts processes for this module; stops them (SIGTERM, then SIGKILL) when it ends."""
    with module_processes(Launcher, request, bus_url, log_dir) as started:
        yield started


_names = itertools.count(1)


@pytest.fixture
def name(request: pytest.FixtureRequest) -> str:
    """A name unique in the session, for the auctions and users of one test."""
    return f"t{next(_names)}"
