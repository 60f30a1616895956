"""PubSubListener against a real Redis: order, confirmed subscriptions, and Redis restarts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from common.bus.listener import PubSubListener
from devtools.redis_server import RedisServer
from tests.common import cancel_and_wait
from tests.support.waiting import WAIT, Deadline, wait_until


REPLIES = "gw:test:replies"


class Inbox:
    """The on_message callback: records (channel, body) in delivery order."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []

    def __call__(self, channel: str, body: bytes) -> None:
        self.messages.append((channel, body))

    def on(self, channel: str) -> list[bytes]:
        return [body for name, body in self.messages if name == channel]


@dataclass
class Running:
    listener: PubSubListener
    inbox: Inbox
    task: asyncio.Task[None]

    def check(self) -> None:
        """Fail at once, with the cause, if the listener task has ended."""
        if self.task.done():
            error = None if self.task.cancelled() else self.task.exception()
            raise AssertionError(f"the listener stopped: {error!r}")


StartListener = Callable[..., Running]


@pytest.fixture
async def start_listener(redis_url: str) -> AsyncIterator[StartListener]:
    """Starts listeners, each on a client of its own, as tasks; cancels them at the end."""
    running: list[Running] = []
    clients: list[Redis] = []

    def start(permanent: Iterable[str] = (REPLIES,), on_message: Inbox | None = None) -> Running:
        client = Redis.from_url(redis_url, socket_keepalive=True)
        clients.append(client)
        inbox = on_message or Inbox()
        listener = PubSubListener(client, inbox, permanent)
        task = asyncio.get_running_loop().create_task(listener.run())
        running.append(Running(listener, inbox, task))
        return running[-1]

    try:
        yield start
    finally:
        try:
            await cancel_and_wait([each.task for each in running], "listeners")
        finally:
            for client in clients:
                await client.aclose()


async def _connected(running: Running) -> None:
    await asyncio.wait_for(running.listener.wait_connected(), WAIT)
    running.check()


async def _publish_until_received(
    redis: Redis, running: Running, channels: Iterable[str], within: float = 20.0
) -> None:
    """Publish on each channel, again and again, until the listener has received on each."""
    pending = set(channels)

    async def received_on_each() -> bool:
        running.check()
        pending.difference_update([c for c in pending if b"probe" in running.inbox.on(c)])
        for channel in sorted(pending):
            try:
                await redis.publish(channel, b"probe")
            except (RedisConnectionError, OSError):
                pass  # the test's own client may still be reconnecting
        return not pending

    await wait_until(
        received_on_each, f"a probe received on each of {sorted(channels)}", within=within
    )


async def _subscribers(redis: Redis, channel: str) -> int:
    ((_, count),) = await redis.pubsub_numsub(channel)
    return int(count)


def test_a_listener_needs_a_permanent_channel() -> None:
    """Without a permanent channel redis-py would stop listening, so it is refused."""
    with pytest.raises(ValueError, match="permanent"):
        PubSubListener(Redis(), Inbox(), [])


async def test_delivers_messages_in_order(redis: Redis, start_listener: StartListener) -> None:
    """Messages on several channels reach the callback in the order they were published."""
    running = start_listener()
    await _connected(running)
    await running.listener.subscribe("ch:chat:a")
    expected = []
    for n in range(200):
        channel = REPLIES if n % 3 else "ch:chat:a"
        body = str(n).encode()
        assert await redis.publish(channel, body) == 1
        expected.append((channel, body))
    await wait_until(lambda: len(running.inbox.messages) >= 200, "200 messages")
    assert running.inbox.messages == expected


async def test_wait_connected_and_channels(start_listener: StartListener) -> None:
    """wait_connected returns once Redis confirms the permanent channel; channels lists it."""
    running = start_listener(permanent=[REPLIES, "gw:test:control"])
    await _connected(running)
    assert running.listener.connected
    assert running.listener.channels == {REPLIES, "gw:test:control"}


async def test_subscribe_returns_only_once_redis_confirms(
    redis: Redis, start_listener: StartListener
) -> None:
    """A publish right after subscribe() returns already reaches the listener."""
    running = start_listener()
    await _connected(running)
    for n in range(20):
        channel = f"ch:auction:{n}"
        await running.listener.subscribe(channel)
        # Redis counts the receivers of a publish: 1 means the subscription is in place.
        assert await redis.publish(channel, b"first") == 1
    await wait_until(lambda: len(running.inbox.messages) == 20, "20 messages")
    assert "ch:auction:19" in running.listener.channels


async def test_subscribe_while_the_listener_connects(
    redis: Redis, start_listener: StartListener
) -> None:
    """subscribe() called while the listener is still connecting returns, and is subscribed."""
    # The interleaving varies with how far the run loop got, so try several listeners.
    for attempt in range(12):
        running = start_listener()
        channel = f"ch:chat:early-{attempt}"
        # Let the run loop take a few steps into connecting (not a wait for a condition).
        for _ in range(attempt % 4):
            await asyncio.sleep(0)
        try:
            await asyncio.wait_for(running.listener.subscribe(channel), 5.0)
        except TimeoutError:
            raise AssertionError(f"subscribe() never returned (attempt {attempt})") from None
        assert await redis.publish(channel, b"x") == 1
        await wait_until(lambda: running.inbox.on(channel) == [b"x"], "the message")  # noqa: B023
        running.task.cancel()


