"""Chat across bus outages: Redis restarted on its append-only file, a pub/sub connection cut.

The module runs a Redis of its own with ``--appendonly yes`` (a restart keeps the rooms, as a
production Redis does), one chat instance, and gateways: the subscribers under test are on
the first, the posters on the second. The first gateway is paused (SIGSTOP) across every
other outage, so that it surely subscribes again only after the posts meant to fall in the
gap, as its reconnect backoff (up to 2 s) lets happen by chance otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from redis.asyncio import Redis

from common.envelope import Event
from devtools.redis_server import RedisServer
from tests.chat.support import ChatClient, cut_pubsub, is_message, name, start_chat
from tests.support.client import StalledClient, make_token
from tests.support.owners import publish
from tests.support.processes import ManagedProcess, start_gateway, wait_all_ready
from tests.support.waiting import MS, Deadline, wait_until


#: Most messages the chat service replays; a longer gap is not recovered.
REPLAY_LIMIT = 400
CHAT_ENV = {
    "RT_CHAT_SEND_RATE": "1000",
    "RT_CHAT_SEND_BURST": "1000",
    "RT_CHAT_REPLAY_LIMIT": str(REPLAY_LIMIT),
    "RT_CHAT_MAX_TEXT": "2000",
}
#: A request lost in an outage is answered service_unavailable soon; posters post at will.
GATEWAY_ENV = {"RT_REQUEST_TIMEOUT": "1", "RT_RATE_LIMIT": "10000", "RT_RATE_BURST": "10000"}
OUTBOX_MAX_BYTES = 256 * 1024
#: How long processes may take to find Redis again (their backoff caps at 2 s).
RECOVERY = 15_000 * MS
ROUNDS = 4
BUSY_INTERVAL = 0.02
QUIET_POSTS = 5

_ids = itertools.count(1)


@dataclass
class Setup:
    redis: RedisServer
    gateway: ManagedProcess
    poster_gateway: ManagedProcess
    small_outbox: ManagedProcess
    chat: ManagedProcess

    @property
    def processes(self) -> list[ManagedProcess]:
        return [self.gateway, self.poster_gateway, self.small_outbox, self.chat]


@pytest.fixture(scope="module")
def setup(log_dir: Path) -> Iterator[Setup]:
    """A Redis with an append-only file, three gateways and a chat instance on it."""
    server = RedisServer(appendonly=True)
    server.start()
    processes: list[ManagedProcess] = []
    try:
        for gateway_id, env in (
            ("gw-restart-1", GATEWAY_ENV),
            ("gw-restart-2", GATEWAY_ENV),
            ("gw-restart-small", {"RT_OUTBOX_MAX_BYTES": str(OUTBOX_MAX_BYTES)}),
        ):
            processes.append(
                start_gateway(
                    server.url, log_dir=log_dir, gateway_id=gateway_id, env=env, wait=False
                )
            )
        processes.append(
            start_chat(
                server.url, log_dir=log_dir, instance="chat-restart", env=CHAT_ENV, wait=False
            )
        )
        wait_all_ready(processes)
        yield Setup(server, *processes)
    finally:
        for process in processes:
            process.signal(signal.SIGCONT)
            process.stop()
        server.stop()
        server.remove_data()


@pytest.fixture
async def bus(setup: Setup) -> AsyncIterator[Redis]:
    """A client of the module's Redis (this module's own, not the session's)."""
    client = Redis.from_url(setup.redis.url)
    try:
        yield client
    finally:
        await client.aclose()


async def post_surely(poster: ChatClient, room: str, text: str) -> str:
    """Post until the service answers (a retry with the same client_id posts once); its id."""
    client_id = f"c{next(_ids)}"
    deadline = Deadline(RECOVERY)
    for _ in range(1000):
        reply = await poster.request("chat.send", room=room, text=text, client_id=client_id)
        if reply["ok"]:
            message_id: str = reply["data"]["id"]
            return message_id
        assert reply["error"]["code"] == "service_unavailable", reply
        assert not deadline.expired(), f"{client_id} not posted within {RECOVERY} s"
        await asyncio.sleep(0.05)  # a pause between retries, not a wait for a condition
    raise AssertionError(f"{client_id} not posted")


async def ready(process: ManagedProcess) -> None:
    async def answers() -> bool:
        return (await process.get_async("/readyz"))[0] == 200

    await wait_until(answers, within=RECOVERY, what=f"{process.name} ready")


