"""Helpers of the presence tests: the processes of a module, and clients that watch presence.

Every wait has a deadline (:data:`tests.support.client.DEADLINE` unless given).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection

from common.keys import Partitions
from tests.support.client import DEADLINE, call, connect_user, recv_json, send_json
from tests.support.launcher import ModuleProcesses
from tests.support.processes import (
    ManagedProcess,
)
from tests.support.waiting import Deadline, wait_until


__all__ = [
    "GRACE",
    "LEASE_TTL",
    "SWEEP_INTERVAL",
    "Cluster",
    "Watcher",
    "close_all",
    "presence_request",
    "settled",
    "subscribe",
    "unsubscribe",
]

#: Gateway lease in the tests: a SIGKILLed gateway is dead after at most this long.
LEASE_TTL = 1.5
#: The presence sweepers' interval in the tests.
SWEEP_INTERVAL = 0.2
#: The restart grace in the tests.
GRACE = 3.0

_refs = itertools.count(1)


class Cluster(ModuleProcesses):
    """The gateways, presence instances and stub owners of one test module."""

    gateway_env: ClassVar[Mapping[str, str]] = {
        "RT_LEASE_TTL": str(LEASE_TTL),
        # The stub owner named bids joins dozens of channels in one request (bids.join),
        # far more than any request of the real bids service.
        "RT_MAX_REQUEST_BYTES": "bids=65536",
    }

    def presence(
        self, env: Mapping[str, str] | None = None, *, wait: bool = True
    ) -> ManagedProcess:
        """A presence instance (``python -m presence_service``) with the test timings."""
        settings = {
            "RT_PRESENCE_SWEEP_INTERVAL": str(SWEEP_INTERVAL),
            "RT_PRESENCE_GRACE": str(GRACE),
            # One entry per read, so that several instances share even a slow trickle.
            "RT_SERVICE_BATCH": "1",
            "RT_CLAIM_INTERVAL": "0.5",
            **(env or {}),
        }
        return self.service("presence_service", "presence", settings, wait=wait)

    def owner(self, service: str, *, wait: bool = True) -> ManagedProcess:
        """A stub owner of ``service``'s channels: it admits every subscribe, position "0"."""
        return self.stub(service, wait=wait)


async def subscribe(ws: ClientConnection, channel: str) -> None:
    reply = await call(ws, {"type": "subscribe", "channel": channel, "ref": next(_refs)})
    assert reply["ok"] is True, reply


async def unsubscribe(ws: ClientConnection, channel: str) -> None:
    reply = await call(ws, {"type": "unsubscribe", "channel": channel, "ref": next(_refs)})
    assert reply["ok"] is True, reply


async def presence_request(ws: ClientConnection, kind: str, **data: Any) -> dict[str, Any]:
    """The reply to ``presence.<kind>`` with ``data``."""
    return await call(ws, {"type": f"presence.{kind}", "ref": next(_refs), **data})


async def settled(bus: Redis, within: float = DEADLINE, *, partitions: int = 1) -> None:
    """Wait until every notification in the presence streams (of ``partitions`` partitions)
    has been handled."""
    streams = Partitions("presence", partitions).streams()

    async def handled(stream: str) -> bool:
        if not await bus.exists(stream):
            return True
        for group in await bus.xinfo_groups(stream):
            if group["name"] in (b"presence", "presence"):
                return int(group["pending"]) == 0 and int(group.get("lag") or 0) == 0
        return False

    async def done() -> bool:
        return all([await handled(stream) for stream in streams])

    await wait_until(done, within=within, what="the presence streams handled")


Event = tuple[str, str]


class Watcher:
    """A client subscribed to ``presence:<channel>``, keeping each (event, user) it receives."""

    def __init__(self, ws: ClientConnection, channel: str, url: str) -> None:
        self.ws = ws
        self.channel = channel
        self.url = url
        self.events: list[Event] = []
        self._markers = itertools.count(1)

    @classmethod
    async def open(cls, url: str, channel: str, user: str = "watcher") -> Watcher:
        ws = await connect_user(url, user)
        await subscribe(ws, "presence:" + channel)
        return cls(ws, channel, url)

    async def close(self) -> None:
        await self.ws.close()

    async def until(
        self, predicate: Callable[[list[Event]], bool], *, within: float = DEADLINE
    ) -> list[Event]:
        """Read events until ``predicate(all events so far)`` holds; return them."""
        deadline = Deadline(within)
        while not predicate(self.events):
            if deadline.expired():
                raise AssertionError(f"not seen within {within} s; seen {self.events[-10:]!r}")
            self._keep(await recv_json(self.ws, deadline.remaining()))
        return self.events

    async def request(self, kind: str, **data: Any) -> dict[str, Any]:
        """The reply to ``presence.<kind>``, keeping the events that arrive before it."""
        ref = next(_refs)
        await send_json(self.ws, {"type": f"presence.{kind}", "ref": ref, **data})
        deadline = Deadline(DEADLINE)
        while True:
            if deadline.expired():
                raise AssertionError(f"no reply within {DEADLINE} s")
            frame = await recv_json(self.ws, deadline.remaining())
            if frame.get("type") == "reply" and frame.get("ref") == ref:
                return frame
            self._keep(frame)

    async def users(self, channel: str | None = None) -> dict[str, int]:
        """User -> connections present in ``channel`` (default: the watched channel)."""
        reply = await self.request("list", channel=channel or self.channel)
        assert reply["ok"] is True, reply
        return {entry["user"]: entry["connections"] for entry in reply["data"]["users"]}

    def _keep(self, frame: dict[str, Any]) -> None:
        if frame.get("type") == "event" and frame.get("channel") == "presence:" + self.channel:
            assert frame["position"] is None, frame
            self.events.append((frame["event"], frame["data"]["user"]))

    async def barrier(self, within: float = DEADLINE) -> list[Event]:
        """Every event published before now, without the barrier's own.

        A marker user joins and leaves the channel; its events come after every event
        published before it (so call it once the notifications before it are handled).
        """
        marker = f"marker-{next(self._markers)}"
        ws = await connect_user(self.url, marker)
        try:
            await subscribe(ws, self.channel)
            await self.until(lambda events: ("join", marker) in events, within=within)
        finally:
            await ws.close()
        await self.until(lambda events: ("leave", marker) in events, within=within)
        self.events = [event for event in self.events if event[1] != marker]
        return self.events

    def take(self) -> list[Event]:
        """The events seen so far, forgetting them."""
        events, self.events = self.events, []
        return events


async def close_all(*connections: ClientConnection) -> None:
    await asyncio.gather(*(ws.close() for ws in connections))
