"""Channel subscriptions of local connections, and the fan-out of channel events.

The gateway subscribes to a channel on the bus once, when its first local connection
subscribes, and unsubscribes when the last one leaves. Each event is encoded to one frame,
which is written to every subscribed connection's outbox.

A connection waiting for the owning service's answer to its subscribe (authorization,
position, replay) is *pending*: events for it are kept, with their positions, until the
answer arrives, so that replay and live events meet with no gap and no duplicate.

Pub/sub is at most once: events published while the bus connection is down never arrive.
So after a reconnect the hub asks the owner of each channel with history to replay what
came after the newest position its connections are known to have (of an event, or of the
owner's answer to their subscribe), putting the channel's connections back in pending for
the time of that request. A request that fails is asked again until it succeeds or
:data:`RECOVERY_DEADLINE` passes; a recovery that cannot be exact (history trimmed, no
position known, the owner unreachable) is told to the client with a ``recovery`` message
saying ``recovered: false``, as for a subscribe with ``since``.

On a Redis Cluster a service's reply and the events it published before it reach the gateway
on different connections (the shards of the reply channel and of the event channel), so an
answer may overtake live events it already covers. A connection made live at a position
therefore drops live events up to it (its *floor*) until a newer one arrives.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from common.bus.backoff import Backoff
from common.bus.listener import Listener
from common.codec import dump_client, load_bus
from common.envelope import Event, Reply, position_key
from common.errors import CloseCode, ProtocolError
from common.partitions import channel_entity
from common.registry import RegistryView
from realtime_gateway.frames import text_frame
from realtime_gateway.metrics import GatewayMetrics
from realtime_gateway.protocol import recovery_notice, replayed_event
from realtime_gateway.routing import Caller, Router
from realtime_gateway.wsproto import Outbox


__all__ = ["Hub", "Subscriber"]

logger = logging.getLogger(__name__)

#: Live events a pending subscription may hold while its replay is prepared.
PENDING_LIMIT = 1000
#: Seconds a recovery after a bus outage goes on asking the owner before giving up.
RECOVERY_DEADLINE = 30.0


class Subscriber(Caller, Protocol):
    """A local connection as the hub sees it: where its frames go, and whom to ask for it."""

    @property
    def outbox(self) -> Outbox: ...


class _Held(list[tuple[str | None, bytes]]):
    """The live events held for one pending subscription, with their positions."""

    __slots__ = ("size", "stale")

    def __init__(self) -> None:
        super().__init__()
        self.size = 0
        #: The bus reconnected since the owner was asked: its answer may predate the gap.
        self.stale = False


@dataclass(slots=True)
class _Recovery:
    """One replay asked of a channel's owner for some of its pending connections.

    Each connection's pending entry is kept: a connection that unsubscribed and subscribed
    again meanwhile waits for another answer, which this one must not settle.
    """

    channel: str
    waiting: dict[Subscriber, _Held]
    since: str
    deadline: float
    backoff: Backoff = field(default_factory=lambda: Backoff(initial=0.1, maximum=2.0))


class Hub:
    def __init__(
        self,
        listener: Listener,
        router: Router,
        metrics: GatewayMetrics,
        registry: RegistryView,
    ) -> None:
        self._listener = listener
        self._router = router
        self._metrics = metrics
        #: The namespace registry: which channels have history, and their owners.
        self._registry = registry
        #: Channel -> its live subscribers, by outbox (the fan-out loop needs only that).
        self._live: dict[str, dict[Outbox, Subscriber]] = {}
        #: Channel -> the newest position its live connections all have (of an event, or of
        #: the owner's answer to a subscribe), from which to replay after an outage.
        self._last: dict[str, str] = {}
        self._pending: dict[str, dict[Subscriber, _Held]] = {}
        self._members: dict[str, int] = {}
        self._ready: dict[str, asyncio.Future[None]] = {}
        #: Channel -> the pub/sub channel of its events the listener subscribed to.
        self._bus_names: dict[str, str] = {}
        #: Channel -> live connections made live at a position (their floor), whose events
        #: up to it may still arrive, overtaken by the answer that covered them.
        self._floors: dict[str, dict[Outbox, tuple[int, ...]]] = {}

    @property
    def channel_count(self) -> int:
        return len(self._members)

    def subscribers(self, channel: str) -> int:
        return self._members.get(channel, 0)

    async def join(self, channel: str, connection: Subscriber, *, pending: bool) -> None:
        """Add a connection; return once the bus delivers the channel's events here."""
        if pending:
            self._pending.setdefault(channel, {})[connection] = _Held()
        else:
            self._live.setdefault(channel, {})[connection.outbox] = connection
        self._members[channel] = self._members.get(channel, 0) + 1
        self._metrics.subscriptions.inc()
        ready = self._ready.get(channel)
        if ready is None:
            ready = asyncio.get_running_loop().create_future()
            self._ready[channel] = ready
            self._metrics.channels.set(len(self._members))
            # The name is kept: the one to unsubscribe from, whatever the registry says by then.
            bus_name = self._bus_names[channel] = self._registry.current.event_channel(channel)
            try:
                await self._listener.subscribe(bus_name)
            finally:
                # Even if this joiner is cancelled: the listener keeps the channel wanted
                # and subscribes again after any reconnect, so later joiners need not wait.
                if not ready.done():
                    ready.set_result(None)
        else:
            await asyncio.shield(ready)

    def activate(self, channel: str, connection: Subscriber, after: str | None) -> None:
        """Make a pending subscription live: first the held events newer than ``after``."""
        waiting = self._pending.get(channel, {})
        held = waiting.get(connection)
        if held is None:
            return
        if held.stale and after is not None:
            # Asked before the bus reconnected: what was published in the gap comes first.
            held.stale = False
            self._ask(_Recovery(channel, {connection: held}, after, self._deadline()))
            return
        del waiting[connection]
        cutoff = _key(after)
        for position, frame in held:
            if cutoff is None or (key := _key(position)) is None or key > cutoff:
                connection.outbox.send(frame)
        self._live.setdefault(channel, {})[connection.outbox] = connection
        if after is not None and cutoff is not None:
            self._floors.setdefault(channel, {})[connection.outbox] = cutoff
            last = _key(self._last.get(channel))
            if last is None or cutoff > last:
                self._last[channel] = after

    def catch_up(self, channel: str, connection: Subscriber, since: str) -> None:
        """Replay to a pending connection what the channel published after ``since``, then
        make it live: a server-side subscription, made after its owner read the state.

        Asked again while the owner does not answer, and told to the client with a
        ``recovery`` message when it cannot be exact, as after a bus outage.
        """
        held = self._pending.get(channel, {}).get(connection)
        if held is not None:
            self._ask(_Recovery(channel, {connection: held}, since, self._deadline()))

    def leave(self, channel: str, connection: Subscriber) -> None:
        """Remove a connection; the last one out unsubscribes the gateway (in the background)."""
        live = self._live.get(channel)
        pending = self._pending.get(channel)
        removed = False
        if live is not None and connection.outbox in live:
            del live[connection.outbox]
            self._drop_floor(channel, connection.outbox)
            removed = True
        if pending is not None and connection in pending:
            del pending[connection]
            removed = True
        if not removed:
            return
        self._metrics.subscriptions.dec()
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
        self._listener.unsubscribe(self._bus_names.pop(channel))

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
        key = _key(event.position)
        if event.position is not None:
            last = _key(self._last.get(channel))
            # An overtaken event is older than what the connections have: not a new last.
            if key is None or last is None or key > last:
                self._last[channel] = event.position
        frame = text_frame(dump_client(event.to_client()))
        delivered = 0
        if live is not None:
            floors = self._floors.get(channel)
            if floors and key is not None:
                delivered = self._send_above_floors(channel, live, floors, key, frame)
            else:
                for outbox in live:
                    outbox.send(frame)
                delivered = len(live)
        if pending is not None:
            for connection, held in pending.items():
                held.append((event.position, frame))
                held.size += len(frame)
                if len(held) > PENDING_LIMIT or held.size > connection.outbox.max_bytes:
                    connection.outbox.close(CloseCode.SLOW_CONSUMER, "slow consumer")
        self._metrics.deliveries.inc(delivered)
        self._metrics.messages_out.inc(delivered)

    def _send_above_floors(
        self,
        channel: str,
        live: dict[Outbox, Subscriber],
        floors: dict[Outbox, tuple[int, ...]],
        key: tuple[int, ...],
        frame: bytes,
    ) -> int:
        """Send ``frame`` (of position ``key``) to the live connections it is news to; a
        connection's floor goes once an event above it arrives (the rest are newer)."""
        delivered = 0
        for outbox in live:
            floor = floors.get(outbox)
            if floor is not None:
                if key <= floor:
                    continue  # replayed to it, or in the state its subscription read
                del floors[outbox]
            outbox.send(frame)
            delivered += 1
        if not floors:
            del self._floors[channel]
        return delivered

    def _drop_floor(self, channel: str, outbox: Outbox) -> None:
        floors = self._floors.get(channel)
        if floors is not None:
            floors.pop(outbox, None)
            if not floors:
                del self._floors[channel]

    def recover(self) -> None:
        """After a bus reconnect: replay, per channel with history, what may have been missed."""
        for waiting in self._pending.values():
            for held in waiting.values():
                held.stale = True
        deadline = self._deadline()
        for channel, live in list(self._live.items()):
            namespace = self._registry.current.namespace_of(channel)
            if namespace is None or not namespace.history:
                continue
            del self._live[channel]
            # Pending now: the replay's answer gives each a new position, held events
            # up to it are dropped.
            self._floors.pop(channel, None)
            pending = self._pending.setdefault(channel, {})
            waiting = {connection: _Held() for connection in live.values()}
            pending.update(waiting)
            since = self._last.get(channel)
            if since is None:
                # No position to replay from: the client must reload, as after since.
                self._settle(channel, waiting, None, [], recovered=False)
            else:
                self._ask(_Recovery(channel, waiting, since, deadline))

    def _deadline(self) -> float:
        return asyncio.get_running_loop().time() + RECOVERY_DEADLINE

    def _ask(self, recovery: _Recovery) -> None:
        """Ask the owner for the replay, as one of the subscribers still waiting for it."""
        pending = self._pending.get(recovery.channel, {})
        recovery.waiting = {c: h for c, h in recovery.waiting.items() if pending.get(c) is h}
        if not recovery.waiting:
            return
        namespace = self._registry.current.namespace_of(recovery.channel)
        if namespace is None:
            # Released from the registry meanwhile: no owner to replay the gap.
            self._settle(recovery.channel, recovery.waiting, None, [], recovered=False)
            return
        # The owner authorizes a replay per user: every subscriber here was authorized.
        self._router.request(
            next(iter(recovery.waiting)),
            namespace.service,
            "subscribe",
            {"channel": recovery.channel, "since": recovery.since},
            lambda reply, why: self._answered(recovery, reply),
            entity=channel_entity(recovery.channel),
        )

    def _answered(self, recovery: _Recovery, reply: Reply | None) -> None:
        channel = recovery.channel
        loop = asyncio.get_running_loop()
        if reply is None and loop.time() < recovery.deadline:
            # The owner is restarting too, or the request or its reply was lost.
            self._metrics.recoveries("retried").inc()
            loop.call_later(recovery.backoff.next_delay(), self._ask, recovery)
            return
        if reply is None or reply.error is not None or reply.data is None:
            # Given up, or refused: what the gap held is unknown.
            self._metrics.recoveries("failed").inc()
            logger.warning("a replay by the channel's owner failed", extra={"channel": channel})
            self._settle(channel, recovery.waiting, None, [], recovered=False)
            return
        answer = reply.data
        recovered = answer.get("recovered") is True
        self._metrics.recoveries("ok" if recovered else "inexact").inc()
        position, frames = _replayed(channel, recovery.since, answer)
        self._settle(channel, recovery.waiting, position, frames, recovered=recovered)

    def _settle(
        self,
        channel: str,
        waiting: dict[Subscriber, _Held],
        position: str | None,
        frames: list[bytes],
        *,
        recovered: bool,
    ) -> None:
        """Send a replay's outcome to the connections still waiting, then make them live."""
        notice = None if recovered else text_frame(dump_client(recovery_notice(channel, position)))
        pending = self._pending.get(channel, {})
        for connection, held in waiting.items():
            if pending.get(connection) is not held:
                continue
            if notice is not None:
                connection.outbox.send(notice)
            for frame in frames:
                connection.outbox.send(frame)
            self.activate(channel, connection, after=position)


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
    """The order of ``position`` (:func:`~common.envelope.position_key`); None for none or
    a malformed one, which the hub lets through rather than compares."""
    if position is None:
        return None
    try:
        return position_key(position)
    except ProtocolError:
        return None
