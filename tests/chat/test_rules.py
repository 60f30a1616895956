"""Pure validation of chat requests (chat_service/rules.py), with no Redis and no event loop."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from chat_service import rules
from chat_service.keys import place_of
from chat_service.rules import Limits
from chat_service.settings import ChatSettings
from common.envelope import position_key
from common.errors import ServiceError
from common.keys import Partitions
from common.registry import Announcement, build_registry
from common.settings import Env


LIMITS = Limits(max_text=10, max_members=3, history_default=5, history_max=20)


def _code(parse: Any, *args: Any) -> str:
    with pytest.raises(ServiceError) as caught:
        parse(*args)
    return caught.value.code


def test_send_accepts_a_message() -> None:
    """A send with a room, a non-empty text and a client_id parses to its command."""
    command = rules.parse_send({"room": "lobby", "text": " hi ", "client_id": "c-1"}, LIMITS)
    assert command == rules.Send("lobby", " hi ", "c-1")


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_send_refuses_empty_text(text: str) -> None:
    """A text that is empty or only whitespace is refused with empty_message."""
    data = {"room": "lobby", "text": text, "client_id": "c"}
    assert _code(rules.parse_send, data, LIMITS) == "empty_message"


def test_send_refuses_text_over_the_limit_and_names_it() -> None:
    """A text longer than max_text characters is refused with message_too_long and the limit."""
    with pytest.raises(ServiceError) as caught:
        rules.parse_send({"room": "lobby", "text": "é" * 11, "client_id": "c"}, LIMITS)
    assert caught.value.code == "message_too_long"
    assert caught.value.details == {"max_length": 10}
    assert rules.parse_send({"room": "r", "text": "é" * 10, "client_id": "c"}, LIMITS)


@pytest.mark.parametrize(
    "data",
    [
        {"text": "hi", "client_id": "c"},
        {"room": "", "text": "hi", "client_id": "c"},
        {"room": "a b", "text": "hi", "client_id": "c"},
        {"room": "x" * 101, "text": "hi", "client_id": "c"},
        {"room": 7, "text": "hi", "client_id": "c"},
        {"room": "lobby", "client_id": "c"},
        {"room": "lobby", "text": 5, "client_id": "c"},
        {"room": "lobby", "text": "hi"},
        {"room": "lobby", "text": "hi", "client_id": "a|b"},
        {"room": "lobby", "text": "hi", "client_id": "x" * 65},
        {"room": "lobby", "text": "hi", "client_id": 12},
    ],
)
def test_send_refuses_malformed_fields(data: dict[str, Any]) -> None:
    """A missing or malformed room, text or client_id is refused with bad_request."""
    assert _code(rules.parse_send, data, LIMITS) == "bad_request"


def test_positions_are_canonical_stream_ids() -> None:
    """since/before must be '<ms>-<seq>' below 2**64 and come back without leading zeros."""
    assert rules.parse_join({"room": "r", "since": "0017-02"}).since == "17-2"
    assert rules.parse_join({"room": "r"}).since is None
    for bad in ("17", "17-", "-1", "a-1", "1-2-3", 17, "18446744073709551616-0"):
        assert _code(rules.parse_join, {"room": "r", "since": bad}) == "bad_request"
    assert position_key("10-0") > position_key("9-5")


def test_subscribe_takes_the_room_from_a_chat_channel() -> None:
    """The gateway's subscribe names a chat:<room> channel; anything else is invalid_channel."""
    assert rules.parse_subscribe({"channel": "chat:a:b", "since": "1-0"}) == rules.Subscribe(
        "a:b", "1-0"
    )
    for channel in ("auction:x", "chat:", "chat:a b", None):
        assert _code(rules.parse_subscribe, {"channel": channel}) == "invalid_channel"


def test_create_checks_privacy_and_members() -> None:
    """A private room lists members (deduplicated); a public one may list none."""
    command = rules.parse_create({"room": "r", "private": True, "members": ["a", "b", "a"]}, LIMITS)
    assert command == rules.Create("r", True, ("a", "b"))
    assert rules.parse_create({"room": "r"}, LIMITS) == rules.Create("r", False, ())
    for data in (
        {"room": "r", "private": "yes"},
        {"room": "r", "private": True, "members": "a"},
        {"room": "r", "private": True, "members": ["a", "b", "c", "d"]},
        {"room": "r", "private": True, "members": [""]},
        {"room": "r", "private": True, "members": ["x" * 129]},
        {"room": "r", "private": False, "members": ["a"]},
    ):
        assert _code(rules.parse_create, data, LIMITS) == "bad_request"


def test_history_limit_defaults_and_bounds() -> None:
    """A history page has the default size without limit, and limit must be 1..history_max."""
    assert rules.parse_history({"room": "r"}, LIMITS) == rules.History("r", None, 5)
    assert rules.parse_history({"room": "r", "before": "5-1", "limit": 20}, LIMITS).limit == 20
    for limit in (0, 21, "3", True, 2.5):
        assert _code(rules.parse_history, {"room": "r", "limit": limit}, LIMITS) == "bad_request"


def test_settings_come_from_rt_chat_variables() -> None:
    """ChatSettings reads RT_CHAT_* variables and keeps the default page within the maximum."""
    settings = ChatSettings.from_env(
        Env({"RT_CHAT_RETENTION": "20", "RT_CHAT_HISTORY_MAX": "10", "RT_CHAT_SEND_RATE": "0.5"})
    )
    assert (settings.retention, settings.history_max, settings.history_default) == (20, 10, 10)
    assert settings.send_rate == 0.5
    assert settings.limits.history_max == 10
    assert ChatSettings.from_env(Env({})) == ChatSettings()


def test_a_gateway_routes_each_request_to_its_rooms_partition() -> None:
    """The registry, given chat's offer with 3 partitions, sends every chat request and a
    subscribe to the stream of the room's partition, and subscribes where chat publishes."""
    offer = dataclasses.replace(rules.OFFER, partitions=3)
    registry, refusals = build_registry(
        {"chat": "chat"}, {"chat": Announcement(offer, "i1").encode()}, [("chat", 10_000)], 0, 0.0
    )
    assert refusals == []
    partitions = Partitions("chat", 3)
    assert dict(rules.OFFER.entities) == dict.fromkeys(rules.REQUESTS, "room")
    for room in ("lobby", "r", "r2", "a:b"):
        place = place_of(partitions, room)
        for kind in rules.REQUESTS:
            stream = registry.request_stream("chat", kind, {"room": room})
            assert stream == partitions.stream(place.partition), (kind, room)
        channel = rules.channel_of(room)
        assert registry.entity_stream("chat", room) == partitions.stream(place.partition)
        assert registry.event_channel(channel) == place.event_channel
    assert {place_of(partitions, room).partition for room in ("lobby", "r", "r2")} == {0, 1, 2}
