"""The session's subscriptions, with no I/O: join, owner, replay, live, unsubscribe."""

from __future__ import annotations

from typing import Any

import pytest

from realtime_gateway.session import (
    Action,
    Activate,
    AskOwner,
    Join,
    Leave,
    Notify,
    Send,
)
from tests.gateway.session_support import Driven, code_of, error_of, messages, reply


def _ask(driven: Driven, channel: str, **fields: Any) -> AskOwner:
    """Subscribe to an owner's channel and let the bus confirm: the owner's request."""
    actions = driven.run(driven.session.joined(driven.join(channel, **fields)))
    (ask,) = actions
    assert isinstance(ask, AskOwner)
    return ask


def _subscribed(driven: Driven, channel: str, **answer: Any) -> list[Action]:
    """Subscribe to an owner's channel, the owner answering ``answer``."""
    ask = _ask(driven, channel)
    return driven.run(driven.session.owner_answered(ask, reply(answer), ""))


def test_a_channel_without_history_is_granted_once_joined() -> None:
    """presence:<x> is joined live, and answered once the bus confirms, position null."""
    driven = Driven()
    driven.authenticate()
    join = driven.join("presence:lobby")
    assert join == Join("presence:lobby", "presence", False, "s", None, None)
    assert driven.session.subscriptions == {"presence:lobby": False}
    actions = driven.session.joined(join)
    assert messages(actions) == [
        {
            "type": "reply",
            "ref": "s",
            "ok": True,
            "data": {"channel": "presence:lobby", "position": None},
        }
    ]
    assert driven.session.subscriptions == {"presence:lobby": True}
    assert driven.gate.counted["subscribe"] == 1


def test_since_on_a_channel_without_history_is_not_recovered() -> None:
    """With since, a channel that keeps no history answers recovered: false."""
    driven = Driven()
    driven.authenticate()
    actions = driven.session.joined(driven.join("presence:lobby", since="5"))
    assert messages(actions)[0]["data"] == {
        "channel": "presence:lobby",
        "position": None,
        "recovered": False,
    }


def test_an_owners_channel_is_held_until_the_owner_answers() -> None:
    """chat:<room> is joined pending and the owner asked, with since when given."""
    driven = Driven()
    driven.authenticate()
    join = driven.join("chat:general", since="7-0")
    assert (join.pending, join.service) == (True, "chat")
    (ask,) = driven.session.joined(join)
    assert isinstance(ask, AskOwner)
    assert (ask.ref, ask.service, ask.data) == (
        "s",
        "chat",
        {"channel": "chat:general", "since": "7-0"},
    )
    assert driven.session.subscriptions == {"chat:general": False}


def test_reply_then_replay_then_live() -> None:
    """The owner's answer: track, the reply, the replayed events in order, then live after it."""
    driven = Driven()
    driven.authenticate()
    events = [
        {"event": "message", "position": "8-0", "data": {"text": "a"}},
        "not-an-event",
        {"event": "message", "position": "9-0", "data": {"text": "b"}},
    ]
    ask = _ask(driven, "chat:general", since="7-0")
    answer = {"position": "9-0", "recovered": True, "events": events}
    actions = driven.run(driven.session.owner_answered(ask, reply(answer), ""))
    notify, *sends, live = actions
    assert notify == Notify("track", {"channel": "chat:general", "seq": 1})
    assert [action.message for action in sends if isinstance(action, Send)] == [
        {
            "type": "reply",
            "ref": "s",
            "ok": True,
            "data": {"channel": "chat:general", "position": "9-0", "recovered": True},
        },
        {
            "type": "event",
            "channel": "chat:general",
            "event": "message",
            "position": "8-0",
            "data": {"text": "a"},
        },
        {
            "type": "event",
            "channel": "chat:general",
            "event": "message",
            "position": "9-0",
            "data": {"text": "b"},
        },
    ]
    assert live == Activate("chat:general", "9-0")
    assert driven.session.subscriptions == {"chat:general": True}


@pytest.mark.parametrize(
    ("since", "answer", "data"),
    [
        pytest.param(None, {"position": "3-0"}, {"position": "3-0"}, id="no-since-no-recovered"),
        pytest.param(
            "1-0", {"position": "3-0"}, {"position": "3-0", "recovered": False}, id="unsaid"
        ),
        pytest.param(
            "1-0",
            {"position": 3, "recovered": 1},
            {"position": "3", "recovered": True},
            id="coerced",
        ),
        pytest.param(None, {}, {"position": None}, id="no-position"),
    ],
)
def test_recovered_is_told_only_for_since(
    since: str | None, answer: dict[str, Any], data: dict[str, Any]
) -> None:
    """recovered is present only with since, as the owner said (false when unsaid)."""
    driven = Driven()
    driven.authenticate()
    fields = {} if since is None else {"since": since}
    ask = _ask(driven, "auction:42", **fields)
    actions = driven.run(driven.session.owner_answered(ask, reply(answer), ""))
    assert messages(actions)[0]["data"] == {"channel": "auction:42", **data}
    assert actions[-1] == Activate("auction:42", data["position"])


