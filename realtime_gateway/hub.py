"""Channel subscriptions of local connections, and the fan-out of channel events.

The gateway subscribes to a channel on the bus once, when its first local connection
subscribes, and unsubscribes when the last one leaves. Each event is encoded to one frame,
which is written to every subscribed connection's outbox.

A connection waiting for the owning service's answer to its subscribe (authorization,
position, replay) is *pending*: events for it are kept, with their positions, until the
answer arrives, so that replay and live events meet with no gap and no duplicate.

Pub/sub is at most once: events published while the bus connection is down never arrive.
So after a reconnect the hub asks the owner of each channel with history to replay what
came after the last position it saw, putting the channel's connections back in pending
for the time of that request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from common.bus.listener import PubSubListener
from common.codec import dump_client, load_bus
from common.envelope import Event, Reply, position_key
from common.errors import CloseCode, ProtocolError
from common.keys import event_channel
from common.namespaces import parse_channel
from realtime_gateway.frames import text_frame
from realtime_gateway.metrics import GatewayMetrics
from realtime_gateway.protocol import replayed_event
from realtime_gateway.routing import Router
from realtime_gateway.wsproto import Outbox


if TYPE_CHECKING:
    from realtime_gateway.connection import Connection

__all__ = ["Hub"]

logger = logging.getLogger(__name__)

#: Live events a pending subscription may hold while its replay is prepared.
PENDING_LIMIT = 1000


class Hub:
    def __init__(self, listener: PubSubListener, router: Router, metrics: GatewayMetrics) -> None:
        self._listener = listener
        self._router = router
        self._metrics = metrics
        #: Channel -> its live subscribers, by outbox (the fan-out loop needs only that).
        self._live: dict[str, dict[Outbox, Connection]] = {}
        #: Channel -> the newest position an event of it had, for recovery after an outage.
        self._last: dict[str, str] = {}
        self._pending: dict[str, dict[Connection, list[tuple[str | None, bytes]]]] = {}
        self._members: dict[str, int] = {}
        self._ready: dict[str, asyncio.Future[None]] = {}

    @property
    def channel_count(self) -> int:
        return len(self._members)

    def subscribers(self, channel: str) -> int:
        return self._members.get(channel, 0)

    async def join(self, channel: str, connection: Connection, *, pending: bool) -> None:
        """Add a connection; return once the bus delivers the channel's events here."""
        if pending:
            self._pending.setdefault(channel, {})[connection] = []
        else:
            self._live.setdefault(channel, {})[connection.outbox] = connection
        self._members[channel] = self._members.get(channel, 0) + 1
        ready = self._ready.get(channel)
        if ready is None:
            ready = asyncio.get_running_loop().create_future()
            self._ready[channel] = ready
            self._metrics.channels.set(len(self._members))
            try:
                await self._listener.subscribe(event_channel(channel))
            finally:
                # Even if this joiner is cancelled: the listener keeps the channel wanted
                # and subscribes again after any reconnect, so later joiners need not wait.
                if not ready.done():
                    ready.set_result(None)
        else:
            await asyncio.shield(ready)

    def activate(self, channel: str, connection: Connection, after: str | None) -> None:
        """Make a pending subscription live: first the held events newer than ``after``."""
        held = self._pending.get(channel, {}).pop(connection, None)
        if held is None:
            return
        cutoff = _key(after)
        for position, frame in held:
            if cutoff is None or (key := _key(position)) is None or key > cutoff:
                connection.outbox.send(frame)
        self._live.setdefault(channel, {})[connection.outbox] = connection

    def leave(self, channel: str, connection: Connection) -> None:
        """Remove a connection; the last one out unsubscribes the gateway (in the background)."""
        live = self._live.get(channel)
        pending = self._pending.get(channel)
        removed = False
        if live is not None and connection.outbox in live:
            del live[connection.outbox]
            removed = True
        if pending is not None and connection in pending:
            del pending[connection]
            removed = True
        if not removed:
            return
        if live is not None and not live:
            del self._live[channel]
        if pending is not None and not pending:
            del self._pending[channel]
        remaining = self._members[channel] - 1
        if remaining:
            self._members[channel] = remaining
            return
        del self._members[channel]
        del self._ready[channel]
        self._last.pop(channel, None)
        self._metrics.channels.set(len(self._members))
        self._listener.unsubscribe(event_channel(channel))

    def on_event(self, channel: str, body: bytes) -> None:
        """Fan one bus event out to the local subscribers of its channel."""
        try:
            event = Event.from_wire(load_bus(body))
        except ProtocolError as exc:
            self._metrics.bus_errors.inc()
            logger.error("dropping an undecodable event", extra={"error": exc.message})
            return
        self._metrics.events.inc()
        if event.channel != channel:
            self._metrics.bus_errors.inc()
            logger.error("dropping an event published on another channel's bus channel")
            return
        live = self._live.get(channel)
        pending = self._pending.get(channel)
        if live is None and pending is None:
            return
        if event.position is not None:
            self._last[channel] = event.position
        frame = text_frame(dump_client(event.to_client()))
        delivered = 0
        if live is not None:
            for outbox in live:
                outbox.send(frame)
            delivered = len(live)
        if pending is not None:
            for connection, held in pending.items():
                held.append((event.position, frame))
                if len(held) > PENDING_LIMIT:
                    connection.outbox.close(CloseCode.SLOW_CONSUMER, "slow consumer")
        self._metrics.deliveries.inc(delivered)
        self._metrics.messages_out.inc(delivered)

    def recover(self) -> None:
        """After a bus reconnect: replay, per channel with history, what may have been missed."""
        for channel, since in list(self._last.items()):
            live = self._live.pop(channel, None)
            if not live:
                continue
            namespace = parse_channel(channel)
            connections = list(live.values())
            pending = self._pending.setdefault(channel, {})
            for connection in connections:
                pending[connection] = []
            # Asked as one of the subscribers: the owner authorizes a replay per user.
            self._router.request(
                connections[0],
                namespace.service,
                "subscribe",
                {"channel": channel, "since": since},
                self._recovered(channel, since, connections),
            )

    def _recovered(
        self, channel: str, since: str, connections: list[Connection]
    ) -> Callable[[Reply | None, str], None]:
        def on_reply(reply: Reply | None, why: str) -> None:
            answer = reply.data if reply is not None and reply.data is not None else None
            if answer is None:
                # Nothing better to do than go on: the held live events still follow.
                self._metrics.recoveries("failed").inc()
                logger.warning("recovery after a bus outage failed", extra={"channel": channel})
                position: str | None = since
                frames: list[bytes] = []
            else:
                self._metrics.recoveries("ok").inc()
                position, frames = _replayed(channel, since, answer)
            waiting = self._pending.get(channel, {})
            for connection in connections:
                if connection in waiting:
                    for frame in frames:
                        connection.outbox.send(frame)
                    self.activate(channel, connection, after=position)

        return on_reply


def _replayed(channel: str, since: str, answer: dict[str, Any]) -> tuple[str, list[bytes]]:
    """The newest position and the frames of an owner's replay, newer than ``since``."""
    newest = since
    frames = []
    for item in answer.get("events") or ():
        if not isinstance(item, dict) or not isinstance(item.get("position"), str):
            continue
        key = _key(item["position"])
        if key is None or key <= (_key(newest) or ()):
            continue
        newest = item["position"]
        frames.append(text_frame(dump_client(replayed_event(channel, item))))
    position = answer.get("position")
    if isinstance(position, str) and (_key(position) or ()) > (_key(newest) or ()):
        newest = position
    return newest, frames


def _key(position: str | None) -> tuple[int, ...] | None:
    if position is None:
        return None
    try:
        return position_key(position)
    except ProtocolError:
        return None
