"""Fixtures of the browser tests: the system as ``scripts/run`` starts it, and Chromium.

Each module gets the services (one ``scripts/launch.py``) and two gateways (a launcher each,
so that one can be killed and started again) on the module's Redis and free ports. Pages are
made by :func:`open_page`; at the end of a test each one's screenshot is written to
``test-results/browser/<test>/<user>.png`` and its console must hold no error.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Playwright, ViewportSize, sync_playwright

from tests.browser.support import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, DemoPage
from tests.support.processes import REPO_ROOT
from tests.support.system import System


#: Where screenshots go, one folder per test (CI may keep it as an artifact).
RESULTS = REPO_ROOT / "test-results" / "browser"
PHONE: ViewportSize = {"width": 390, "height": 844}
DESKTOP: ViewportSize = {"width": 1280, "height": 860}

OpenPage = Callable[..., DemoPage]


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Playwright's driver, per module: its sync API keeps an event loop marked as running
    while it is open, which would stop every asyncio test that runs after it."""
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    """Debian's headless Chromium (``scripts/test`` installs it when missing)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/test installs it (apt-get install chromium)")
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield chromium
    chromium.close()


@pytest.fixture(scope="module")
def system(request: pytest.FixtureRequest, bus_url: str, log_dir: Path) -> Iterator[System]:
    """Services and two gateways, in development mode, on the module's Redis."""
    prefix = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    started = System(bus_url, log_dir, prefix)
    try:
        yield started.start(gateways=2)
    finally:
        started.stop()


@pytest.fixture
def open_page(
    request: pytest.FixtureRequest, browser: Browser, system: System
) -> Iterator[OpenPage]:
    """``open_page(user, gateway=0, phone=False)``: a signed-in demo page in a new context."""
    pages: list[DemoPage] = []

    def open_one(user: str, gateway: int = 0, *, phone: bool = False) -> DemoPage:
        context = browser.new_context(viewport=PHONE if phone else DESKTOP)
        context.set_default_timeout(TIMEOUT_MS)
        page = DemoPage.open(context, user, system.base_url(gateway))
        pages.append(page)
        return page.login()

    yield open_one
    shots = RESULTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    errors = []
    for page in pages:
        page.finish(shots)
        errors += [f"{page.user}: {error}" for error in page.console_errors]
    assert not errors, "errors in the browser console:\n" + "\n".join(errors)