def test_the_owners_refusal_unsubscribes() -> None:
    """A refusal is the reply, and the channel is left; no answer is service_unavailable."""
    driven = Driven()
    driven.authenticate()
    ask = _ask(driven, "chat:secret")
    refused = reply(error={"code": "forbidden", "message": "members only"})
    actions = driven.run(driven.session.owner_answered(ask, refused, ""))
    assert actions[0] == Leave("chat:secret")
    assert error_of(actions) == {"code": "forbidden", "message": "members only"}
    assert driven.session.subscriptions == {}
    ask = _ask(driven, "chat:secret")
    actions = driven.run(driven.session.owner_answered(ask, None, "service 'chat' did not answer"))
    assert error_of(actions)["code"] == "service_unavailable"
    assert driven.session.subscriptions == {}


def test_an_unsubscribe_before_the_owner_answers_wins() -> None:
    """The answer to a subscribe unsubscribed meanwhile is not_subscribed, and grants nothing."""
    driven = Driven()
    driven.authenticate()
    ask = _ask(driven, "chat:general")
    actions = driven.send({"type": "unsubscribe", "ref": "u", "channel": "chat:general"})
    assert actions[0] == Leave("chat:general")
    assert messages(actions) == [
        {"type": "reply", "ref": "u", "ok": True, "data": {"channel": "chat:general"}}
    ]
    actions = driven.run(driven.session.owner_answered(ask, reply({"position": "1-0"}), ""))
    assert error_of(actions) == {
        "code": "not_subscribed",
        "message": "unsubscribed before the subscription completed",
    }
    assert driven.session.subscriptions == {}


def test_an_answer_to_a_closed_connection_does_nothing() -> None:
    """Once the outbox closed, the owner's answer is dropped."""
    driven = Driven()
    driven.authenticate()
    ask = _ask(driven, "chat:general")
    driven.link.closed = True
    assert driven.session.owner_answered(ask, reply({"position": "1-0"}), "") == []


def test_a_join_the_bus_does_not_confirm_in_time() -> None:
    """When the bus cannot confirm, the channel is left and the client told to retry."""
    driven = Driven()
    driven.authenticate()
    actions = driven.run(driven.session.join_timed_out(driven.join("presence:lobby")))
    assert actions[0] == Leave("presence:lobby")
    assert error_of(actions) == {
        "code": "service_unavailable",
        "message": "the bus is unavailable: retry later",
    }
    assert driven.session.subscriptions == {}


def test_a_join_completed_on_a_closed_connection_releases_it() -> None:
    """The connection closed while joining: what it holds is released at once."""
    driven = Driven()
    driven.authenticate()
    join = driven.join("presence:lobby")
    driven.link.closed = True
    actions = driven.session.joined(join)
    assert Leave("presence:lobby") in actions
    assert messages(actions) == []
    assert driven.session.subscriptions == {}


@pytest.mark.parametrize(
    ("channel", "code"),
    [
        pytest.param("nope", "invalid_channel", id="malformed"),
        pytest.param("svc:chat:requests", "invalid_channel", id="the-bus"),
        pytest.param("presence:chat:general", "forbidden", id="guarded-watch"),
    ],
)
def test_refused_subscriptions(channel: str, code: str) -> None:
    """Malformed or bus names are invalid_channel; a guarded channel's watch needs it first."""
    driven = Driven()
    driven.authenticate()
    assert code_of(driven.send({"type": "subscribe", "channel": channel})) == code
    assert driven.session.subscriptions == {}


def test_already_subscribed_and_too_many() -> None:
    """A second subscribe to a channel is refused; so is one beyond RT_MAX_SUBSCRIPTIONS."""
    driven = Driven(max_subscriptions=2)
    driven.authenticate()
    driven.session.joined(driven.join("presence:a"))
    assert (
        code_of(driven.send({"type": "subscribe", "channel": "presence:a"})) == "already_subscribed"
    )
    driven.join("presence:b")  # pending ones count too
    assert (
        code_of(driven.send({"type": "subscribe", "channel": "presence:c"}))
        == "too_many_subscriptions"
    )


