"""One connection's session, sans I/O: client messages, replies and ticks in, actions out.

The rules of ``docs/protocol.md`` that are a connection's own live here: authentication
and its deadlines, the rate limit, the request limits, service calls, and (in
:mod:`.channels`) subscriptions and presence notifications. Nothing here awaits, reads a
clock or writes a socket: times come in as arguments, and what is to be done goes out as
:mod:`.actions`, which the shell (:mod:`realtime_gateway.connection`) runs, in the manner of
websockets' ``Protocol`` and its asyncio ``Connection``.
"""

from __future__ import annotations

import enum

from common.auth import Identity
from common.codec import load_client
from common.envelope import Reply
from common.errors import CloseCode, ErrorCode, ProtocolError
from common.revocation import Revocation
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
)
from realtime_gateway.session.actions import (
    Action,
    Call,
    Close,
    Gatekeeper,
    Joining,
    Link,
    ServerJoin,
    StartTimer,
)
from realtime_gateway.session.channels import ChannelSession, error, not_running
from realtime_gateway.settings import GatewaySettings


__all__ = ["MAX_AUTH_FAILURES", "Session"]

#: Failed ``auth`` messages before the connection is closed with 4401.
MAX_AUTH_FAILURES = 3


class _Timer(enum.Enum):
    """What the connection's one timer is for; a deadline's value is its close reason."""

    AUTHENTICATION = "authentication timeout"
    EXPIRING = "token_expiring notice"
    EXPIRY = "token expired"


