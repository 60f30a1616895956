"""Chat in the demo app between two browser contexts, as two users."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser.conftest import OpenPage
from tests.browser.support import TIMEOUT_MS


SEND_ALL = """async ({room, texts}) => {
  for (const text of texts) {
    for (;;) {
      try {
        await window.realtimeDemo.client.request("chat.send", {room, text});
        break;
      } catch (error) {
        if (error.code !== "rate_limited") throw error;
        await new Promise((resume) => setTimeout(resume, error.data.retry_after_ms));
      }
    }
  }
}"""


def test_two_users_chat_see_each_other_and_typing(open_page: OpenPage) -> None:
    """One user's message appears in the other's page; presence lists both, then one leaving;
    typing shows."""
    alice = open_page("alice")
    bob = open_page("bob")
    alice.enter("general")
    bob.enter("general")
    expect(alice.present.locator("li")).to_have_text(["alice (you)", "bob"], timeout=TIMEOUT_MS)
    expect(bob.present.locator("li")).to_have_text(["alice", "bob (you)"])

    bob.page.get_by_label("Message", exact=True).press_sequentially("hel")
    expect(alice.page.locator("#typing")).to_have_text("bob is typing…")

    bob.send("hello alice")
    expect(alice.messages.filter(has_text="hello alice")).to_have_count(1, timeout=TIMEOUT_MS)
    alice.send("hi bob")
    expect(bob.messages).to_have_text(["hello alice", "hi bob"], timeout=TIMEOUT_MS)
    expect(alice.messages).to_have_text(["hello alice", "hi bob"])

    bob.page.get_by_role("button", name="Leave").click()
    expect(alice.present.locator("li")).to_have_text(["alice (you)"], timeout=TIMEOUT_MS)


def test_history_loads_older_messages_and_private_rooms_keep_others_out(
    open_page: OpenPage,
) -> None:
    """A late joiner sees the history and pages back with "load older"; a private room refuses
    a non-member."""
    carol = open_page("carol")
    carol.enter("history")
    texts = [f"note {n}" for n in range(55)]
    # Through the page's client: the chat service lets a user send 20 at once, then 5 a
    # second, and says how long to wait.
    carol.page.evaluate(SEND_ALL, {"room": "history", "texts": texts})
    expect(carol.messages).to_have_count(len(texts), timeout=TIMEOUT_MS * 2)

    dave = open_page("dave")
    dave.enter("history")
    expect(dave.messages).to_have_count(50)
    dave.page.get_by_role("button", name="Load older").click()
    expect(dave.messages).to_have_text(texts)
    expect(dave.page.get_by_role("button", name="Load older")).to_be_hidden()

    carol.page.get_by_label("Name", exact=True).fill("carol-and-erin")
    carol.page.get_by_label("Members (comma-separated)").fill("erin")
    carol.page.get_by_role("button", name="Create and join").click()
    expect(carol.page.locator("#room-title")).to_have_text("# carol-and-erin (private)")
    dave.page.get_by_label("Room", exact=True).fill("carol-and-erin")
    dave.page.get_by_role("button", name="Join", exact=True).click()
    expect(dave.page.get_by_role("alert").filter(has_text="forbidden")).to_be_visible()
