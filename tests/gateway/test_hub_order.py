"""The hub delivers each event of a channel to a connection once, in order, even when a
replay's answer overtakes live events it already holds.

On one Redis a service's reply and the events it published before it travel on the
gateway's one pub/sub connection, in that order. On a Redis Cluster they do not: the reply
comes on the shard of the gateway's reply channel, the events on the shard of their
channel, two connections read in whatever order their data is ready. So a replay (after a
bus outage, a subscribe with ``since``, a server-side join) can be answered, and the
connection made live, before events of that replay arrive live.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from common.codec import pack_bus
from common.envelope import Event, Reply
from common.registry import RegistryView
from realtime_gateway.hub import Hub, Subscriber
from realtime_gateway.metrics import GatewayMetrics
from realtime_gateway.routing import Router
from tests.support.registry import built_in_view


CHANNEL = "chat:lobby"


@dataclass(eq=False)
class FakeOutbox:
    """The frames queued to a connection, decoded."""

    frames: list[dict[str, Any]] = field(default_factory=list)
    max_bytes: int = 1 << 20

    def send(self, frame: bytes) -> None:
        self.frames.append(json.loads(frame[frame.index(b"{") :]))

    def close(self, code: int, reason: str) -> None:
        raise AssertionError(f"closed {code}: {reason}")

    def positions(self) -> list[str | None]:
        return [frame.get("position") for frame in self.frames]


@dataclass(eq=False)
class FakeConnection:
    id: str = "gw-hub.1"
    user: str | None = "alice"
    outbox: FakeOutbox = field(default_factory=FakeOutbox)


class FakeListener:
    connected = True

    async def subscribe(self, channel: str) -> None:
        pass

    def unsubscribe(self, channel: str) -> None:
        pass


@dataclass
class FakeRouter:
    """The requests the hub asks the owner, each answered by the test."""

    asked: list[tuple[dict[str, Any], Callable[[Reply | None, str], None]]] = field(
        default_factory=list
    )

    def request(
        self,
        connection: Any,
        service: str,
        request_type: str,
        data: dict[str, Any],
        on_reply: Callable[[Reply | None, str], None],
        **_: Any,
    ) -> None:
        self.asked.append((data, on_reply))

    def answer(self, data: dict[str, Any]) -> None:
        _, on_reply = self.asked.pop(0)
        on_reply(Reply("request", "gw-hub.1", data=data), "")


def _events(*positions: int) -> list[dict[str, Any]]:
    return [{"event": "message", "position": str(p), "data": {"n": p}} for p in positions]


@pytest.fixture
def parts(metrics: GatewayMetrics) -> tuple[Hub, FakeRouter, FakeConnection]:
    router = FakeRouter()
    view: RegistryView = built_in_view()
    hub = Hub(cast("Any", FakeListener()), cast("Router", router), metrics, view)
    return hub, router, FakeConnection()


def _publish(hub: Hub, position: int) -> None:
    event = Event(CHANNEL, "message", {"n": position}, position=str(position))
    hub.on_event(CHANNEL, pack_bus(event.to_wire()))


async def test_events_a_recovery_replayed_are_not_delivered_again_when_they_arrive_late(
    parts: tuple[Hub, FakeRouter, FakeConnection],
) -> None:
    """After a bus outage the owner replays 2 and 3; when 2 and 3 then arrive live (their
    shard's connection was slower than the reply's), they are dropped, 4 is delivered, and
    the next recovery asks from 4."""
    hub, router, connection = parts
    await hub.join(CHANNEL, cast("Subscriber", connection), pending=False)
    _publish(hub, 1)
    hub.recover()
    assert router.asked[0][0] == {"channel": CHANNEL, "since": "1"}
    router.answer({"position": "3", "recovered": True, "events": _events(2, 3)})
    for late in (2, 3):
        _publish(hub, late)
    _publish(hub, 4)
    assert connection.outbox.positions() == ["1", "2", "3", "4"]
    hub.recover()
    assert router.asked[0][0] == {"channel": CHANNEL, "since": "4"}


async def test_events_a_subscribe_answer_covered_are_not_delivered_when_they_arrive_late(
    parts: tuple[Hub, FakeRouter, FakeConnection],
) -> None:
    """A subscription answered at position 5 drops the live 5 that arrives after the answer
    (it is in the state the client read), and delivers 6."""
    hub, _, connection = parts
    subscriber = cast("Subscriber", connection)
    await hub.join(CHANNEL, subscriber, pending=True)
    hub.activate(CHANNEL, subscriber, after="5")
    _publish(hub, 5)
    _publish(hub, 6)
    assert connection.outbox.positions() == ["6"]