class Session(ChannelSession):
    """The state of one client connection, and its rules."""

    __slots__ = (
        "_auth_failures",
        "_expires_at",
        "_gate",
        "_identity",
        "_refilled",
        "_rejected_in_row",
        "_tokens",
        "id",
        "inflight",
        "ticket",
        "user",
    )

    def __init__(
        self,
        settings: GatewaySettings,
        gate: Gatekeeper,
        link: Link,
        connection_id: str,
        ticket: Ticket | None = None,
        *,
        now: float,
    ) -> None:
        super().__init__(settings, link, gate.registry)
        self._gate = gate
        self.id = connection_id
        #: The socket's place in the edge's per-address and per-user accounting.
        self.ticket = ticket
        self.user: str | None = None
        #: What the connection's current token proved (a revocation is matched against it).
        self._identity: Identity | None = None
        self._expires_at = 0.0
        self.inflight = 0
        self._auth_failures = 0
        self._tokens = float(settings.rate_burst)
        self._refilled = now
        self._rejected_in_row = 0

    def open(self, bearer: str | None) -> list[Action]:
        """The connection is accepted: start the authentication deadline, check a header's
        token (``Authorization: Bearer``), which closes the connection when refused."""
        self._start_timer(_Timer.AUTHENTICATION, StartTimer(self._settings.auth_timeout))
        if bearer is not None:
            self._authenticate(bearer, None)
            if self.user is None:
                self._close(CloseCode.UNAUTHENTICATED, "invalid token")
        return self._take()

    def _close(self, code: CloseCode, reason: str) -> None:
        self._actions.append(Close(code, reason))

    # Incoming messages.

    def receive_text(self, text: str, now: float) -> list[Action]:
        """One text frame from the client, at ``now`` (monotonic seconds)."""
        gate = self._gate
        ref: Ref = None
        try:
            frame = load_client(text)
            ref = parse_ref(frame)
            message = parse_message(frame, ref, self._registry.current.requests)
        except ProtocolError as exc:
            # Limited before it is answered, so that floods of garbage are limited too.
            if self._take_token(ref, now):
                gate.count_message("invalid")
                self._send(error_reply(ref, {**exc.details, **error(exc.code, exc.message)}))
            return self._take()
        if not self._take_token(ref, now):
            return self._take()
        if type(message) is ServiceCall and self.user is not None:
            # The most frequent message, ahead of the match's tests.
            gate.count_message("request")
            if self._fits(message, text):
                self._call(message, now)
            return self._take()
        match message:
            case Ping():
                gate.count_message("ping")
                self._send({"type": "pong", "ref": message.ref})
            case Auth():
                gate.count_message("auth")
                self._authenticate(message.token, message.ref)
            case _ if self.user is None:
                gate.count_message("unauthenticated")
                self._refuse(
                    message.ref, ErrorCode.UNAUTHENTICATED, "send 'auth' with a token first"
                )
            case Subscribe():
                gate.count_message("subscribe")
                self._subscribe(message, now)
            case Unsubscribe():  # pragma: no branch (the last kind parse_message makes)
                gate.count_message("unsubscribe")
                self._unsubscribe(message)
        return self._take()

    def receive_binary(self, now: float) -> list[Action]:
        if self._take_token(None, now):
            self._gate.count_message("invalid")
            message = "binary frames are not supported: send JSON text"
            self._refuse(None, ErrorCode.BAD_REQUEST, message)
        return self._take()

    def _take_token(self, ref: Ref, now: float) -> bool:
        """Spend one message of the rate limit; when there is none, refuse the message."""
        settings = self._settings
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
        self._gate.count_message("limited")
        if self._rejected_in_row > settings.rate_burst:
            # A client that ignores rate_limited errors is not going to slow down.
            self._close(CloseCode.RATE_LIMITED, "rate limited")
        else:
            self._refuse(ref, ErrorCode.RATE_LIMITED, "too many messages: slow down")
        return False

    # Authentication.

    def _authenticate(self, token: object, ref: Ref) -> None:
        """Check a token; the first success welcomes, a later one may only extend."""
        gate = self._gate
        if not gate.may_authenticate(self.ticket):
            # Too many failures from this address lately: the token is not even checked.
            message = "too many failed authentications from this address: retry later"
            self._refuse(ref, ErrorCode.RATE_LIMITED, message)
            if self.user is None:
                self._close(CloseCode.RATE_LIMITED, "too many failed authentications")
            return
        try:
            identity = gate.verify(token)
            if gate.is_revoked(identity):
                raise ProtocolError(ErrorCode.UNAUTHENTICATED, "the token has been revoked")
        except ProtocolError as exc:
            self._refuse(ref, exc.code, exc.message)
            if exc.code is ErrorCode.UNAUTHENTICATED:
                gate.auth_failed(self.ticket)
                self._auth_failures += 1
                if self._auth_failures >= MAX_AUTH_FAILURES and self.user is None:
                    self._close(CloseCode.UNAUTHENTICATED, "too many failed authentications")
            return
        if self.user is not None and identity.user != self.user:
            self._refuse(ref, ErrorCode.FORBIDDEN, "a connection cannot change user")
            return
        if self.user is None and not gate.admit_user(self.ticket, identity.user):
            message = "too many connections for this user: close one first"
            self._refuse(ref, ErrorCode.RATE_LIMITED, message)
            self._close(CloseCode.RATE_LIMITED, "too many connections for this user")
            return
        self._identity = identity
        self._schedule_expiry(identity.expires_at)
        if self.user is not None:
            self._send(ok_reply(ref, {"user": self.user, "expires_at": identity.expires_at}))
            return
        self.user = identity.user
        self._send(
            {
                "type": "welcome",
                "ref": ref,
                "connection": self.id,
                "user": self.user,
                "gateway": self._settings.gateway_id,
            }
        )

    def revoke(self, revocation: Revocation) -> list[Action]:
        """Close the connection if ``revocation`` refuses its current token (else no action)."""
        if self._identity is not None and revocation.refuses(self._identity):
            self._close(CloseCode.UNAUTHENTICATED, "revoked")
        return self._take()

    def _schedule_expiry(self, expires_at: float) -> None:
        """One timer: to the ``token_expiring`` notice (when enabled), then to the close."""
        notice = self._settings.tokens.expiring_notice
        if notice > 0:
            # A token with less left than the notice is told at once (after the reply).
            self._expires_at = expires_at
            self._start_timer(_Timer.EXPIRING, StartTimer(wall=expires_at - notice))
        else:
            self._start_timer(_Timer.EXPIRY, StartTimer(wall=expires_at))

    def _start_timer(self, purpose: _Timer, timer: StartTimer) -> None:
        self._timer = purpose
        self._actions.append(timer)

    def timer_fired(self) -> list[Action]:
        """The connection's timer is due: a deadline passed, or the token expires soon."""
        purpose, self._timer = self._timer, None
        if purpose is _Timer.EXPIRING:
            self._send({"type": "token_expiring", "expires_at": self._expires_at})
            self._start_timer(_Timer.EXPIRY, StartTimer(wall=self._expires_at))
        elif isinstance(purpose, _Timer):
            self._close(CloseCode.UNAUTHENTICATED, purpose.value)
        return self._take()

    # Requests to services.

    def _fits(self, message: ServiceCall, text: str) -> bool:
        """Whether the request is within its service's size (refused ``too_large`` if not).

        Streams are capped by entries, not bytes: what the gateway lets through is what
        each entry may cost Redis.
        """
        limit = self._settings.max_request_bytes.get(message.service)
        # A character is 1-4 bytes of UTF-8: encode only when the count cannot tell.
        if limit is None or len(text) * 4 <= limit:
            return True
        if len(text) <= limit and len(text.encode()) <= limit:
            return True
        self._gate.refuse("request_too_large")
        refusal = error(
            ErrorCode.TOO_LARGE, f"a {message.service} request may have at most {limit} bytes"
        )
        self._send(error_reply(message.ref, {**refusal, "limit": limit}))
        return False

    def _call(self, message: ServiceCall, now: float) -> None:
        deadline = self._registry.current.deadlines.get(message.service)
        if deadline is None or deadline <= now:
            # Its lease passed (Registry.alive, inlined: every request passes here): no
            # instance reads the stream, so the request is not appended to wait for the timeout.
            self._refuse(message.ref, ErrorCode.SERVICE_UNAVAILABLE, not_running(message.service))
            return
        if self.inflight >= self._settings.max_inflight:
            self._refuse(message.ref, ErrorCode.RATE_LIMITED, "too many requests awaiting replies")
            return
        self.inflight += 1
        prior = self._prior(message)
        self._actions.append(Call(message.ref, message.service, message.type, message.data, prior))

    def answered(self, call: Call, reply: Reply | None, why: str) -> list[Action]:
        """The service's reply to ``call``, or None when it did not answer (``why``)."""
        self.inflight -= 1
        if self._link.closed:
            return self._take()
        if reply is None:
            self._refuse(call.ref, ErrorCode.SERVICE_UNAVAILABLE, why)
            return self._take()
        for channel in reply.unsubscribe:
            self._leave_for(call.service, channel)
        if reply.subscribe:
            joining = Joining(call.service, reply, call.ref, iter(reply.subscribe))
            self._actions.append(ServerJoin(joining))
        else:
            self._deliver(reply, call.ref)
        return self._take()
