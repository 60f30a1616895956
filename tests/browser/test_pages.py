"""The demo's pages as they load: no console error, a phone-sized window, and token mode."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.conftest import PHONE, RESULTS, OpenPage
from tests.browser.support import TIMEOUT_MS, DemoPage
from tests.support.client import make_token
from tests.support.processes import ManagedProcess, start_gateway
from tests.support.system import System


@pytest.fixture(scope="module")
def token_gateway(bus_url: str, log_dir: Path) -> Iterator[ManagedProcess]:
    """A gateway outside development mode (no /dev/token), on the module's Redis."""
    gateway = start_gateway(bus_url, log_dir=log_dir, gateway_id="gw-pages-token")
    try:
        yield gateway
    finally:
        gateway.stop()


def test_the_login_page_loads_without_console_errors(browser: Browser, system: System) -> None:
    """The page at / loads its modules and styles and asks for a name, with a clean console."""
    context = browser.new_context()
    page = DemoPage.open(context, "nobody", system.base_url())
    page.page.goto(system.base_url() + "/")
    expect(page.page.get_by_label("Your name")).to_be_visible()
    expect(page.page.get_by_label("Your token")).to_be_hidden()
    expect(page.badge).to_have_text("not connected")
    page.finish(RESULTS / "login")
    assert page.console_errors == []


def test_a_phone_sized_window_stacks_the_panels_and_still_chats_and_bids(
    open_page: OpenPage,
) -> None:
    """On a phone-sized window the chat sits above the auctions, and both work."""
    frank = open_page("frank", phone=True)
    frank.enter("phones")
    frank.send("sent from a phone")
    chat = frank.page.locator("#chat").bounding_box()
    auctions = frank.page.locator("#auctions").bounding_box()
    assert chat is not None
    assert auctions is not None
    assert auctions["y"] >= chat["y"] + chat["height"], "the panels should be stacked"
    assert chat["width"] <= PHONE["width"]
    assert auctions["width"] <= PHONE["width"]
    scroll_width = frank.page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= PHONE["width"], "nothing may stick out sideways"
    expect(frank.auction("demo-watch").locator(".minimum")).to_have_text("Minimum bid 100.00")


def test_outside_development_mode_the_page_asks_for_a_token(
    browser: Browser, token_gateway: ManagedProcess
) -> None:
    """Without development mode the page takes a token instead of a name, and connects with it."""
    context = browser.new_context()
    page = DemoPage.open(context, "erin", token_gateway.base_url)
    page.page.goto(token_gateway.base_url + "/")
    expect(page.page.get_by_label("Your name")).to_be_hidden()
    page.page.get_by_label("Your token").fill(make_token("erin"))
    page.page.get_by_role("button", name="Connect").click()
    expect(page.badge).to_have_text("open", timeout=TIMEOUT_MS)
    expect(page.page.locator("#whoami")).to_have_text("signed in as erin")
    page.finish(RESULTS / "token-mode")
    assert page.console_errors == []
