"""The chat service's handlers and Lua scripts against a real Redis, without processes.

Requests go through :meth:`ChatService.handle_batch` (validation, one pipeline of script
calls, outcomes); the bus worker and the gateway are left out.
"""

from __future__ import annotations

from redis.asyncio import Redis

from chat_service.keys import place_of
from common.codec import load_bus
from common.envelope import Event, Reply
from common.errors import ServiceError
from common.keys import Partitions
from tests.chat.handling import code, ok, one, post, start_service
from tests.chat.support import room_keys
from tests.support.client import DEADLINE


async def test_join_replies_with_a_server_side_subscription(redis: Redis) -> None:
    """chat.join creates a public room and answers with a Reply subscribing chat:<room>."""
    service = await start_service(redis)
    outcome = await one(service, "chat.join", room="lobby")
    assert isinstance(outcome, Reply)
    assert outcome.subscribe == ("chat:lobby",)
    assert outcome.data == {
        "room": "lobby",
        "channel": "chat:lobby",
        "private": False,
        "created": True,
        "position": "0-0",
        "messages": [],
    }
    assert (await ok(service, "chat.join", "bob", room="lobby"))["created"] is False


async def test_a_batch_posts_in_order_and_deduplicates(redis: Redis) -> None:
    """Sends of one batch are appended in order; a repeated client_id gets the first reply."""
    service = await start_service(redis)
    await ok(service, "chat.join", room="r")
    first, second = await post(service, "r", 2)
    again = await ok(service, "chat.send", room="r", text="other text", client_id="c0")
    assert again["position"] == first
    history = await ok(service, "chat.history", room="r")
    assert [m["text"] for m in history["messages"]] == ["m0", "m1"]
    assert [m["position"] for m in history["messages"]] == [first, second]
    # Another user may use the same client_id: it is scoped per room and user.
    assert (await ok(service, "chat.send", "bob", room="r", text="b", client_id="c0"))[
        "position"
    ] not in (first, second)


async def test_events_are_bus_events(redis: Redis) -> None:
    """The message and typing events the scripts publish parse as bus Events."""
    service = await start_service(redis)
    await ok(service, "chat.join", room="r")
    pubsub = redis.pubsub()
    try:
        await pubsub.subscribe(place_of(Partitions("chat"), "r").event_channel)
        confirmation = await pubsub.get_message(timeout=DEADLINE)
        assert confirmation is not None
        sent = await ok(service, "chat.send", room="r", text="héllo", client_id="k")
        assert await ok(service, "chat.typing", "bob", room="r") == {"sent": True}
        events = []
        for _ in range(2):
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=DEADLINE)
            assert message is not None
            events.append(Event.from_wire(load_bus(message["data"])))
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
    posted, typing = events
    assert (posted.channel, posted.event, posted.position) == (
        "chat:r",
        "message",
        sent["position"],
    )
    assert posted.data == {
        "id": sent["id"],
        "user": "alice",
        "text": "héllo",
        "ts": int(sent["position"].split("-")[0]),
        "client_id": "k",
    }
    assert posted.id == sent["id"]
    assert (typing.event, typing.position, typing.data) == ("typing", None, {"user": "bob"})


async def test_recovery_reaches_back_exactly_to_the_newest_trimmed_message(redis: Redis) -> None:
    """With retention 5 after 8 posts, since = the 3rd recovers and since = the 2nd does not."""
    service = await start_service(redis, retention=5, replay_limit=10, join_messages=2)
    await ok(service, "chat.join", room="r")
    positions = await post(service, "r", 8)
    assert await redis.xlen(room_keys("r").log("r")) == 5
    answer = await ok(service, "subscribe", channel="chat:r", since=positions[2])
    assert answer["recovered"] is True
    assert [e["position"] for e in answer["events"]] == positions[3:]
    assert answer["position"] == positions[-1]
    lost = await ok(service, "subscribe", channel="chat:r", since=positions[1])
    assert lost["recovered"] is False
    assert [e["position"] for e in lost["events"]] == positions[-2:]
    assert (await ok(service, "subscribe", channel="chat:r", since="0-0"))["recovered"] is False


async def test_recovery_beyond_the_replay_limit_is_not_recovered(redis: Redis) -> None:
    """More messages after since than the replay limit give recovered=false and the newest."""
    service = await start_service(redis, replay_limit=3, join_messages=2)
    await ok(service, "chat.join", room="r")
    positions = await post(service, "r", 5)
    joined = await ok(service, "chat.join", room="r", since=positions[0])
    assert joined["recovered"] is False
    assert [m["position"] for m in joined["messages"]] == positions[-2:]
    joined = await ok(service, "chat.join", room="r", since=positions[1])
    assert joined["recovered"] is True
    assert [m["text"] for m in joined["messages"]] == ["m2", "m3", "m4"]


async def test_since_at_or_beyond_the_newest_position(redis: Redis) -> None:
    """since = the newest position recovers nothing new; a since from another history does not."""
    service = await start_service(redis, join_messages=1)
    await ok(service, "chat.join", room="r")
    positions = await post(service, "r", 2)
    current = await ok(service, "subscribe", channel="chat:r", since=positions[-1])
    assert current == {"position": positions[-1], "recovered": True, "events": []}
    future = await ok(service, "subscribe", channel="chat:r", since="99999999999999-0")
    assert future["recovered"] is False
    assert [e["position"] for e in future["events"]] == positions[-1:]
    assert await ok(service, "subscribe", channel="chat:r") == {"position": positions[-1]}


