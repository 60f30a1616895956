"""Driving the demo app in a real Chromium: one :class:`DemoPage` per user and browser context.

Every wait is Playwright's own (``expect`` or ``wait_for`` with a timeout), never a sleep.
"""

from __future__ import annotations

import json
import re
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import BrowserContext, ConsoleMessage, Error, Locator, Page, expect

from tests.support.system import BIDS_ADMIN_TOKEN_PATH


__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "TIMEOUT_MS",
    "DemoPage",
    "create_auction",
    "get_auction",
    "show_new_auction",
]

#: Debian's Chromium: Playwright's own browser download cannot work on these machines.
CHROMIUM = "/usr/bin/chromium"
#: Headless on a closed network: without the background-networking switches Chromium keeps
#: trying to reach Google's servers, and its connections are refused.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: How long one expected change on a page may take (ms).
TIMEOUT_MS = 10_000
#: What a browser logs by itself while the gateway is down (a refused reconnect or token
#: fetch): expected in the tests that stop a gateway, and nowhere else.
OUTAGE_CONSOLE = re.compile(
    r"WebSocket connection to '.*' failed|Failed to load resource: net::ERR_CONNECTION_REFUSED"
)


@dataclass
class DemoPage:
    """The demo app of one user, in its own browser context."""

    user: str
    context: BrowserContext
    page: Page
    base_url: str
    console_errors: list[str] = field(default_factory=list)
    outage_expected: bool = False

    @classmethod
    def open(cls, context: BrowserContext, user: str, base_url: str) -> DemoPage:
        page = context.new_page()
        demo = cls(user, context, page, base_url)
        page.on("console", demo._on_console)
        page.on("pageerror", lambda error: demo.console_errors.append(f"pageerror: {error}"))
        return demo

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        if self.outage_expected and OUTAGE_CONSOLE.search(message.text):
            return
        self.console_errors.append(f"console: {message.text} at {message.location}")

    # Actions.

    def login(self) -> DemoPage:
        """Load ``/``, sign in with a name (development mode), wait for the open badge."""
        self.page.goto(self.base_url + "/")
        self.page.get_by_label("Your name").fill(self.user)
        self.page.get_by_role("button", name="Connect").click()
        expect(self.badge).to_have_text("open", timeout=TIMEOUT_MS)
        expect(self.page.locator("#whoami")).to_have_text(f"signed in as {self.user}")
        return self

    def enter(self, room: str) -> None:
        """Join ``room`` from the join box; wait until the room shows itself as present."""
        self.page.get_by_label("Room", exact=True).fill(room)
        self.page.get_by_role("button", name="Join", exact=True).click()
        expect(self.page.locator("#room-title")).to_have_text(re.compile(f"^# {room}"))
        expect(self.present).to_contain_text(f"{self.user} (you)", timeout=TIMEOUT_MS)

    def send(self, text: str) -> None:
        """Type ``text`` and send it; wait until the page shows it."""
        box = self.page.get_by_label("Message", exact=True)
        box.fill(text)
        self.page.get_by_role("button", name="Send").click()
        expect(box).to_have_value("", timeout=TIMEOUT_MS)
        expect(self.messages.filter(has_text=text)).to_have_count(1, timeout=TIMEOUT_MS)

    def auction(self, auction_id: str) -> Locator:
        """The card of one auction (a Playwright locator)."""
        return self.page.locator(f'article[data-auction="{auction_id}"]')

    def bid(self, auction_id: str, amount: str) -> None:
        card = self.auction(auction_id)
        card.get_by_label("Your bid").fill(amount)
        card.get_by_role("button", name="Place bid").click()

    # What it shows.

    @property
    def badge(self) -> Locator:
        return self.page.locator("#badge")

    @property
    def notice(self) -> Locator:
        return self.page.locator("#notice")

    @property
    def present(self) -> Locator:
        return self.page.get_by_role("list", name="Here now")

    @property
    def messages(self) -> Locator:
        return self.page.locator("#messages .text")

    def message_texts(self) -> list[str]:
        return self.messages.all_text_contents()

    # The end of a test.

    def finish(self, shots: Path) -> None:
        """Write a screenshot of the page under ``shots``, then close its context."""
        shots.mkdir(parents=True, exist_ok=True)
        try:
            self.page.screenshot(path=shots / f"{self.user}.png", full_page=True)
        except Error:
            pass  # a page that crashed has no screenshot; its test already failed
        self.context.close()


def create_auction(bids_port: int, **body: Any) -> dict[str, Any]:
    """Create an auction through the bids service's admin API (the launcher's dev token)."""
    token = BIDS_ADMIN_TOKEN_PATH.read_text().strip()
    request = urllib.request.Request(
        f"http://127.0.0.1:{bids_port}/auctions",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        state: dict[str, Any] = json.loads(response.read())
    return state


def show_new_auction(bids_port: int, pages: list[DemoPage], **body: Any) -> None:
    """Create an auction, then have each page list it (Refresh) with its starting minimum."""
    create_auction(bids_port, **body)
    minimum = f"Minimum bid {body['starting_price'] / 100:.2f}"
    for page in pages:
        page.page.get_by_role("button", name="Refresh").click()
        expect(page.auction(body["id"]).locator(".minimum")).to_have_text(minimum)


def get_auction(bids_port: int, auction_id: str) -> dict[str, Any]:
    """An auction's state from the admin API."""
    token = BIDS_ADMIN_TOKEN_PATH.read_text().strip()
    request = urllib.request.Request(
        f"http://127.0.0.1:{bids_port}/auctions/{auction_id}",
        headers={"Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        state: dict[str, Any] = json.loads(response.read())
    return state