@contextlib.asynccontextmanager
async def paused(process: ManagedProcess) -> AsyncIterator[None]:
    """Hold ``process`` stopped (SIGSTOP) for the body, then let it go on and be ready."""
    process.signal(signal.SIGSTOP)
    try:
        yield
    finally:
        process.signal(signal.SIGCONT)
    await ready(process)


@dataclass
class Busy:
    """Posts to one room every BUSY_INTERVAL until stopped, keeping the ids in order."""

    poster: ChatClient
    room: str
    ids: list[str] = field(default_factory=list)
    running: bool = True
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self.running = False
        if self.task is not None:
            await self.task

    async def _run(self) -> None:
        for n in range(5000):
            if not self.running:
                return
            self.ids.append(await post_surely(self.poster, self.room, f"busy {n}"))
            # At most 50 a second: an outage of a few seconds stays within REPLAY_LIMIT.
            await asyncio.sleep(BUSY_INTERVAL)

    async def posted(self, more: int) -> None:
        """Wait until ``more`` messages more than now are posted."""
        wanted = len(self.ids) + more

        async def enough() -> bool:
            if self.task is not None and self.task.done():
                self.task.result()  # its failure, if it failed
            return len(self.ids) >= wanted

        await wait_until(enough, within=RECOVERY, what=f"{more} more busy posts")


async def received_through(client: ChatClient, channel: str, last: str) -> list[str]:
    """The ids of the message events of ``channel`` up to the one with id ``last``."""
    ids: list[str] = []
    deadline = Deadline(RECOVERY)
    for _ in range(100_000):
        frame = await client.next(is_message(channel), deadline.remaining())
        ids.append(frame["data"]["id"])
        if frame["data"]["id"] == last:
            return ids
    raise AssertionError(f"{last} not received")


def tally(posted: list[str], received: list[str]) -> tuple[list[str], list[str]]:
    """The ids posted but not received, and those received more than once."""
    lost = [i for i in posted if i not in set(received)]
    doubled = sorted({i for i in received if received.count(i) > 1})
    return lost, doubled


@pytest.mark.timeout(180)
async def test_redis_restarts_lose_and_double_nothing_on_quiet_and_busy_channels(
    setup: Setup,
) -> None:
    """Across Redis restarts every subscriber, quiet or busy, gets each message exactly once."""
    quiet_rooms = [name("quiet"), name("quiet")]
    busy_room = name("busy")
    rooms = [*quiet_rooms, busy_room]
    poster = await ChatClient.open(setup.poster_gateway.ws_url, name("poster"))
    busy_poster = await ChatClient.open(setup.poster_gateway.ws_url, name("busy-poster"))
    # Per room one subscriber by chat.join (a server-side subscription) and one by subscribe.
    subscribers: dict[str, list[ChatClient]] = {}
    busy = Busy(busy_poster, busy_room)
    try:
        for room in rooms:
            joiner = await ChatClient.open(setup.gateway.ws_url, name("joiner"))
            await joiner.ok("chat.join", room=room)
            watcher = await ChatClient.open(setup.gateway.ws_url, name("watcher"))
            await watcher.send({"type": "subscribe", "channel": f"chat:{room}", "ref": "s"})
            assert (await watcher.reply("s"))["ok"] is True
            subscribers[room] = [joiner, watcher]
        quiet_ids: dict[str, list[str]] = {room: [] for room in quiet_rooms}
        busy.start()
        await busy.posted(10)
        for round_ in range(ROUNDS):
            # Every other round as it comes: the gateway's commands race the restart.
            hold = paused(setup.gateway) if round_ % 2 == 0 else contextlib.nullcontext()
            async with hold:
                await asyncio.to_thread(setup.redis.stop)
                await asyncio.to_thread(setup.redis.start)
                for room in quiet_rooms:
                    for n in range(QUIET_POSTS):
                        quiet_ids[room].append(await post_surely(poster, room, f"{round_}.{n}"))
                await busy.posted(10)
            await busy.posted(10)
        await busy.stop()
        posted = {**quiet_ids, busy_room: busy.ids}
        for room in quiet_rooms:
            posted[room].append(await post_surely(poster, room, "last"))
        results = []
        for room, clients in subscribers.items():
            for client in clients:
                received = await received_through(client, f"chat:{room}", posted[room][-1])
                lost, doubled = tally(posted[room], received)
                notices = [f for f in client.unread if f.get("type") == "recovery"]
                ordered = received == posted[room]
                results.append((room, len(posted[room]), len(lost), len(doubled), ordered, notices))
        print("room, posted, lost, doubled, in order, recovery notices:", *results, sep="\n")
        assert [r[2:] for r in results] == [(0, 0, True, [])] * len(results), results
        # The first command on each connection the old server closed is tried again: the
        # replays never failed (and so were never asked twice).
        for outcome in ("retried", "failed"):
            assert (
                await setup.gateway.metric("rt_gateway_recoveries_total", {"outcome": outcome}) == 0
            )
    finally:
        with contextlib.suppress(Exception):
            await busy.stop()
        for clients in subscribers.values():
            for client in clients:
                await client.close()
        await poster.close()
        await busy_poster.close()