async def test_since_older_than_the_room_is_not_recovered(redis: Redis) -> None:
    """A position from before the room existed (a history Redis lost) is not recovered from."""
    service = await start_service(redis, join_messages=5)
    await ok(service, "chat.join", room="r")
    positions = await post(service, "r", 2)
    lost = await ok(service, "subscribe", channel="chat:r", since="1-0")
    assert lost["recovered"] is False
    whole = await ok(service, "chat.join", room="r", since="0-0")
    assert whole["recovered"] is True
    assert [m["position"] for m in whole["messages"]] == positions


async def test_rate_limit_is_per_user_and_says_when_to_retry(redis: Redis) -> None:
    """Beyond the burst a user's send is refused with rate_limited and a retry delay."""
    service = await start_service(redis, send_burst=2, send_rate=0.5)
    await ok(service, "chat.join", room="r")
    await post(service, "r", 2)
    outcome = await one(service, "chat.send", room="r", text="x", client_id="late")
    assert isinstance(outcome, ServiceError)
    assert outcome.code == "rate_limited"
    assert 0 < outcome.details["retry_after_ms"] <= 2000
    # Nothing was remembered for the refused client_id, and other users are not limited.
    assert not await redis.exists(room_keys("r").sent("r", "alice", "late"))
    await ok(service, "chat.send", "bob", room="r", text="x", client_id="late")


async def test_private_rooms_admit_members_only(redis: Redis) -> None:
    """A private room refuses non-members everything with forbidden, and members nothing."""
    service = await start_service(redis)
    created = await ok(service, "chat.create", room="p", private=True, members=["bob"])
    assert created == {
        "room": "p",
        "channel": "chat:p",
        "private": True,
        "created": True,
        "member_count": 2,
    }
    for kind, data in (
        ("chat.join", {}),
        ("chat.history", {}),
        ("chat.send", {"text": "x", "client_id": "c"}),
        ("chat.typing", {}),
    ):
        assert await code(service, kind, "carol", room="p", **data) == "forbidden"
    assert await code(service, "subscribe", "carol", channel="chat:p") == "forbidden"
    assert (await ok(service, "chat.join", "bob", room="p"))["private"] is True
    # The creator may repeat a create (a retry) and add members; nobody else may.
    again = await ok(service, "chat.create", room="p", private=True, members=["carol"])
    assert (again["created"], again["member_count"]) == (False, 3)
    assert await code(service, "chat.create", "bob", room="p", private=True) == "room_exists"
    assert await code(service, "chat.create", room="p") == "room_exists"


async def test_unknown_rooms_are_not_found(redis: Redis) -> None:
    """send, history, typing and subscribe on a room nobody created give room_not_found."""
    service = await start_service(redis)
    for kind, data in (
        ("chat.history", {"room": "nowhere"}),
        ("chat.send", {"room": "nowhere", "text": "x", "client_id": "c"}),
        ("chat.typing", {"room": "nowhere"}),
        ("subscribe", {"channel": "chat:nowhere"}),
    ):
        assert await code(service, kind, **data) == "room_not_found"
    assert await ok(service, "chat.leave", room="nowhere") == {
        "room": "nowhere",
        "channel": "chat:nowhere",
    }
    assert await code(service, "chat.shout", room="x") == "unknown_type"


async def test_history_pages_back_without_overlap(redis: Redis) -> None:
    """History pages of `limit` messages, oldest first, follow `before` back to the start."""
    service = await start_service(redis)
    await ok(service, "chat.join", room="r")
    positions = await post(service, "r", 7)
    pages: list[list[str]] = []
    before = None
    for _ in range(10):
        page = await ok(service, "chat.history", room="r", limit=3, before=before)
        pages.append([m["position"] for m in page["messages"]])
        if not page["more"]:
            break
        before = page["messages"][0]["position"]
    assert pages == [positions[4:], positions[1:4], positions[:1]]
    empty = await ok(service, "chat.history", room="r", before="0-0")
    assert (empty["messages"], empty["more"]) == ([], False)


async def test_scripts_are_reloaded_after_redis_forgets_them(redis: Redis) -> None:
    """After SCRIPT FLUSH (as after a Redis restart) the next batch reloads and still runs."""
    service = await start_service(redis)
    await ok(service, "chat.join", room="r")
    await redis.script_flush()
    assert len(await post(service, "r", 2)) == 2


async def test_typing_is_throttled_and_never_stored(redis: Redis) -> None:
    """A second typing within the window is dropped (sent: false); nothing enters the history."""
    service = await start_service(redis, typing_interval=30.0)
    await ok(service, "chat.join", room="r")
    assert await ok(service, "chat.typing", room="r") == {"sent": True}
    assert await ok(service, "chat.typing", room="r") == {"sent": False}
    assert await ok(service, "chat.typing", "bob", room="r") == {"sent": True}
    assert await redis.exists(room_keys("r").log("r")) == 0
