"""The gateway's Prometheus metrics. Label values never come straight from clients."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from common.metrics import Children


__all__ = ["GatewayMetrics"]


class GatewayMetrics:
    def __init__(self) -> None:
        self.connections = Gauge("rt_gateway_connections", "Open WebSocket connections.")
        self.channels = Gauge(
            "rt_gateway_channels", "Channels this gateway is subscribed to on the bus."
        )
        self.subscriptions = Gauge(
            "rt_gateway_subscriptions",
            "Subscriptions of this gateway's connections (one per connection and channel).",
        )
        self.messages_in = Children(
            Counter(
                "rt_gateway_messages_in",
                "Client messages received, by kind (auth, ping, subscribe, request, invalid...).",
                ["kind"],
            )
        )
        self.messages_out = Counter(
            "rt_gateway_messages_out", "Frames queued to clients (replies and events)."
        )
        self.events = Counter("rt_gateway_events", "Channel events received from the bus.")
        self.deliveries = Counter(
            "rt_gateway_deliveries", "Channel events queued to subscribed connections."
        )
        self.closes = Children(
            Counter("rt_gateway_closes", "Connections the gateway closed, by close code.", ["code"])
        )
        self.requests = Children(
            Counter(
                "rt_gateway_requests",
                "Requests routed to services, by service and outcome (ok, error, unavailable).",
                ["service", "outcome"],
            )
        )
        self.request_seconds = Children(
            Histogram(
                "rt_gateway_request_seconds",
                "Round trip from a client request to the service's reply.",
                ["service"],
                buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            )
        )
        self.outbox_dropped = Counter(
            "rt_gateway_outbox_dropped_frames",
            "Frames dropped from a slow reader's outbox when it overflowed (closed with 4408).",
        )
        self.bus_reconnects = Counter(
            "rt_gateway_bus_reconnects", "Times the pub/sub connection was made again after a loss."
        )
        self.late_replies = Counter(
            "rt_gateway_late_replies", "Replies that arrived after their request expired."
        )
        self.recoveries = Children(
            Counter(
                "rt_gateway_recoveries",
                "Answers to channel replays asked after a bus reconnect or a server-side "
                "join, by outcome (ok, inexact, retried, failed).",
                ["outcome"],
            )
        )
        self.bus_errors = Counter(
            "rt_gateway_bus_errors", "Redis failures and undecodable bus messages."
        )
        # The edge (docs/security.md).
        self.refused = Children(
            Counter(
                "rt_gateway_refused",
                "Sockets, upgrades, authentications and requests refused at the edge, by "
                "rule (origin, handshake_timeout, header_too_large, too_many_headers, "
                "connect_rate, unauthenticated_per_ip, unauthenticated_full, evicted, "
                "auth_failures, user_connections, request_too_large).",
                ["reason"],
            )
        )
        self.unauthenticated = Children(
            Gauge(
                "rt_gateway_unauthenticated",
                "Sockets that have not authenticated, by stage: handshake (request head "
                "under way) or websocket (open, no valid token yet).",
                ["stage"],
            )
        )
        self.users = Gauge("rt_gateway_users", "Distinct users with an open connection.")
        self.registry_services = Gauge(
            "rt_gateway_registry_services",
            "Services announced in the registry as this gateway last read it, whose lease runs.",
        )
