"""The JavaScript client (clients/js/) against real processes: one pytest test per node file.

The module starts a private Redis, a chat and a bids service and a shared gateway, plus the
control API of tests/client/control.py (through which node tests start gateways they may kill
and replace), then runs ``node --test <file>`` with their addresses in ``RT_TEST_*``
variables. A failing node test fails its pytest test with node's output.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import ClassVar

import pytest

from tests.bids.support import ADMIN_TOKEN, Launcher as BidsLauncher
from tests.client.control import Control, serve_control
from tests.support.launcher import module_processes
from tests.support.processes import JWT_SECRET, REPO_ROOT, ManagedProcess, wait_all_ready


CLIENT_DIR = REPO_ROOT / "clients" / "js"
NODE_TESTS = sorted((CLIENT_DIR / "test").glob("*.test.js"))
#: A node file's whole run; its own tests use deadlines of a few seconds each.
NODE_TIMEOUT = 150.0


class Launcher(BidsLauncher):
    """Gateways in development mode (for /dev/token), chat and bids services."""

    gateway_env: ClassVar[Mapping[str, str]] = {"RT_DEV": "1", "RT_REQUEST_TIMEOUT": "2"}

    def chat(self) -> ManagedProcess:
        return self.service("chat_service", "chat", {"RT_CLAIM_INTERVAL": "0.2"}, wait=False)


@pytest.fixture(scope="module")
def launcher(request: pytest.FixtureRequest, bus_url: str, log_dir: Path) -> Iterator[Launcher]:
    with module_processes(Launcher, request, bus_url, log_dir) as started:
        yield started


@pytest.fixture(scope="module")
def stack(launcher: Launcher) -> dict[str, ManagedProcess]:
    """The processes every node test shares: chat, bids, and a gateway."""
    started = {
        "chat": launcher.chat(),
        "bids": launcher.bids(wait=False),
        "gateway": launcher.gateway(wait=False),
    }
    wait_all_ready(list(started.values()))
    return started


@pytest.fixture(scope="module")
def control(launcher: Launcher, bus_url: str) -> Iterator[tuple[Control, str]]:
    """The control API (tests/client/control.py) and its URL."""
    started = Control(launcher, bus_url)
    with serve_control(started) as url:
        yield started, url


@pytest.fixture
def node_env(
    stack: dict[str, ManagedProcess], control: tuple[Control, str]
) -> Iterator[dict[str, str]]:
    """The variables the node tests read (clients/js/test/support.js); after the test, what
    it paused is resumed and the gateways it started are stopped."""
    if shutil.which("node") is None or not (CLIENT_DIR / "node_modules" / "ws").is_dir():
        pytest.fail("node or clients/js/node_modules is missing: run scripts/test (it runs npm ci)")
    gateway, controller = stack["gateway"], control[0]
    try:
        yield {
            **os.environ,
            "RT_TEST_GATEWAY_URL": gateway.ws_url,
            "RT_TEST_GATEWAY_HTTP": gateway.base_url,
            "RT_TEST_JWT_SECRET": JWT_SECRET,
            "RT_TEST_CONTROL_URL": control[1],
            "RT_TEST_CHAT_PID": str(stack["chat"].pid),
            "RT_TEST_BIDS_PID": str(stack["bids"].pid),
            "RT_TEST_BIDS_HTTP": stack["bids"].base_url,
            "RT_TEST_BIDS_ADMIN_TOKEN": ADMIN_TOKEN,
        }
    finally:
        controller.reset()


def test_node_tests_exist() -> None:
    """The node test files are found, so the parametrized test below cannot pass vacuously."""
    assert len(NODE_TESTS) >= 3, NODE_TESTS


@pytest.mark.timeout(NODE_TIMEOUT + 30)
@pytest.mark.parametrize("script", NODE_TESTS, ids=lambda path: path.name)
def test_node(script: Path, node_env: dict[str, str]) -> None:
    """Every test of one clients/js/test file passes against the real processes."""
    # A session of its own: node --test runs each file in a child process, and a run over
    # time is stopped with its children (by the group of the PID started here).
    process = subprocess.Popen(
        ["node", "--test", "--test-reporter=spec", str(script.relative_to(CLIENT_DIR))],
        cwd=CLIENT_DIR,
        env=node_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=NODE_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, _ = process.communicate()
        pytest.fail(f"node --test {script.name} ran over {NODE_TIMEOUT} s:\n{stdout}")
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    print(result.stdout, result.stderr)  # shown by pytest -rP
    if result.returncode != 0:
        pytest.fail(f"node --test {script.name} failed:\n{result.stdout}\n{result.stderr}")
