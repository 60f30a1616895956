"""The gateway's edge: what a socket may cost before it has authenticated.

uvicorn bounds neither the time a client may take to send its request head (a socket that
sends a byte every few seconds stays open for ever), nor the size of that head with
httptools (a 4 MB header that never ends is held in memory), nor the sockets doing so (they
are no WebSocket connections yet, so ``RT_MAX_CONNECTIONS`` never saw them).
:class:`GatewayHttpProtocol`, uvicorn's httptools protocol with limits, does: every socket
gets ``RT_HANDSHAKE_TIMEOUT`` seconds to complete its request head, at most
``RT_MAX_HEADER_BYTES`` bytes and ``RT_MAX_HEADERS`` header lines, and a
:class:`~realtime_gateway.limits.Ticket` of the unauthenticated pool from its first byte; a
WebSocket upgrade hands the ticket to the WebSocket protocol, which keeps it until the
connection authenticates. :class:`Edge` ties those rules to the settings and the metrics.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from realtime_gateway.limits import Buckets, EdgeLimits, Ticket, address_key
from realtime_gateway.metrics import GatewayMetrics
from realtime_gateway.origins import OriginPolicy
from realtime_gateway.settings import GatewaySettings
from realtime_gateway.wsproto import GatewayWebSocketProtocol


__all__ = ["Edge", "GatewayHttpProtocol"]

_RESPONSES = {
    status: (
        f"HTTP/1.1 {status} {phrase}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(phrase) + 1}\r\nconnection: close\r\n\r\n{phrase}\n"
    ).encode()
    for status, phrase in (
        (408, "Request Timeout"),
        (429, "Too Many Requests"),
        (431, "Request Header Fields Too Large"),
        (503, "Service Unavailable"),
    )
}


class Edge:
    """The limits of one gateway process, with its metrics."""

    def __init__(self, settings: GatewaySettings, metrics: GatewayMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.origins = OriginPolicy.parse(settings.allowed_origins, dev=settings.dev)
        self.limits = EdgeLimits(
            max_unauthenticated=settings.max_unauthenticated,
            max_unauthenticated_per_ip=settings.max_unauthenticated_per_ip,
            busy_auth_timeout=settings.busy_auth_timeout,
            max_connections_per_user=settings.max_connections_per_user,
            connects=Buckets(settings.connect_rate, settings.connect_burst),
            auth_failures=Buckets(settings.auth_failure_rate, settings.auth_failure_burst),
        )
        limits = self.limits
        metrics.unauthenticated("handshake").set_function(
            lambda: limits.unauthenticated(websocket=False)
        )
        metrics.unauthenticated("websocket").set_function(
            lambda: limits.unauthenticated(websocket=True)
        )
        metrics.users.set_function(lambda: limits.users)

    def refuse(self, reason: str) -> None:
        self.metrics.refused(reason).inc()

    def http_protocol(self) -> type[GatewayHttpProtocol]:
        """uvicorn's ``http`` protocol class for this edge."""
        return type("BoundGatewayHttpProtocol", (GatewayHttpProtocol,), {"edge": self})

    # The WebSocket connection's part (realtime_gateway.app and .connection).

    def origin_allowed(self, scope: MutableMapping[str, Any]) -> bool:
        origin = host = None
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"host":
                host = value.decode("latin-1")
        if self.origins.allows(origin, host):
            return True
        self.refuse("origin")
        return False

    def may_authenticate(self, ticket: Ticket | None) -> bool:
        if ticket is None or self.limits.may_authenticate(ticket.ip, time.monotonic()):
            return True
        self.refuse("auth_failures")
        return False

    def auth_failed(self, ticket: Ticket | None) -> None:
        if ticket is not None:
            self.limits.auth_failed(ticket.ip, time.monotonic())

    def authenticated(self, ticket: Ticket | None, user: str) -> bool:
        if ticket is None or self.limits.authenticated(ticket, user):
            return True
        self.refuse("user_connections")
        return False


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bounded request head and edge accounting."""

    edge: ClassVar[Edge]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ticket: Ticket | None = None
        self._ip = ""
        self._head_timer: Any = None
        self._head_done = False
        self._head_bytes = 0
        self._head_lines = 0
        self._head_size = 0
        self._refused = False

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._ip = address_key(self.client[0]) if self.client else ""
        self._begin_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_timer()
        self._release()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if not self._head_done:
            self._head_bytes += len(data)
        super().data_received(data)
        # What httptools holds of an unfinished head is bounded by what was fed to it.
        limit = self.edge.settings.max_header_bytes
        if not self._head_done and not self._refused and self._head_bytes > limit:
            self._refuse(431, "header_too_large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_done:  # the next request on a keep-alive connection
            self._begin_head()

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_lines += 1
        self._head_size += len(name) + len(value) + 4
        if self._head_lines <= self.edge.settings.max_headers:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_done = True
        self._stop_timer()
        settings = self.edge.settings
        if self._head_lines > settings.max_headers:
            self._refuse(431, "too_many_headers")
            return
        if self._head_size > settings.max_header_bytes:
            self._refuse(431, "header_too_large")
            return
        if self.parser.should_upgrade():
            overflow = self._ticket.overflow if self._ticket is not None else None
            if overflow is not None:
                self._refuse(503, overflow)
                return
            if not self.edge.limits.may_connect(self._ip, time.monotonic()):
                self._refuse(429, "connect_rate")
                return
        else:
            self._release()  # a plain HTTP request is served at once and holds no slot
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        if self._refused:
            return
        super().handle_websocket_upgrade()
        protocol = self.transport.get_protocol()
        ticket, self._ticket = self._ticket, None
        if ticket is None:
            return
        if isinstance(protocol, GatewayWebSocketProtocol) and not protocol.disconnected:
            ticket.websocket = True
            ticket.holder = protocol
            protocol.edge_ticket = ticket
            protocol.on_lost = lambda: self.edge.limits.release(ticket)
        else:
            self.edge.limits.release(ticket)

    def evict(self) -> None:
        """Close this socket to make room (it has been sending its head for a while)."""
        self._refused = True
        self._stop_timer()
        self._release()
        self.transport.abort()

    # Internals.

    def _begin_head(self) -> None:
        self._head_done = False
        self._head_bytes = self._head_lines = self._head_size = 0
        if self._ticket is None:
            admission = self.edge.limits.admit(self._ip, time.monotonic())
            if admission.victim is not None and admission.victim.holder is not None:
                self.edge.refuse("evicted")
                admission.victim.holder.evict()
            if admission.ticket is None:
                self._refuse(503, admission.refused or "unauthenticated_full")
                return
            admission.ticket.holder = self
            self._ticket = admission.ticket
        self._stop_timer()
        self._head_timer = self.loop.call_later(
            self.edge.settings.handshake_timeout, self._head_timeout
        )

    def _head_timeout(self) -> None:
        self._head_timer = None
        if not self._head_done and not self._refused:
            self._refuse(408, "handshake_timeout")

    def _stop_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _release(self) -> None:
        ticket, self._ticket = self._ticket, None
        if ticket is not None:
            self.edge.limits.release(ticket)

    def _refuse(self, status: int, reason: str) -> None:
        """Answer ``status`` and close: nothing more is read from this socket."""
        self.edge.refuse(reason)
        self._refused = True
        self._stop_timer()
        self._release()
        if not self.transport.is_closing():
            self.transport.write(_RESPONSES[status])
            self.transport.close()
