"""The fan-out benchmark's load generator (bench/fanout.py): subscribers that count what
they receive, a publisher of timed events, and connections opened and closed in bulk."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from array import array
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from redis.asyncio import Redis

from bench.system import (
    BenchError,
)
from bench.wsclient import WsClient, connect
from common.bus.publisher import event_message
from common.codec import dump_client
from common.envelope import Event
from common.keys import Partitions
from devtools.net import LOOPBACK


__all__ = [
    "CHANNEL",
    "OWNER",
    "Phase",
    "Publisher",
    "Subscriber",
    "close_all",
    "open_client",
    "open_connections",
]

CHANNEL = "presence:bench"
#: The channel's owner, with the one partition the benchmark's presence service has.
OWNER = Partitions("presence")
CONNECT_TIMEOUT = 10.0
#: Concurrent upgrades while opening connections (the gateway's listen backlog is 4096).
CONNECT_CONCURRENCY = 256
CLOSE_TIMEOUT = 10.0

_Client = TypeVar("_Client", bound=WsClient)


@dataclass(slots=True)
class Phase:
    """What the subscribers received of events with seq in [first_seq, first_seq + capacity)."""

    first_seq: int
    capacity: int
    published: int = 0
    #: Deliveries, each (subscriber, seq) counted once.
    received: int = 0
    duplicates: int = 0
    reordered: int = 0
    #: Events outside the phase's range, or that did not parse.
    strays: int = 0
    first_publish_ns: int = 0
    last_receive_ns: int = 0
    latencies: array[int] = field(default_factory=lambda: array("q"))
    #: Per event (index seq - first_seq): publish time, first and last receive time (ns).
    sent: array[int] = field(init=False)
    first_rx: array[int] = field(init=False)
    last_rx: array[int] = field(init=False)
    wake_at: int = sys.maxsize
    waiter: asyncio.Future[None] | None = None

    def __post_init__(self) -> None:
        self.sent = array("q", bytes(8 * self.capacity))
        self.first_rx = array("q", bytes(8 * self.capacity))
        self.last_rx = array("q", bytes(8 * self.capacity))

    async def received_within(self, count: int, seconds: float) -> bool:
        """Whether ``received`` reaches ``count`` within ``seconds``."""
        if self.received >= count:
            return True
        self.waiter = asyncio.get_running_loop().create_future()
        self.wake_at = count
        try:
            async with asyncio.timeout(seconds):
                await self.waiter
        except TimeoutError:
            return False
        finally:
            self.waiter, self.wake_at = None, sys.maxsize
        return True


class Subscriber(WsClient):
    """Records each event's sequence number and latency into the current :class:`Phase`."""

    def __init__(self, host: str, port: int, token: str) -> None:
        super().__init__(host, port, headers={"Authorization": f"Bearer {token}"})
        self.phase: Phase | None = None
        self._seen = bytearray()
        self._last = -1

    def start(self, phase: Phase) -> None:
        self.phase = phase
        self._seen = bytearray(phase.capacity)
        self._last = -1

    def on_event(self, data: bytes, start: int, end: int, now_ns: int) -> None:
        phase = self.phase
        if phase is None:
            return
        # The event's data is {"seq":N,"ts":T,"pad":"..."}, in this order: msgpack and orjson
        # keep it, and the pad is only x's. Three finds beat decoding the JSON.
        i = data.find(b'"seq":', start, end)
        j = data.find(b",", i, end)
        k = data.find(b",", j + 1, end)
        if i < 0 or j < 0 or k < 0:
            phase.strays += 1
            return
        index = int(data[i + 6 : j]) - phase.first_seq
        if not 0 <= index < phase.capacity:
            phase.strays += 1
            return
        seen = self._seen
        if seen[index]:
            phase.duplicates += 1
            return
        seen[index] = 1
        if index < self._last:
            phase.reordered += 1
        else:
            self._last = index
        phase.latencies.append(now_ns - int(data[j + 6 : k]))
        if not phase.first_rx[index]:
            phase.first_rx[index] = now_ns
        phase.last_rx[index] = now_ns
        phase.last_receive_ns = now_ns
        phase.received += 1
        waiter = phase.waiter
        if phase.received >= phase.wake_at and waiter is not None and not waiter.done():
            waiter.set_result(None)


