"""A session's channels: subscribe, replay, unsubscribe, server-side joins, presence notes.

Pure: the hub's joins are actions (:class:`Join`, :class:`ServerJoin`) whose outcomes come
back as calls (``joined``, ``next_join``...), and the owner's answers likewise.
"""

from __future__ import annotations

import logging
from typing import Any

from common.envelope import Reply
from common.errors import CloseCode, ErrorCode, ProtocolError
from common.namespaces import Access
from common.partitions import partition_of
from common.registry import RegistryView
from realtime_gateway.protocol import (
    Ref,
    ServiceCall,
    Subscribe,
    Unsubscribe,
    error_reply,
    ok_reply,
    replayed_event,
)
from realtime_gateway.session.actions import (
    STOP_TIMER,
    Action,
    Activate,
    AskOwner,
    CatchUp,
    Join,
    Joining,
    Leave,
    Link,
    Notify,
    Send,
)
from realtime_gateway.settings import GatewaySettings


__all__ = ["MAX_REMEMBERED_UNTRACKS", "PRESENCE", "ChannelSession", "error", "not_running"]

logger = logging.getLogger("realtime_gateway.session")

#: The service told of subscriptions (``track``, ``untrack``, ``drop``), owner of ``presence:``.
PRESENCE = "presence"

#: Untracked channels whose last notification a connection remembers (see ``_prior``).
MAX_REMEMBERED_UNTRACKS = 32


def error(code: ErrorCode, message: str) -> dict[str, Any]:
    return {"code": code.value, "message": message}


def not_running(service: str) -> str:
    """Why a request to, or a subscribe owned by, a service whose lease passed is refused."""
    return f"service {service!r} is not running"


