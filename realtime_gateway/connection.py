"""One client connection: authentication, limits, and dispatch of its messages."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from common.auth import Identity, verify_token
from common.codec import dump_client, load_client
from common.envelope import Reply, now_ms
from common.errors import CloseCode, ErrorCode, ProtocolError
from common.namespaces import Access, parse_channel
from common.revocation import Revocation
from realtime_gateway.frames import text_frame
from realtime_gateway.gateway import Gateway
from realtime_gateway.limits import Ticket
from realtime_gateway.protocol import (
    Auth,
    Ping,
    Ref,
    ServiceCall,
    Subscribe,
    Unsubscribe,
    error_reply,
    ok_reply,
    parse_message,
    parse_ref,
    replayed_event,
)
from realtime_gateway.tasks import spawn
from realtime_gateway.wsproto import Outbox


__all__ = ["Connection"]

logger = logging.getLogger(__name__)

#: Failed ``auth`` messages before the connection is closed with 4401.
MAX_AUTH_FAILURES = 3

#: The service told of subscriptions (``track``, ``untrack``, ``drop``), owner of ``presence:``.
PRESENCE = "presence"

#: Untracked channels whose last notification a connection remembers (see ``_prior``).
MAX_REMEMBERED_UNTRACKS = 32


def _error(code: ErrorCode, message: str) -> dict[str, Any]:
    return {"code": code.value, "message": message}


def _watched_channel(channel: str) -> str | None:
    """For ``presence:<channel>``: ``<channel>`` when its owner decides who may see it."""
    name, _, watched = channel.partition(":")
    if name != PRESENCE:
        return None
    try:
        namespace = parse_channel(watched)
    except ProtocolError:
        return None
    return watched if namespace.access is Access.OWNER else None


class Connection:
    """The gateway's side of one WebSocket connection.

    Outbound frames all go through :attr:`outbox`, in the order they are produced.
    """

    # Slots: ten thousand idle connections are ten thousand of these.
    __slots__ = (
        "_auth_failures",
        "_awaiting",
        "_deadline",
        "_identity",
        "_presence",
        "_presence_seq",
        "_refilled",
        "_rejected_in_row",
        "_tokens",
        "gateway",
        "id",
        "inflight",
        "outbox",
        "subscriptions",
        "ticket",
        "user",
    )

    def __init__(self, gateway: Gateway, outbox: Outbox, ticket: Ticket | None = None) -> None:
        self.gateway = gateway
        self.outbox = outbox
        #: The socket's place in the edge's per-address and per-user accounting.
        self.ticket = ticket
        self.id = gateway.next_connection_id()
        self.user: str | None = None
        #: What the connection's current token proved (a revocation is matched against it).
        self._identity: Identity | None = None
        #: Channel -> whether granted (False while the owner's answer is awaited). A granted
        #: subscription counts (towards presence, for watching it) before the client hears
        #: of it; its events may still be held while a catch-up is on the way.
        self.subscriptions: dict[str, bool] = {}
        #: Channel -> the token of the owner's answer it awaits; an unsubscribe (or a new
        #: subscribe) in the meantime replaces it, so a stale answer is recognised.
        self._awaiting: dict[str, object] = {}
        self.inflight = 0
        #: Channel -> seq of the last notification presence was told about it, positive for
        #: a track, negative for an untrack; empty once the connection's drop is sent.
        self._presence: dict[str, int] = {}
        self._presence_seq = 0
        self._auth_failures = 0
        settings = gateway.settings
        self._tokens = float(settings.rate_burst)
        self._refilled = time.monotonic()
        self._rejected_in_row = 0
        loop = asyncio.get_running_loop()
        self._deadline: asyncio.TimerHandle | None = loop.call_later(
            settings.auth_timeout, self.close, CloseCode.UNAUTHENTICATED, "authentication timeout"
        )

    @property
    def closed(self) -> bool:
        return self.outbox.closed

    def send(self, message: dict[str, Any]) -> None:
        if self.outbox.send(text_frame(dump_client(message))):
            self.gateway.metrics.messages_out.inc()

    def close(self, code: CloseCode, reason: str) -> None:
        self.outbox.close(code, reason)

    def finish(self, close_code: int | None = None) -> None:
        """Release everything the connection holds, once it is gone."""
        if self._presence:
            # Even with no channel left: presence keeps a record of every connection it was
            # told of, which the drop ends now rather than when the gateway's lease would.
            code = self.outbox.close_code or close_code
            restart = code == CloseCode.SERVICE_RESTART
            tracked = sorted(channel for channel, seq in self._presence.items() if seq > 0)
            self._tell_presence("drop", {"channels": tracked, "restart": restart})
            self._presence.clear()
        self.outbox.lost()
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        for channel in self.subscriptions:
            self.gateway.hub.leave(channel, self)
        self.subscriptions.clear()
        self._awaiting.clear()

    # Incoming messages.

    async def receive_text(self, text: str) -> None:
        """Handle one text frame from the client; every error becomes an error reply."""
        metrics = self.gateway.metrics
        ref: Ref = None
        try:
            frame = load_client(text)
            ref = parse_ref(frame)
            message = parse_message(frame, ref, self.gateway.settings.client_requests)
        except ProtocolError as exc:
            # Limited before it is answered, so that floods of garbage are limited too.
            if self._take_token(ref):
                metrics.messages_in("invalid").inc()
                self.send(error_reply(ref, {**exc.details, **_error(exc.code, exc.message)}))
            return
        if not self._take_token(ref):
            return
        match message:
            case Ping():
                metrics.messages_in("ping").inc()
                self.send({"type": "pong", "ref": message.ref})
            case Auth():
                metrics.messages_in("auth").inc()
                self.authenticate(message.token, message.ref)
            case _ if self.user is None:
                metrics.messages_in("unauthenticated").inc()
                error = _error(ErrorCode.UNAUTHENTICATED, "send 'auth' with a token first")
                self.send(error_reply(message.ref, error))
            case Subscribe():
                metrics.messages_in("subscribe").inc()
                await self._subscribe(message)
            case Unsubscribe():
                metrics.messages_in("unsubscribe").inc()
                self._unsubscribe(message)
            case ServiceCall():
                metrics.messages_in("request").inc()
                if self._fits(message, text):
                    self._call(message)

    def receive_binary(self) -> None:
        if not self._take_token(None):
            return
        self.gateway.metrics.messages_in("invalid").inc()
        error = _error(ErrorCode.BAD_REQUEST, "binary frames are not supported: send JSON text")
        self.send(error_reply(None, error))

    def _take_token(self, ref: Ref) -> bool:
        """Spend one message of the rate limit; when there is none, refuse the message."""
        settings = self.gateway.settings
        now = time.monotonic()
        self._tokens = min(
            float(settings.rate_burst),
            self._tokens + (now - self._refilled) * settings.rate_limit,
        )
        self._refilled = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            self._rejected_in_row = 0
            return True
        self._rejected_in_row += 1
        self.gateway.metrics.messages_in("limited").inc()
        if self._rejected_in_row > settings.rate_burst:
            # A client that ignores rate_limited errors is not going to slow down.
            self.close(CloseCode.RATE_LIMITED, "rate limited")
        else:
            error = _error(ErrorCode.RATE_LIMITED, "too many messages: slow down")
            self.send(error_reply(ref, error))
        return False

    # Authentication.

    def authenticate(self, token: object, ref: Ref) -> None:
        """Check a token; the first success welcomes, a later one may only extend."""
        gateway = self.gateway
        edge = gateway.edge
        if not edge.may_authenticate(self.ticket):
            # Too many failures from this address lately: the token is not even checked.
            message = "too many failed authentications from this address: retry later"
            self.send(error_reply(ref, _error(ErrorCode.RATE_LIMITED, message)))
            if self.user is None:
                self.close(CloseCode.RATE_LIMITED, "too many failed authentications")
            return
        try:
            identity = verify_token(gateway.keys.keys, token, gateway.rules)
            if gateway.revocations.refuses(identity, now_ms()):
                raise ProtocolError(ErrorCode.UNAUTHENTICATED, "the token has been revoked")
        except ProtocolError as exc:
            self.send(error_reply(ref, _error(exc.code, exc.message)))
            if exc.code is ErrorCode.UNAUTHENTICATED:
                edge.auth_failed(self.ticket)
                self._auth_failures += 1
                if self._auth_failures >= MAX_AUTH_FAILURES and self.user is None:
                    self.close(CloseCode.UNAUTHENTICATED, "too many failed authentications")
            return
        if self.user is not None and identity.user != self.user:
            error = _error(ErrorCode.FORBIDDEN, "a connection cannot change user")
            self.send(error_reply(ref, error))
            return
        if self.user is None and not edge.authenticated(self.ticket, identity.user):
            message = "too many connections for this user: close one first"
            self.send(error_reply(ref, _error(ErrorCode.RATE_LIMITED, message)))
            self.close(CloseCode.RATE_LIMITED, "too many connections for this user")
            return
        self._identity = identity
        self._schedule_expiry(identity.expires_at)
        if self.user is not None:
            self.send(ok_reply(ref, {"user": self.user, "expires_at": identity.expires_at}))
            return
        self.user = identity.user
        self.send(
            {
                "type": "welcome",
                "ref": ref,
                "connection": self.id,
                "user": self.user,
                "gateway": gateway.settings.gateway_id,
            }
        )

    def revoked_by(self, revocation: Revocation) -> bool:
        """Close the connection if ``revocation`` refuses its current token."""
        if self._identity is None or not revocation.refuses(self._identity):
            return False
        self.close(CloseCode.UNAUTHENTICATED, "revoked")
        return True

    def _schedule_expiry(self, expires_at: float) -> None:
        """One timer: to the ``token_expiring`` notice (when enabled), then to the close."""
        if self._deadline is not None:
            self._deadline.cancel()
        notice = self.gateway.settings.tokens.expiring_notice
        remaining = max(0.0, expires_at - time.time())
        loop = asyncio.get_running_loop()
        if notice > 0:
            # A token with less left than the notice is told at once (after the reply).
            delay = max(0.0, remaining - notice)
            self._deadline = loop.call_later(delay, self._expiring, expires_at)
        else:
            self._deadline = loop.call_later(
                remaining, self.close, CloseCode.UNAUTHENTICATED, "token expired"
            )

    def _expiring(self, expires_at: float) -> None:
        self.send({"type": "token_expiring", "expires_at": expires_at})
        self._deadline = asyncio.get_running_loop().call_later(
            max(0.0, expires_at - time.time()),
            self.close,
            CloseCode.UNAUTHENTICATED,
            "token expired",
        )

    # Requests to services.

    def _fits(self, message: ServiceCall, text: str) -> bool:
        """Whether the request is within its service's size (refused ``too_large`` if not).

        Streams are capped by entries, not bytes: what the gateway lets through is what
        each entry may cost Redis.
        """
        limit = self.gateway.settings.max_request_bytes.get(message.service)
        # A character is 1-4 bytes of UTF-8: encode only when the count cannot tell.
        if limit is None or len(text) * 4 <= limit:
            return True
        if len(text) <= limit and len(text.encode()) <= limit:
            return True
        self.gateway.edge.refuse("request_too_large")
        error = _error(
            ErrorCode.TOO_LARGE, f"a {message.service} request may have at most {limit} bytes"
        )
        self.send(error_reply(message.ref, {**error, "limit": limit}))
        return False

    def _call(self, message: ServiceCall) -> None:
        if self.inflight >= self.gateway.settings.max_inflight:
            error = _error(ErrorCode.RATE_LIMITED, "too many requests awaiting replies")
            self.send(error_reply(message.ref, error))
            return
        self.inflight += 1
        ref = message.ref

        def on_reply(reply: Reply | None, why: str) -> None:
            self.inflight -= 1
            if self.closed:
                return
            if reply is None:
                self.send(error_reply(ref, _error(ErrorCode.SERVICE_UNAVAILABLE, why)))
                return
            for channel in reply.unsubscribe:
                self._leave_for(message.service, channel)
            if reply.subscribe:
                spawn(self._join_then_reply(message.service, reply, ref))
            else:
                self._deliver(reply, ref)

        self.gateway.router.request(
            self, message.service, message.type, message.data, on_reply, prior=self._prior(message)
        )

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

    def _leave_for(self, service: str, channel: str) -> None:
        """A server-side unsubscribe (``chat.leave``), only from the service's own channels."""
        try:
            namespace = parse_channel(channel)
        except ProtocolError:
            return
        if namespace.service == service and channel in self.subscriptions:
            self._drop_subscription(channel)

    def _deliver(self, reply: Reply, ref: Ref) -> None:
        if reply.error is None:
            self.send(ok_reply(ref, reply.data or {}))
        else:
            self.send(error_reply(ref, reply.error))

    async def _join_then_reply(self, service: str, reply: Reply, ref: Ref) -> None:
        """A server-side subscription (``chat.join``): join, reply, then catch up.

        The service read the channel's state before the gateway subscribed, so events may
        have passed in between: live events are held while the owner is asked for those
        after the position the reply names, exactly as for a subscribe with ``since``.
        """
        joining: list[tuple[str, bool, object]] = []
        for channel in reply.subscribe:
            try:
                namespace = parse_channel(channel)
            except ProtocolError:
                namespace = None
            if namespace is None or namespace.service != service:
                # A service may only subscribe connections to its own channels.
                logger.error("refused a server-side subscription", extra={"channel": channel})
                continue
            if channel in self.subscriptions or self.closed:
                continue
            if len(self.subscriptions) >= self.gateway.settings.max_subscriptions:
                break
            self.subscriptions[channel] = False
            token = self._awaiting[channel] = object()
            joining.append((channel, namespace.history, token))
            await self.gateway.hub.join(channel, self, pending=True)
        if self.closed:
            self.finish()
            return
        # The client's unsubscribe handled while the gateway joined came after the join: it
        # stands, and the channel is not granted behind its back.
        granted = [item for item in joining if self._awaiting.get(item[0]) is item[2]]
        for channel, _, _ in granted:
            self._grant(channel)
        self._deliver(reply, ref)
        since = (reply.data or {}).get("position") if len(joining) == 1 else None
        for channel, history, _ in granted:
            del self._awaiting[channel]
            if history and isinstance(since, str):
                self.gateway.hub.catch_up(channel, self, since)
            else:
                self._go_live(channel, None)

    def _grant(self, channel: str) -> None:
        """The owner admitted the subscription: it counts from now, before the reply is sent.

        Presence is told first, so that whatever the client asks once it holds the reply
        (who is here, watching who comes and goes) already sees it.
        """
        self.subscriptions[channel] = True
        if parse_channel(channel).presence:
            self._remember(channel, self._tell_presence("track", {"channel": channel}))

    def _go_live(self, channel: str, after: str | None) -> None:
        """Deliver the channel's events: first those held newer than ``after``."""
        self.gateway.hub.activate(channel, self, after=after)

    def _tell_presence(self, kind: str, data: dict[str, Any]) -> int:
        # The sequence lets several presence instances apply one connection's changes in
        # the order they happened, whichever instance reads which.
        self._presence_seq += 1
        data["seq"] = self._presence_seq
        self.gateway.router.notify(self, PRESENCE, kind, data)
        return self._presence_seq

    def _remember(self, channel: str, seq: int) -> None:
        """Keep ``seq`` (negative for an untrack) as the channel's last notification."""
        self._presence.pop(channel, None)
        self._presence[channel] = seq
        if seq < 0 and len(self._presence) > MAX_REMEMBERED_UNTRACKS + len(self.subscriptions):
            # Bounded memory for a long-lived connection that visits many channels: the
            # oldest untracks have long been handled by presence.
            oldest = next(c for c, last in self._presence.items() if last < 0)
            del self._presence[oldest]

    # Subscriptions.

    async def _subscribe(self, message: Subscribe) -> None:
        ref, channel = message.ref, message.channel
        try:
            namespace = parse_channel(channel)
        except ProtocolError as exc:
            self.send(error_reply(ref, _error(exc.code, exc.message)))
            return
        if channel in self.subscriptions:
            error = _error(ErrorCode.ALREADY_SUBSCRIBED, f"already subscribed to {channel!r}")
            self.send(error_reply(ref, error))
            return
        if len(self.subscriptions) >= self.gateway.settings.max_subscriptions:
            error = _error(ErrorCode.TOO_MANY_SUBSCRIPTIONS, "too many subscriptions")
            self.send(error_reply(ref, error))
            return
        watched = _watched_channel(channel) if namespace.name == "presence" else None
        if watched is not None and self.subscriptions.get(watched) is not True:
            # Who is in a channel its owner guards (a private room) is for its subscribers.
            error = _error(ErrorCode.FORBIDDEN, f"subscribe to {watched!r} first")
            self.send(error_reply(ref, error))
            return
        ask_owner = namespace.history or namespace.access is Access.OWNER
        self.subscriptions[channel] = False
        try:
            # Bounded: while Redis is down the bus cannot confirm, and this connection's
            # other messages (pings too) wait behind the subscribe.
            async with asyncio.timeout(self.gateway.settings.request_timeout):
                await self.gateway.hub.join(channel, self, pending=ask_owner)
        except TimeoutError:
            del self.subscriptions[channel]
            self.gateway.hub.leave(channel, self)
            error = _error(ErrorCode.SERVICE_UNAVAILABLE, "the bus is unavailable: retry later")
            self.send(error_reply(ref, error))
            return
        if self.closed:
            self.finish()
            return
        if watched is not None and self.subscriptions.get(watched) is not True:
            # The guarded channel was left (chat.leave) while the bus subscription was made.
            self._drop_subscription(channel)
            error = _error(ErrorCode.FORBIDDEN, f"subscribe to {watched!r} first")
            self.send(error_reply(ref, error))
            return
        if not ask_owner:
            self._grant(channel)
            data: dict[str, Any] = {"channel": channel, "position": None}
            if message.since is not None:
                data["recovered"] = False
            self.send(ok_reply(ref, data))
            return
        request: dict[str, Any] = {"channel": channel}
        if message.since is not None:
            request["since"] = message.since
        token = self._awaiting[channel] = object()

        def on_reply(reply: Reply | None, why: str) -> None:
            if self.closed:
                return
            if self._awaiting.get(channel) is not token:
                error = _error(
                    ErrorCode.NOT_SUBSCRIBED, "unsubscribed before the subscription completed"
                )
                self.send(error_reply(ref, error))
                return
            del self._awaiting[channel]
            if reply is None or reply.error is not None:
                del self.subscriptions[channel]
                self.gateway.hub.leave(channel, self)
                if reply is None:
                    self.send(error_reply(ref, _error(ErrorCode.SERVICE_UNAVAILABLE, why)))
                else:
                    self.send(error_reply(ref, reply.error or {}))
                return
            self._replay(channel, ref, message.since, reply.data or {})

        self.gateway.router.request(self, namespace.service, "subscribe", request, on_reply)

    def _replay(self, channel: str, ref: Ref, since: str | None, answer: dict[str, Any]) -> None:
        """Reply, then replayed events, then held live events newer than the replay."""
        position = answer.get("position")
        if position is not None and not isinstance(position, str):
            position = str(position)
        data: dict[str, Any] = {"channel": channel, "position": position}
        if since is not None:
            data["recovered"] = bool(answer.get("recovered", False))
        self._grant(channel)
        self.send(ok_reply(ref, data))
        self._send_replay(channel, answer)
        self._go_live(channel, position)

    def _send_replay(self, channel: str, answer: dict[str, Any]) -> str | None:
        """Send the replayed events of an owner's answer; return the answer's position."""
        for event in answer.get("events") or ():
            if isinstance(event, dict):
                self.send(replayed_event(channel, event))
        position = answer.get("position")
        return position if isinstance(position, str) else None

    def _unsubscribe(self, message: Unsubscribe) -> None:
        if message.channel not in self.subscriptions:
            error = _error(ErrorCode.NOT_SUBSCRIBED, f"not subscribed to {message.channel!r}")
            self.send(error_reply(message.ref, error))
            return
        self._drop_subscription(message.channel)
        self.send(ok_reply(message.ref, {"channel": message.channel}))

    def _drop_subscription(self, channel: str) -> None:
        del self.subscriptions[channel]
        self._awaiting.pop(channel, None)
        self.gateway.hub.leave(channel, self)
        if self._presence.get(channel, 0) > 0:
            self._remember(channel, -self._tell_presence("untrack", {"channel": channel}))
        watch = f"{PRESENCE}:{channel}"
        if watch in self.subscriptions and _watched_channel(watch) == channel:
            # Who comes and goes in a guarded channel is for its subscribers only.
            self._drop_subscription(watch)
            reason = f"no longer subscribed to {channel!r}"
            self.send({"type": "unsubscribed", "channel": watch, "reason": reason})
