"""A gateway's side of the bus, for the poll service's bus-level tests: requests appended to
its stream as docs/bus.md says (fields ``e`` and ``r``), replies and events read from pub/sub."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from typing import Any, ClassVar

from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from common.codec import load_bus, pack_bus
from common.envelope import Request
from tests.support.launcher import ModuleProcesses
from tests.support.waiting import MS


__all__ = ["POLL_STREAM", "BusClient", "Launcher"]

POLL_STREAM = "svc:poll:requests"
_gateways = itertools.count(1)


class Launcher(ModuleProcesses):
    """The processes of one poll test module."""

    #: Short claim times, so that a test sees a pending entry taken over within a second.
    poll_env: ClassVar[Mapping[str, str]] = {
        "RT_CLAIM_INTERVAL": "0.2",
        "RT_CLAIM_IDLE_MS": "500",
        "RT_POLL_TALLY_PER_SECOND": "4",
    }


class BusClient:
    """Sends requests to the poll service as gateway ``gw-poll-<n>`` and reads its replies
    and the events of the channels it listens to."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.gateway = f"gw-poll-{next(_gateways)}"
        self._pubsub: PubSub = redis.pubsub()
        self._replies: dict[str, dict[str, Any]] = {}
        self._arrived = asyncio.Condition()
        self.events: dict[str, list[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> BusClient:
        await self._pubsub.subscribe(f"gw:{self.gateway}:replies")
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _read(self) -> None:
        async for message in self._pubsub.listen():
            if message["type"] != "message":
                continue
            value = load_bus(message["data"])
            channel = message["channel"].decode()
            if channel.startswith("ch:"):
                self.events.setdefault(channel.removeprefix("ch:"), []).append(value)
            else:
                async with self._arrived:
                    self._replies[value["re"]] = value
                    self._arrived.notify_all()

    async def listen(self, channel: str) -> None:
        """Receive the events of ``channel`` (``poll:<id>``) from now on."""
        self.events.setdefault(channel, [])
        await self._pubsub.subscribe(f"ch:{channel}")

    def request(self, type_: str, data: Mapping[str, Any], user: str | None = "alice") -> Request:
        return Request(
            type=type_,
            data=dict(data),
            gateway=self.gateway,
            connection=f"{self.gateway}.1",
            user=user,
            trace="t",
        )

    async def send(self, request: Request, *, entry: Mapping[str, bytes] | None = None) -> None:
        """Append ``request`` (or the raw ``entry``) to the poll stream, as a gateway does."""
        fields = entry or {
            "e": pack_bus(request.to_wire()),
            "r": pack_bus({"gw": self.gateway, "conn": request.connection, "re": request.id}),
        }
        entry_fields: dict[Any, Any] = dict(fields)
        await self.redis.xadd(POLL_STREAM, entry_fields)

    async def reply(self, request_id: str, within: float = 5_000 * MS) -> dict[str, Any]:
        """The reply to ``request_id``; fails after ``within`` seconds."""
        async with asyncio.timeout(within), self._arrived:
            await self._arrived.wait_for(lambda: request_id in self._replies)
        return self._replies.pop(request_id)

    async def call(
        self, type_: str, data: Mapping[str, Any], user: str | None = "alice"
    ) -> dict[str, Any]:
        """Send one request and return its reply."""
        request = self.request(type_, data, user)
        await self.send(request)
        return await self.reply(request.id)

    async def ok(
        self, type_: str, data: Mapping[str, Any], user: str | None = "alice"
    ) -> dict[str, Any]:
        """The data of a successful reply (fails on an error reply)."""
        answer = await self.call(type_, data, user)
        assert answer["ok"], answer
        data_: dict[str, Any] = answer["data"]
        return data_

    async def error(
        self, type_: str, data: Mapping[str, Any], user: str | None = "alice"
    ) -> dict[str, Any]:
        """The error of a refusal (fails on a successful reply)."""
        answer = await self.call(type_, data, user)
        assert not answer["ok"], answer
        error: dict[str, Any] = answer["error"]
        return error

    async def create(self, closes_in: float = 60, options: tuple[str, ...] = ("yes", "no")) -> str:
        """A new poll's id."""
        data = {"question": "Tea?", "options": list(options), "closes_in": closes_in}
        created = await self.ok("poll.create", data)
        poll: str = created["poll"]
        return poll