async def test_a_gap_longer_than_the_replay_is_told_to_the_client(setup: Setup, bus: Redis) -> None:
    """Missed more than the owner replays: the client gets recovered false, then no double."""
    room = name("long-gap")
    channel = f"chat:{room}"
    poster = await ChatClient.open(setup.poster_gateway.ws_url, name("poster"))
    reader = await ChatClient.open(setup.gateway.ws_url, name("reader"))
    try:
        await reader.ok("chat.join", room=room)
        before = await post_surely(poster, room, "before")
        assert [e["data"]["id"] for e in await reader.messages(channel, 1)] == [before]
        async with paused(setup.gateway):
            await cut_pubsub(bus, "gw-restart-1")
            gap = [await post_surely(poster, room, f"gap {n}") for n in range(REPLAY_LIMIT + 20)]
        notice = await reader.next(lambda f: f.get("type") == "recovery", within=RECOVERY)
        assert notice == {
            "type": "recovery",
            "channel": channel,
            "position": notice["position"],
            "recovered": False,
        }
        assert not [f for f in reader.unread if is_message(channel)(f)], "events before it"
        after = await post_surely(poster, room, "after")
        received = await received_through(reader, channel, after)
        # What the owner did replay (its newest messages) comes after the notice, once each.
        assert len(received) < len(gap)
        assert received == [*gap[len(gap) - len(received) + 1 :], after]
    finally:
        await reader.close()
        await poster.close()


async def test_big_replies_to_a_client_that_stopped_reading_count_against_the_outbox(
    setup: Setup, bus: Redis
) -> None:
    """Join replies a stalled client cannot take count towards RT_OUTBOX_MAX_BYTES: 4408."""
    gateway = setup.small_outbox
    room = name("big")
    filler = f"presence:filler-{room}"
    poster = await ChatClient.open(gateway.ws_url, name("poster"))
    stalled = await StalledClient.open(gateway.ws_url, make_token(name("stalled")))
    try:
        await poster.ok("chat.join", room=room)
        # About 230 KB of messages: one join reply is below the bound, two are past it.
        for n in range(120):
            await post_surely(poster, room, f"{n:04} " + "x" * 1800)
        assert (await stalled.recv_json())["type"] == "welcome"
        await stalled.send_json({"type": "subscribe", "channel": filler, "ref": "f"})
        assert (await stalled.recv_json())["ok"] is True
        # From here on the stalled client reads nothing until the end of the test. Small
        # events fill its socket in the kernel, which would take the replies otherwise.
        fills = itertools.count(1)
        delivered = await gateway.metric("rt_gateway_deliveries_total")

        async def fill() -> None:
            n = next(fills)
            await publish(bus, Event(filler, "fill", {"n": n, "pad": "x" * 8192}))
            await gateway.metric_reaches("rt_gateway_deliveries_total", delivered + n)

        await stalled.fill_server_kernel(gateway.port, fill)
        ok = {"service": "chat", "outcome": "ok"}
        answered = await gateway.metric("rt_gateway_requests_total", ok)
        for ref in ("j1", "j2"):
            await stalled.send_json({"type": "chat.join", "ref": ref, "room": room, "since": "0-0"})
        # Both joins, and the first one's catch-up.
        await gateway.metric_reaches("rt_gateway_requests_total", answered + 3, ok)
        # One event more, for a client whose gateway holds two replies: past the bound.
        await post_surely(poster, room, "one more")

        async def closed() -> bool:
            return await gateway.metric("rt_gateway_closes_total", {"code": "4408"}) == 1

        await wait_until(closed, what="the stalled client closed 4408")
        assert await stalled.read_until_closed(within=RECOVERY) == 4408
    finally:
        stalled.close()
        await poster.close()