async def test_unsubscribe_stops_delivery(redis: Redis, start_listener: StartListener) -> None:
    """After unsubscribe, messages on that channel no longer reach the callback."""
    running = start_listener()
    await _connected(running)
    await running.listener.subscribe("ch:chat:a")
    assert await redis.publish("ch:chat:a", b"before") == 1
    running.listener.unsubscribe("ch:chat:a")
    assert "ch:chat:a" not in running.listener.channels

    async def unsubscribed() -> bool:
        return await _subscribers(redis, "ch:chat:a") == 0

    await wait_until(unsubscribed, "Redis to drop the subscription")
    assert await redis.publish("ch:chat:a", b"after") == 0
    # The marker is published last on the same connection: once it arrives, "after" would have.
    assert await redis.publish(REPLIES, b"marker") == 1
    await wait_until(lambda: running.inbox.on(REPLIES) == [b"marker"], "the marker")
    assert running.inbox.on("ch:chat:a") == [b"before"]


async def test_permanent_channels_cannot_be_unsubscribed(
    redis: Redis, start_listener: StartListener
) -> None:
    """unsubscribe() of a permanent channel is ignored: replies keep flowing."""
    running = start_listener()
    await _connected(running)
    running.listener.unsubscribe(REPLIES)
    assert REPLIES in running.listener.channels
    assert await redis.publish(REPLIES, b"still") == 1
    await wait_until(lambda: running.inbox.on(REPLIES) == [b"still"], "the reply")


async def test_a_failing_callback_does_not_stop_delivery(
    redis: Redis, start_listener: StartListener
) -> None:
    """An exception from on_message for one message does not stop the next ones."""

    class Picky(Inbox):
        def __call__(self, channel: str, body: bytes) -> None:
            if body == b"bad":
                raise RuntimeError("cannot handle this one")
            super().__call__(channel, body)

    running = start_listener(on_message=Picky())
    await _connected(running)
    for body in (b"one", b"bad", b"two"):
        await redis.publish(REPLIES, body)
    await wait_until(lambda: running.inbox.on(REPLIES) == [b"one", b"two"], "the good messages")
    assert running.listener.reconnects == 0


# Redis restarts.


async def test_resubscribes_to_everything_after_a_redis_restart(
    redis: Redis, start_listener: StartListener, redis_server: RedisServer
) -> None:
    """After Redis comes back the listener reconnects and is subscribed to all it had, only."""
    running = start_listener()
    await _connected(running)
    listener = running.listener
    wanted = ["ch:chat:a", "ch:auction:7", "ch:presence:chat:a"]
    for channel in wanted:
        await listener.subscribe(channel)
    await listener.subscribe("ch:chat:gone")
    listener.unsubscribe("ch:chat:gone")
    redis_server.stop()
    try:
        await wait_until(lambda: not listener.connected, "connected to go false")
        assert listener.reconnects >= 1
    finally:
        redis_server.start()
    await _publish_until_received(redis, running, [REPLIES, *wanted])
    assert listener.connected
    assert await _subscribers(redis, "ch:chat:gone") == 0
    for channel in [REPLIES, *wanted]:
        assert await _subscribers(redis, channel) == 1


async def test_connected_stays_false_while_redis_is_down(
    start_listener: StartListener, redis_server: RedisServer
) -> None:
    """While Redis is down, connected never reads true, not even during a reconnection attempt."""
    running = start_listener()
    await _connected(running)
    listener = running.listener
    redis_server.stop()
    seen_connected = 0
    try:
        await wait_until(lambda: not listener.connected, "connected to go false")
        attempts = listener.reconnects
        deadline = Deadline(WAIT)
        # Sample on every loop turn until the listener has failed to reconnect three more times.
        while listener.reconnects < attempts + 3 and not deadline.expired():
            seen_connected += listener.connected
            await asyncio.sleep(0)
        assert listener.reconnects >= attempts + 3, "the listener stopped trying"
    finally:
        redis_server.start()
    assert seen_connected == 0, f"connected read true {seen_connected} times with Redis down"
    await wait_until(lambda: listener.connected, "connected to come back")


async def test_subscribe_during_an_outage_returns_once_redis_is_back(
    redis: Redis, start_listener: StartListener, redis_server: RedisServer
) -> None:
    """subscribe() while Redis is down waits, and returns subscribed once the listener is back."""
    running = start_listener()
    await _connected(running)
    listener = running.listener
    redis_server.stop()
    try:
        await wait_until(lambda: not listener.connected, "connected to go false")
        subscribing = asyncio.get_running_loop().create_task(listener.subscribe("ch:chat:late"))
        attempts = listener.reconnects
        await wait_until(lambda: listener.reconnects >= attempts + 1, "a failed reconnection")
        assert not subscribing.done(), "subscribe() returned while Redis was down"
    finally:
        redis_server.start()
    await asyncio.wait_for(subscribing, 20.0)
    assert await redis.publish("ch:chat:late", b"x") == 1
    await wait_until(lambda: running.inbox.on("ch:chat:late") == [b"x"], "the message")