class Publisher:
    """Publishes numbered, timestamped events of :data:`CHANNEL` on the bus, on pub/sub channel
    ``channel`` (where the gateway subscribed), with SPUBLISH if ``sharded`` (on a cluster:
    ``redis`` is then the node that serves the channel's slot)."""

    def __init__(self, redis: Redis, frame_bytes: int, channel: str, *, sharded: bool) -> None:
        self._redis = redis
        self.channel = channel
        self._command = "SPUBLISH" if sharded else "PUBLISH"
        self.next_seq = 1
        probe = {"seq": 10**6, "ts": time.time_ns(), "pad": ""}
        overhead = len(dump_client(Event(CHANNEL, "bench", probe).to_client()))
        self.pad = "x" * max(0, frame_bytes - overhead)
        self.frame_bytes = overhead + len(self.pad)

    def new_phase(self, events: int, subscribers: Sequence[Subscriber]) -> Phase:
        phase = Phase(first_seq=self.next_seq, capacity=events)
        for subscriber in subscribers:
            subscriber.start(phase)
        return phase

    async def publish(self, phase: Phase, count: int = 1) -> None:
        """Publish ``count`` events in one round trip (a pipeline, not a transaction)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for _ in range(count):
                seq, self.next_seq = self.next_seq, self.next_seq + 1
                now = time.time_ns()
                if not phase.first_publish_ns:
                    phase.first_publish_ns = now
                phase.sent[seq - phase.first_seq] = now
                data = {"seq": seq, "ts": now, "pad": self.pad}
                _, body = event_message(OWNER, Event(CHANNEL, "bench", data))
                pipe.execute_command(self._command, self.channel, body)
            await pipe.execute()
        phase.published += count


async def open_connections(count: int, make: Callable[[int], Awaitable[_Client]]) -> list[_Client]:
    """``count`` connections, CONNECT_CONCURRENCY at a time: all of them, or BenchError."""
    opened: list[_Client] = []
    failures: list[str] = []
    indices = iter(range(count))

    async def worker() -> None:
        for index in indices:
            if failures:
                return
            try:
                opened.append(await make(index))
            except (OSError, TimeoutError, BenchError) as exc:
                failures.append(f"connection {index}: {exc!r}")

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(CONNECT_CONCURRENCY, count)):
                group.create_task(worker())
    except BaseException:
        await close_all(opened)
        raise
    if failures:
        await close_all(opened)
        raise BenchError(f"{len(failures)} connection(s) failed, the first: {failures[0]}")
    return opened


async def close_all(clients: Sequence[WsClient]) -> None:
    for client in clients:
        client.close()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await asyncio.gather(*(client.closed for client in clients))
    for client in clients:
        if client.transport is not None and not client.closed.done():
            client.transport.abort()


async def open_client(client: _Client, port: int, subscribe: bool) -> _Client:
    """Upgrade, expect the welcome (Bearer authentication), subscribe if asked."""
    async with asyncio.timeout(CONNECT_TIMEOUT):
        client = await connect(lambda: client, LOOPBACK, port)
        try:
            welcome = await client.receive()
            if welcome.get("type") != "welcome":
                raise BenchError(f"expected a welcome, got {welcome}")
            if subscribe:
                client.send_json({"type": "subscribe", "ref": 1, "channel": CHANNEL})
                reply = await client.receive()
                if reply.get("type") != "reply" or reply.get("ok") is not True:
                    raise BenchError(f"subscribe refused: {reply}")
        except BaseException:
            client.close()
            raise
    return client
