"""The session's server-side subscriptions, presence notifications and its end, with no I/O."""

from __future__ import annotations

import logging

import pytest

from common.errors import CloseCode
from realtime_gateway.session import (
    MAX_REMEMBERED_UNTRACKS,
    STOP_TIMER,
    Activate,
    CatchUp,
    Joining,
    Leave,
    Notify,
    Send,
    ServerJoin,
)
from tests.gateway.session_support import Driven, messages, reply


def _joining(driven: Driven, *channels: str, position: str | None = "5-0") -> Joining:
    """chat.join answered with a server-side subscription to ``channels``."""
    call = driven.call({"type": "chat.join", "ref": "j", "room": "general"})
    data = {} if position is None else {"position": position}
    answer = reply(data, subscribe=channels)
    (action,) = driven.run(driven.session.answered(call, answer, ""))
    assert isinstance(action, ServerJoin)
    return action.joining


def _joined(driven: Driven, joining: Joining) -> list[str]:
    """Every channel the session asks to join, in order (each join succeeding at once)."""
    channels = []
    while (channel := driven.session.next_join(joining)) is not None:
        channels.append(channel)
    return channels


def test_a_server_side_subscription_joins_replies_then_catches_up() -> None:
    """Join (pending), then track, the reply, and a catch-up from the reply's position."""
    driven = Driven()
    driven.authenticate()
    joining = _joining(driven, "chat:general")
    assert _joined(driven, joining) == ["chat:general"]
    assert driven.session.subscriptions == {"chat:general": False}
    actions = driven.run(driven.session.joins_done(joining))
    assert actions[0] == Notify("track", {"channel": "chat:general", "seq": 1})
    assert messages(actions) == [
        {"type": "reply", "ref": "j", "ok": True, "data": {"position": "5-0"}}
    ]
    assert actions[-1] == CatchUp("chat:general", "5-0")
    assert driven.session.subscriptions == {"chat:general": True}


def test_several_channels_or_no_position_go_live_at_once() -> None:
    """With more than one channel (or no position) there is nothing to catch up from."""
    driven = Driven()
    driven.authenticate()
    joining = _joining(driven, "chat:a", "chat:b")
    assert _joined(driven, joining) == ["chat:a", "chat:b"]
    actions = driven.run(driven.session.joins_done(joining))
    assert [a for a in actions if isinstance(a, Activate)] == [
        Activate("chat:a", None),
        Activate("chat:b", None),
    ]
    joining = _joining(driven, "chat:c", position=None)
    _joined(driven, joining)
    assert driven.run(driven.session.joins_done(joining))[-1] == Activate("chat:c", None)


def test_only_the_services_own_new_channels_are_joined(caplog: pytest.LogCaptureFixture) -> None:
    """Another service's channel or a malformed one is refused (logged); a held one skipped."""
    driven = Driven()
    driven.authenticate()
    held = _joining(driven, "chat:general")
    _joined(driven, held)
    with caplog.at_level(logging.ERROR, logger="realtime_gateway.session"):
        joining = _joining(driven, "auction:1", "bad", "chat:general", "chat:new")
        assert _joined(driven, joining) == ["chat:new"]
    refused = [r for r in caplog.records if r.message == "refused a server-side subscription"]
    assert [getattr(record, "channel", None) for record in refused] == ["auction:1", "bad"]


def test_a_server_side_subscription_stops_at_the_limit() -> None:
    """Channels beyond RT_MAX_SUBSCRIPTIONS are skipped, the reply still delivered."""
    driven = Driven(max_subscriptions=1)
    driven.authenticate()
    joining = _joining(driven, "chat:a", "chat:b", "chat:c")
    assert _joined(driven, joining) == ["chat:a"]
    assert driven.session.next_join(joining) is None
    assert messages(driven.session.joins_done(joining))[0]["ok"] is True
    assert list(driven.session.subscriptions) == ["chat:a"]


def test_an_unsubscribe_during_the_join_stands() -> None:
    """A channel the client unsubscribed while it was joined is not granted behind its back."""
    driven = Driven()
    driven.authenticate()
    joining = _joining(driven, "chat:general")
    _joined(driven, joining)
    driven.send({"type": "unsubscribe", "channel": "chat:general"})
    actions = driven.run(driven.session.joins_done(joining))
    assert messages(actions)[0]["ok"] is True
    assert not [a for a in actions if isinstance(a, (Notify, Activate, CatchUp))]
    assert driven.session.subscriptions == {}