class ChannelSession:
    """The channel part of a connection's session (see :class:`~.core.Session`)."""

    # Slots: ten thousand idle connections are ten thousand of these.
    __slots__ = (
        "_actions",
        "_awaiting",
        "_link",
        "_presence",
        "_presence_partitions",
        "_presence_seq",
        "_registry",
        "_settings",
        "_timer",
        "subscriptions",
    )

    def __init__(self, settings: GatewaySettings, link: Link, registry: RegistryView) -> None:
        self._settings = settings
        self._link = link
        #: The namespace registry in force (replaced by each read): namespaces, leases.
        self._registry = registry
        self._actions: list[Action] = []
        #: Channel -> whether granted (False while the owner's answer is awaited). A granted
        #: subscription counts (towards presence, for watching it) before the client hears
        #: of it; its events may still be held while a catch-up is on the way.
        self.subscriptions: dict[str, bool] = {}
        #: Channel -> the token of the owner's answer it awaits; an unsubscribe (or a new
        #: subscribe) in the meantime replaces it, so a stale answer is recognised.
        self._awaiting: dict[str, object] = {}
        #: Channel -> seq of the last notification presence was told about it, positive for
        #: a track, negative for an untrack; empty once the connection's drop is sent.
        self._presence: dict[str, int] = {}
        self._presence_seq = 0
        #: The presence partitions told of this connection: each keeps a record of it,
        #: which only a drop sent there ends.
        self._presence_partitions: set[int] = set()
        #: What the connection's one timer is for (see ``Session.timer_fired``), or None.
        self._timer: object | None = None

    def _take(self) -> list[Action]:
        actions = self._actions
        self._actions = []
        return actions

    def _send(self, message: dict[str, Any]) -> None:
        self._actions.append(Send(message))

    def _refuse(self, ref: Ref, code: ErrorCode, message: str) -> None:
        self._actions.append(Send(error_reply(ref, error(code, message))))

    def finish(self, close_code: int | None = None) -> list[Action]:
        """Release everything the connection holds, once it is gone."""
        if self._presence_partitions:
            # Even with no channel left: presence keeps a record of every connection it was
            # told of, which the drop ends now rather than when the gateway's lease would.
            # One drop per partition told, with the channels still tracked there.
            code = self._link.close_code or close_code
            restart = code == CloseCode.SERVICE_RESTART
            tracked: dict[int, list[str]] = {p: [] for p in self._presence_partitions}
            for channel in sorted(channel for channel, seq in self._presence.items() if seq > 0):
                tracked.setdefault(self._presence_partition(channel), []).append(channel)
            for partition, channels in sorted(tracked.items()):
                drop = {"channels": channels, "restart": restart, "partition": partition}
                self._tell_presence("drop", drop, partition)
            self._presence.clear()
            self._presence_partitions.clear()
        if self._timer is not None:
            self._timer = None
            self._actions.append(STOP_TIMER)
        for channel in self.subscriptions:
            self._actions.append(Leave(channel))
        self.subscriptions.clear()
        self._awaiting.clear()
        return self._take()

    def _deliver(self, reply: Reply, ref: Ref) -> None:
        if reply.error is None:
            self._send(ok_reply(ref, reply.data or {}))
        else:
            self._send(error_reply(ref, reply.error))

    # A client's subscribe.

    def _guarded(self, channel: str) -> bool:
        """Whether ``channel``'s owner decides who may subscribe: then who is in it is for its
        subscribers only (``presence:<channel>``)."""
        namespace = self._registry.current.namespace_of(channel)
        return namespace is not None and namespace.access is Access.OWNER

    def _subscribe(self, message: Subscribe, now: float) -> None:
        ref, channel = message.ref, message.channel
        registry = self._registry.current
        try:
            namespace = registry.channel(channel)
        except ProtocolError as exc:
            self._refuse(ref, exc.code, exc.message)
            return
        if not registry.alive(namespace.service, now):
            self._refuse(ref, ErrorCode.SERVICE_UNAVAILABLE, not_running(namespace.service))
            return
        if channel in self.subscriptions:
            self._refuse(ref, ErrorCode.ALREADY_SUBSCRIBED, f"already subscribed to {channel!r}")
            return
        if len(self.subscriptions) >= self._settings.max_subscriptions:
            self._refuse(ref, ErrorCode.TOO_MANY_SUBSCRIPTIONS, "too many subscriptions")
            return
        watched = channel[len(PRESENCE) + 1 :] if namespace.name == PRESENCE else None
        if watched is not None and not self._guarded(watched):
            watched = None
        if watched is not None and self.subscriptions.get(watched) is not True:
            # Who is in a channel its owner guards (a private room) is for its subscribers.
            self._refuse(ref, ErrorCode.FORBIDDEN, f"subscribe to {watched!r} first")
            return
        ask_owner = namespace.history or namespace.access is Access.OWNER
        self.subscriptions[channel] = False
        join = Join(channel, namespace.service, ask_owner, ref, message.since, watched)
        self._actions.append(join)

    def join_timed_out(self, join: Join) -> list[Action]:
        """The bus did not confirm the subscription in time (Redis is down)."""
        if join.channel not in self.subscriptions:
            return self._dropped_while_joining(join)
        del self.subscriptions[join.channel]
        self._actions.append(Leave(join.channel))
        message = "the bus is unavailable: retry later"
        self._refuse(join.ref, ErrorCode.SERVICE_UNAVAILABLE, message)
        return self._take()

    def joined(self, join: Join) -> list[Action]:
        """The bus delivers the channel's events here now: grant it, or ask its owner."""
        if self._link.closed:
            return self.finish()
        channel, ref = join.channel, join.ref
        if channel not in self.subscriptions:
            return self._dropped_while_joining(join)
        if not join.pending:
            self._grant(channel)
            data: dict[str, Any] = {"channel": channel, "position": None}
            if join.since is not None:
                data["recovered"] = False
            self._send(ok_reply(ref, data))
            return self._take()
        request: dict[str, Any] = {"channel": channel}
        if join.since is not None:
            request["since"] = join.since
        token = self._awaiting[channel] = object()
        self._actions.append(AskOwner(ref, channel, join.service, join.since, request, token))
        return self._take()

    def _dropped_while_joining(self, join: Join) -> list[Action]:
        # A reply's server-side unsubscribe (chat.leave) came while the bus subscription was
        # made: it dropped the channel (or, for a guarded watch, its channel and the watch)
        # and left the hub, so only the subscribe's answer is left to give.
        if join.watched is not None:
            self._refuse(join.ref, ErrorCode.FORBIDDEN, f"subscribe to {join.watched!r} first")
        else:
            message = "unsubscribed before the subscription completed"
            self._refuse(join.ref, ErrorCode.NOT_SUBSCRIBED, message)
        return self._take()

    def owner_answered(self, ask: AskOwner, reply: Reply | None, why: str) -> list[Action]:
        """The owner's answer to a subscribe (None: none in time, ``why`` says so)."""
        if self._link.closed:
            return self._take()
        channel, ref = ask.channel, ask.ref
        if self._awaiting.get(channel) is not ask.token:
            message = "unsubscribed before the subscription completed"
            self._refuse(ref, ErrorCode.NOT_SUBSCRIBED, message)
            return self._take()
        del self._awaiting[channel]
        if reply is None or reply.error is not None:
            del self.subscriptions[channel]
            self._actions.append(Leave(channel))
            if reply is None:
                self._refuse(ref, ErrorCode.SERVICE_UNAVAILABLE, why)
            else:
                self._send(error_reply(ref, reply.error or {}))
            return self._take()
        self._replay(channel, ref, ask.since, reply.data or {})
        return self._take()

    def _replay(self, channel: str, ref: Ref, since: str | None, answer: dict[str, Any]) -> None:
        """Reply, then replayed events, then held live events newer than the replay."""
        position = answer.get("position")
        if position is not None and not isinstance(position, str):
            position = str(position)
        data: dict[str, Any] = {"channel": channel, "position": position}
        if since is not None:
            data["recovered"] = bool(answer.get("recovered", False))
        self._grant(channel)
        self._send(ok_reply(ref, data))
        for event in answer.get("events") or ():
            if isinstance(event, dict):
                self._send(replayed_event(channel, event))
        self._actions.append(Activate(channel, position))

    def _grant(self, channel: str) -> None:
        """The owner admitted the subscription: it counts from now, before the reply is sent.

        Presence is told first, so that whatever the client asks once it holds the reply
        (who is here, watching who comes and goes) already sees it.
        """
        self.subscriptions[channel] = True
        namespace = self._registry.current.namespace_of(channel)
        if namespace is not None and namespace.presence:
            self._remember(channel, self._tell_presence("track", {"channel": channel}))

    # Unsubscribing.

    def _unsubscribe(self, message: Unsubscribe) -> None:
        if message.channel not in self.subscriptions:
            error_message = f"not subscribed to {message.channel!r}"
            self._refuse(message.ref, ErrorCode.NOT_SUBSCRIBED, error_message)
            return
        self._drop_subscription(message.channel)
        self._send(ok_reply(message.ref, {"channel": message.channel}))

    def _leave_for(self, service: str, channel: str) -> None:
        """A server-side unsubscribe (``chat.leave``), only from the service's own channels."""
        namespace = self._registry.current.namespace_of(channel)
        if namespace is not None and namespace.service == service and channel in self.subscriptions:
            self._drop_subscription(channel)

    def _drop_subscription(self, channel: str) -> None:
        del self.subscriptions[channel]
        self._awaiting.pop(channel, None)
        self._actions.append(Leave(channel))
        if self._presence.get(channel, 0) > 0:
            self._remember(channel, -self._tell_presence("untrack", {"channel": channel}))
        watch = f"{PRESENCE}:{channel}"
        if watch in self.subscriptions and self._guarded(channel):
            # Who comes and goes in a guarded channel is for its subscribers only.
            self._drop_subscription(watch)
            reason = f"no longer subscribed to {channel!r}"
            self._send({"type": "unsubscribed", "channel": watch, "reason": reason})

    # Server-side subscriptions (a service's reply that names channels, as chat.join's).

    def next_join(self, joining: Joining) -> str | None:
        """The next channel of a server-side subscription to join (pending), or None: done.

        The service read the channel's state before the gateway subscribed, so events may
        have passed in between: live events are held until ``joins_done`` asks the owner for
        those after the position the reply names, exactly as for a subscribe with ``since``.
        """
        registry = self._registry.current
        for channel in joining.channels:
            namespace = registry.namespace_of(channel)
            if namespace is None or namespace.service != joining.service:
                # A service may only subscribe connections to its own channels.
                logger.error("refused a server-side subscription", extra={"channel": channel})
                continue
            if channel in self.subscriptions or self._link.closed:
                continue
            if len(self.subscriptions) >= self._settings.max_subscriptions:
                joining.channels = iter(())
                return None
            self.subscriptions[channel] = False
            token = self._awaiting[channel] = object()
            joining.joined.append((channel, namespace.history, token))
            return channel
        return None

    def joins_done(self, joining: Joining) -> list[Action]:
        """Every channel is joined: grant them, reply, then catch up (or go live)."""
        if self._link.closed:
            return self.finish()
        # The client's unsubscribe handled while the gateway joined came after the join: it
        # stands, and the channel is not granted behind its back.
        granted = [item for item in joining.joined if self._awaiting.get(item[0]) is item[2]]
        for channel, _, _ in granted:
            self._grant(channel)
        reply = joining.reply
        self._deliver(reply, joining.ref)
        since = (reply.data or {}).get("position") if len(joining.joined) == 1 else None
        for channel, history, _ in granted:
            del self._awaiting[channel]
            if history and isinstance(since, str):
                self._actions.append(CatchUp(channel, since))
            else:
                self._actions.append(Activate(channel, None))
        return self._take()

    # Presence notifications.

    def _tell_presence(self, kind: str, data: dict[str, Any], partition: int | None = None) -> int:
        """Notify presence (of ``data``'s channel, in its partition, unless ``partition``)."""
        # The sequence lets several presence instances apply one connection's changes in
        # the order they happened, whichever instance reads which.
        self._presence_seq += 1
        data["seq"] = self._presence_seq
        if partition is None:
            partition = self._presence_partition(data["channel"])
            self._presence_partitions.add(partition)
        self._actions.append(Notify(kind, data, partition))
        return self._presence_seq

    def _presence_partition(self, channel: str) -> int:
        """The presence partition of tracked channel ``channel`` (its entity there)."""
        return partition_of(channel, self._registry.current.partitions(PRESENCE) or 1)

    def _remember(self, channel: str, seq: int) -> None:
        """Keep ``seq`` (negative for an untrack) as the channel's last notification."""
        self._presence.pop(channel, None)
        self._presence[channel] = seq
        if seq < 0 and len(self._presence) > MAX_REMEMBERED_UNTRACKS + len(self.subscriptions):
            # Bounded memory for a long-lived connection that visits many channels: the
            # oldest untracks have long been handled by presence.
            oldest = next(c for c, last in self._presence.items() if last < 0)
            del self._presence[oldest]

    def _prior(self, message: ServiceCall) -> tuple[dict[str, Any], ...]:
        """For a presence read: this connection's last notification about its channel.

        The notification went to the presence stream before the read, but another presence
        instance may handle it later than this read: carried along, it is applied first
        (presence refuses it as stale wherever it was already applied), so the read sees
        every subscribe and unsubscribe this connection has had a reply to.
        """
        if message.service != PRESENCE:
            return ()
        channel = message.data.get("channel")
        seq = self._presence.get(channel) if isinstance(channel, str) else None
        if seq is None:
            return ()
        kind = "track" if seq > 0 else "untrack"
        return ({"type": kind, "data": {"channel": channel, "seq": abs(seq)}},)
