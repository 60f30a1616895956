"""A page across a gateway killed and started again: recovery of missed messages, retries.

Alice's page uses gateway 0, which the tests kill (SIGKILL) and start again on its port;
Bob's page uses gateway 1, which stays up.
"""

from __future__ import annotations

import time
from typing import Any, cast

import msgpack
import pytest
import redis
from playwright.sync_api import expect

from common.keys import request_stream
from tests.browser.conftest import RESULTS, OpenPage
from tests.browser.support import TIMEOUT_MS, get_auction, show_new_auction
from tests.chat.support import room_keys
from tests.support.system import System
from tests.support.waiting import wait_until_blocking


#: How long a page may take to show what it missed once its gateway is back (ms).
RECOVERY_MS = 30_000


def entries(bus: redis.Redis, stream: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """Every entry of a stream, oldest first."""
    return cast(list[tuple[bytes, dict[bytes, bytes]]], bus.xrange(stream))


def requests_in_stream(bus: redis.Redis, service: str, **data: Any) -> list[dict[str, Any]]:
    """The requests in ``svc:{<service>.0}:requests`` (the one partition the browser tests'
    services have) whose data has every field of ``data``."""
    found = []
    for _, fields in entries(bus, request_stream(service, 0)):
        request = msgpack.unpackb(fields[b"e"])
        if all(request["data"].get(name) == value for name, value in data.items()):
            found.append(request)
    return found


def all_handled(bus: redis.Redis, service: str) -> bool:
    """Every request of the service's stream was delivered to an instance and acknowledged."""
    groups = bus.xinfo_groups(request_stream(service, 0))
    return all(group["pending"] == 0 and group["lag"] == 0 for group in groups)


def test_a_page_shows_every_message_missed_while_its_gateway_was_down_once_in_order(
    open_page: OpenPage, system: System
) -> None:
    """After its gateway is killed and restarted, a page reconnects by itself and shows every
    message sent meanwhile once, in order, with a note that they were recovered."""
    alice = open_page("alice", gateway=0)
    bob = open_page("bob", gateway=1)
    alice.outage_expected = True
    alice.enter("recovery")
    bob.enter("recovery")
    bob.send("before")
    expect(alice.messages).to_have_text(["before"])

    system.kill_gateway(0)
    expect(alice.badge).to_have_text("reconnecting…")
    missed = [f"missed {n}" for n in range(1, 4)]
    for text in missed:
        bob.send(text)
    restart = time.monotonic()
    system.start_gateway_again(0)
    ready = time.monotonic()
    expect(alice.messages).to_have_text(["before", *missed], timeout=RECOVERY_MS)
    shown = time.monotonic()
    expect(alice.notice).to_have_text("Reconnected: 3 missed messages recovered in #recovery.")
    expect(alice.badge).to_have_text("open")
    expect(alice.present.locator("li")).to_have_text(["alice (you)", "bob"], timeout=TIMEOUT_MS)

    bob.send("after")
    expect(alice.messages).to_have_text(["before", *missed, "after"])

    timing = (
        f"gateway restart to recovered messages shown: {shown - restart:.2f} s "
        f"(gateway ready after {ready - restart:.2f} s, page caught up {shown - ready:.2f} s later)"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "recovery-timing.txt").write_text(timing + "\n")
    print(timing)


@pytest.mark.parametrize("service", ["chat", "bids"])
def test_a_request_retried_after_a_forced_reconnect_has_exactly_one_effect(
    open_page: OpenPage, system: System, bus_url: str, service: str
) -> None:
    """A chat.send or bids.place left unanswered when its gateway died is sent again with the
    same key after the page reconnects, and takes effect once."""
    alice = open_page("alice", gateway=0)
    bob = open_page("bob", gateway=1)
    alice.outage_expected = True
    bus = redis.Redis.from_url(bus_url)
    if service == "chat":
        alice.enter("retry")
        bob.enter("retry")
        request: dict[str, Any] = {"room": "retry", "text": "only once"}
    else:
        show_new_auction(
            system.ports["bids"],
            [alice, bob],
            id="retry-lamp",
            title="Lamp, bid on across a reconnect",
            starting_price=3000,
            increment=100,
            duration_s=600,
        )
        request = {"auction": "retry-lamp", "amount": 3000}

    # The service is frozen, so the first attempt waits in its stream without an answer.
    frozen = system.service(service)
    frozen.suspend()
    try:
        if service == "chat":
            alice.page.get_by_label("Message", exact=True).fill("only once")
            alice.page.get_by_role("button", name="Send").click()
        else:
            alice.bid("retry-lamp", "30.00")
        wait_until_blocking(
            lambda: len(requests_in_stream(bus, service, **request)) == 1, "the request"
        )
        system.kill_gateway(0)
        system.start_gateway_again(0)
        wait_until_blocking(
            lambda: len(requests_in_stream(bus, service, **request)) == 2,
            "the retry after the reconnect",
            within=RECOVERY_MS / 1000,
        )
        # Read while the service is still frozen: once it runs, it deletes what it handled.
        first, retry = requests_in_stream(bus, service, **request)
    finally:
        frozen.resume()
    key = "client_id" if service == "chat" else "key"
    assert first["data"][key] == retry["data"][key], "the retry must reuse the idempotency key"
    wait_until_blocking(lambda: all_handled(bus, service), f"{service} handling both", within=15)

    if service == "chat":
        for page in (alice, bob):
            expect(page.messages.filter(has_text="only once")).to_have_count(1)
        texts = [fields[b"text"] for _, fields in entries(bus, room_keys("retry").log("retry"))]
        assert texts.count(b"only once") == 1
        expect(alice.page.locator("#chat-error")).to_be_hidden()
    else:
        lamp = bob.auction("retry-lamp")
        expect(lamp.locator(".price")).to_have_text("Current bid 30.00 by alice")
        assert get_auction(system.ports["bids"], "retry-lamp")["bids"] == 1
        expect(alice.auction("retry-lamp").get_by_role("alert")).to_be_hidden()
        expect(alice.auction("retry-lamp").get_by_label("Your bid")).to_have_value("")
    bus.close()