def test_a_guarded_watch_is_allowed_once_its_channel_is_granted() -> None:
    """presence:chat:<room> is for a subscriber of chat:<room>: allowed once it is granted."""
    driven = Driven()
    driven.authenticate()
    _subscribed(driven, "chat:general", position="1-0")
    join = driven.join("presence:chat:general")
    assert join.watched == "chat:general"
    assert messages(driven.session.joined(join))[0]["ok"] is True


def test_leaving_the_guarded_channel_ends_a_watch_being_joined() -> None:
    """A chat.leave answered while the watch is joined ends the watch too, saying why."""
    driven = Driven()
    driven.authenticate()
    _subscribed(driven, "chat:general", position="1-0")
    driven.join("presence:chat:general")
    call = driven.call({"type": "chat.leave", "ref": "l", "room": "general"})
    left = reply({}, unsubscribe=("chat:general",))
    actions = driven.run(driven.session.answered(call, left, ""))
    assert Leave("presence:chat:general") in actions
    assert messages(actions)[0] == {
        "type": "unsubscribed",
        "channel": "presence:chat:general",
        "reason": "no longer subscribed to 'chat:general'",
    }
    assert driven.session.subscriptions == {}


def test_a_watch_dropped_while_joined_is_answered_once_joined() -> None:
    """The watch a chat.leave ended while it was joined gets a forbidden answer, not a crash."""
    driven = Driven()
    driven.authenticate()
    _subscribed(driven, "chat:general", position="1-0")
    join = driven.join("presence:chat:general")
    call = driven.call({"type": "chat.leave", "ref": "l", "room": "general"})
    driven.run(driven.session.answered(call, reply({}, unsubscribe=("chat:general",)), ""))
    actions = driven.run(driven.session.joined(join))
    assert error_of(actions) == {
        "code": "forbidden",
        "message": "subscribe to 'chat:general' first",
    }
    assert driven.session.subscriptions == {}


@pytest.mark.parametrize("outcome", ["joined", "timed-out"])
def test_a_channel_left_by_a_reply_while_joined_is_not_granted(outcome: str) -> None:
    """A chat.leave answered during the room's own join wins: the subscribe is not_subscribed."""
    driven = Driven()
    driven.authenticate()
    join = driven.join("chat:general")
    call = driven.call({"type": "chat.leave", "ref": "l", "room": "general"})
    left = driven.run(driven.session.answered(call, reply({}, unsubscribe=("chat:general",)), ""))
    assert Leave("chat:general") in left
    session = driven.session
    actions = driven.run(
        session.joined(join) if outcome == "joined" else session.join_timed_out(join)
    )
    assert code_of(actions) == "not_subscribed"
    assert not any(isinstance(action, (AskOwner, Leave)) for action in actions)
    assert driven.session.subscriptions == {}


def test_a_watch_of_an_unguarded_or_unknown_channel_is_anyones() -> None:
    """presence:<x> needs no subscription when <x> is not owner-guarded or not a channel."""
    driven = Driven()
    driven.authenticate()
    assert driven.join("presence:auction:1").watched is None
    assert driven.join("presence:lobby").watched is None


def test_unsubscribe_ends_the_guarded_watch_first() -> None:
    """Unsubscribing chat:<room> also ends presence:chat:<room>, told just before the reply."""
    driven = Driven()
    driven.authenticate()
    _subscribed(driven, "chat:general", position="1-0")
    driven.session.joined(driven.join("presence:chat:general"))
    actions = driven.send({"type": "unsubscribe", "ref": "u", "channel": "chat:general"})
    assert [action for action in actions if isinstance(action, Leave)] == [
        Leave("chat:general"),
        Leave("presence:chat:general"),
    ]
    assert messages(actions) == [
        {
            "type": "unsubscribed",
            "channel": "presence:chat:general",
            "reason": "no longer subscribed to 'chat:general'",
        },
        {"type": "reply", "ref": "u", "ok": True, "data": {"channel": "chat:general"}},
    ]
    assert driven.session.subscriptions == {}


def test_unsubscribe_from_a_channel_not_subscribed() -> None:
    """An unsubscribe for a channel the connection does not hold is not_subscribed."""
    driven = Driven()
    driven.authenticate()
    assert error_of(driven.send({"type": "unsubscribe", "channel": "chat:x"})) == {
        "code": "not_subscribed",
        "message": "not subscribed to 'chat:x'",
    }
    assert driven.gate.counted["unsubscribe"] == 1
