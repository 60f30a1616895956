"""Bidding in the demo app: two pages on one auction, from the first bid to the winner."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import OpenPage
from tests.browser.support import TIMEOUT_MS, show_new_auction
from tests.support.system import System


@pytest.mark.timeout(90)
def test_a_bid_moves_price_and_minimum_elsewhere_and_the_close_names_the_winner(
    open_page: OpenPage, system: System
) -> None:
    """A bid moves price and minimum in the other page, a too-low bid shows the service's error,
    a late bid extends, and the close shows the winner."""
    alice = open_page("alice")
    bob = open_page("bob")
    # Every bid in its whole life is late (window 8 s), and moves the end 9 s past itself.
    show_new_auction(
        system.ports["bids"],
        [alice, bob],
        id="lamp",
        title="Brass lamp",
        starting_price=2500,
        increment=100,
        duration_s=8,
        extend_window=8,
        extend_by=9,
    )
    expect(bob.auction("lamp").locator(".ends")).to_have_text(re.compile(r"Ends in 0:0\d"))

    alice.bid("lamp", "25.00")
    lamp = bob.auction("lamp")
    expect(lamp.locator(".price")).to_have_text("Current bid 25.00 by alice", timeout=TIMEOUT_MS)
    expect(lamp.locator(".minimum")).to_have_text("Minimum bid 26.00")
    expect(lamp.locator(".bids")).to_contain_text("Late bid: extended to")

    bob.bid("lamp", "25.50")
    expect(lamp.get_by_role("alert")).to_have_text(
        re.compile(r"lowest acceptable bid is 2600.*bid_too_low")
    )
    bob.bid("lamp", "26.00")
    expect(alice.auction("lamp").locator(".price")).to_have_text("Current bid 26.00 by bob")
    expect(alice.auction("lamp").locator(".minimum")).to_have_text("Minimum bid 27.00")

    closed = "Closed: bob won at 26.00"
    expect(alice.auction("lamp").locator(".winner")).to_have_text(closed, timeout=20_000)
    expect(lamp.locator(".winner")).to_have_text("Closed: bob (you) won at 26.00")
    expect(alice.auction("lamp").get_by_role("button", name="Place bid")).to_be_disabled()


def test_two_windows_chat_see_each_other_and_bid_on_a_demo_auction(open_page: OpenPage) -> None:
    """The README's demo: two windows chat, list each other as present, and bid on demo-watch."""
    alice = open_page("alice")
    bob = open_page("bob")
    alice.enter("general")
    bob.enter("general")
    alice.send("shall we bid on the watch?")
    bob.send("yes, I start at 100")
    expect(alice.present.locator("li")).to_have_text(["alice (you)", "bob"])
    bob.bid("demo-watch", "100")
    watch = alice.auction("demo-watch")
    expect(watch.locator(".price")).to_have_text("Current bid 100.00 by bob", timeout=TIMEOUT_MS)
    alice.bid("demo-watch", "105")
    expect(bob.auction("demo-watch").locator(".price")).to_have_text("Current bid 105.00 by alice")
    expect(alice.messages).to_have_text(["shall we bid on the watch?", "yes, I start at 100"])