def test_a_connection_closed_during_the_join_is_released() -> None:
    """Closed before its joins were done: the channels are left, nothing is delivered."""
    driven = Driven()
    driven.authenticate()
    joining = _joining(driven, "chat:a", "chat:b")
    assert driven.session.next_join(joining) == "chat:a"
    driven.link.closed = True
    assert driven.session.next_join(joining) is None
    actions = driven.run(driven.session.joins_done(joining))
    assert Leave("chat:a") in actions
    assert messages(actions) == []


def test_a_server_side_unsubscribe_only_leaves_the_services_own_channels() -> None:
    """A reply's unsubscribe list leaves the service's channels, ignoring others and bad names."""
    driven = Driven()
    driven.authenticate()
    joining = _joining(driven, "chat:general")
    _joined(driven, joining)
    driven.session.joins_done(joining)
    driven.session.joined(driven.join("presence:x"))
    call = driven.call({"type": "chat.leave", "ref": "l", "room": "general"})
    left = reply({}, unsubscribe=("chat:general", "presence:x", "bad", "chat:other"))
    actions = driven.run(driven.session.answered(call, left, ""))
    assert actions == [
        Leave("chat:general"),
        Notify("untrack", {"channel": "chat:general", "seq": 2}),
        Send({"type": "reply", "ref": "l", "ok": True, "data": {}}),
    ]
    assert list(driven.session.subscriptions) == ["presence:x"]


def test_presence_reads_carry_the_channels_last_notification() -> None:
    """presence.list of a channel carries this connection's last track or untrack (prior)."""
    driven = Driven()
    driven.authenticate()
    frame = {"type": "presence.list", "channel": "chat:general"}
    assert driven.call(frame).prior == ()
    joining = _joining(driven, "chat:general")
    _joined(driven, joining)
    driven.session.joins_done(joining)
    track = {"type": "track", "data": {"channel": "chat:general", "seq": 1}}
    assert driven.call(frame).prior == (track,)
    driven.send({"type": "unsubscribe", "channel": "chat:general"})
    untrack = {"type": "untrack", "data": {"channel": "chat:general", "seq": 2}}
    assert driven.call(frame).prior == (untrack,)
    assert driven.call({"type": "presence.count", "channel": 7}).prior == ()
    assert driven.call({"type": "bids.get", "auction": "1"}).prior == ()


def test_remembered_untracks_are_bounded() -> None:
    """A connection remembers at most MAX_REMEMBERED_UNTRACKS untracks beyond its channels."""
    driven = Driven(max_subscriptions=MAX_REMEMBERED_UNTRACKS * 3)
    driven.authenticate()
    for n in range(MAX_REMEMBERED_UNTRACKS + 5):
        joining = _joining(driven, f"chat:r{n}")
        _joined(driven, joining)
        driven.session.joins_done(joining)
        driven.send({"type": "unsubscribe", "channel": f"chat:r{n}"})
    first = {"type": "presence.list", "channel": "chat:r0"}
    assert driven.call(first).prior == ()
    last = {"type": "presence.list", "channel": f"chat:r{MAX_REMEMBERED_UNTRACKS + 4}"}
    assert driven.call(last).prior[0]["type"] == "untrack"


@pytest.mark.parametrize(
    ("outbox_code", "finish_code", "restart"),
    [
        pytest.param(None, 1001, False, id="client-went-away"),
        pytest.param(None, CloseCode.SERVICE_RESTART, True, id="restart-from-the-close"),
        pytest.param(CloseCode.SERVICE_RESTART, None, True, id="restart-sent-by-the-gateway"),
        pytest.param(CloseCode.SLOW_CONSUMER, CloseCode.SERVICE_RESTART, False, id="outbox-first"),
    ],
)
def test_finish_drops_the_connection_from_presence(
    outbox_code: int | None, finish_code: int | None, restart: bool
) -> None:
    """At the end presence is told the tracked channels (sorted) and whether it is a restart."""
    driven = Driven()
    driven.authenticate()
    for channel in ("chat:b", "chat:a", "chat:c"):
        joining = _joining(driven, channel)
        _joined(driven, joining)
        driven.session.joins_done(joining)
    driven.send({"type": "unsubscribe", "channel": "chat:c"})
    driven.link.close_code = outbox_code
    actions = driven.session.finish(finish_code)
    drop = {"channels": ["chat:a", "chat:b"], "restart": restart, "partition": 0, "seq": 5}
    assert actions == [
        Notify("drop", drop),
        STOP_TIMER,
        Leave("chat:b"),
        Leave("chat:a"),
    ]
    assert driven.session.finish() == []


def test_finish_without_presence_only_releases() -> None:
    """A connection presence never heard of is not dropped; its channels are left."""
    driven = Driven()
    driven.authenticate()
    driven.session.joined(driven.join("presence:x"))
    assert driven.session.finish() == [STOP_TIMER, Leave("presence:x")]
