"""Channel subscriptions of local connections, and the fan-out of channel events.

The gateway subscribes to a channel on the bus once, when its first local connection
subscribes, and unsubscribes when the last one leaves. Each event is encoded to one frame,
which is written to every subscribed connection's outbox.

A connection waiting for the owning service's answer to its subscribe (authorization,
position, replay) is *pending*: events for it are kept, with their positions, until the
answer arrives, so that replay and live events meet with no gap and no duplicate.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from common.bus.listener import PubSubListener
from common.codec import dump_client, load_bus
from common.envelope import Event, position_key
from common.errors import CloseCode, ProtocolError
from common.keys import event_channel
from realtime_gateway.frames import text_frame
from realtime_gateway.metrics import GatewayMetrics
from realtime_gateway.wsproto import Outbox


if TYPE_CHECKING:
    from realtime_gateway.connection import Connection

__all__ = ["Hub"]

logger = logging.getLogger(__name__)

#: Live events a pending subscription may hold while its replay is prepared.
PENDING_LIMIT = 1000


class Hub:
    def __init__(self, listener: PubSubListener, metrics: GatewayMetrics) -> None:
        self._listener = listener
        self._metrics = metrics
        self._live: dict[str, dict[Outbox, None]] = {}
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
            self._live.setdefault(channel, {})[connection.outbox] = None
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
        self._live.setdefault(channel, {})[connection.outbox] = None

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


def _key(position: str | None) -> tuple[int, ...] | None:
    if position is None:
        return None
    try:
        return position_key(position)
    except ProtocolError:
        return None
