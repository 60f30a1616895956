"""Prometheus metrics of the presence service (beside the bus worker's ``rt_service_*``).

The gauges describe the whole presence state (every instance reports the same values,
refreshed each sweep); the counters what this instance did.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from presence_service.rules import Reaped, Stats


__all__ = ["PresenceMetrics"]


class PresenceMetrics:
    def __init__(self) -> None:
        self.channels = Gauge("rt_presence_channels", "Channels with at least one user present.")
        self.users = Gauge("rt_presence_users", "Users present in at least one channel.")
        self.lingering = Gauge(
            "rt_presence_lingering", "Connections closed by a gateway restart, in their grace."
        )
        self.gateways = Gauge("rt_presence_gateways", "Gateways holding a lease.")
        self.events = Counter(
            "rt_presence_events", "Presence events published, by event.", ["event"]
        )
        self.notifications = Counter(
            "rt_presence_notifications",
            "Gateway notifications handled, by type and result (applied or stale).",
            ["type", "result"],
        )
        self.lag = Histogram(
            "rt_presence_notification_lag_seconds",
            "From a gateway sending a notification to its change being applied.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.gateways_reaped = Counter(
            "rt_presence_gateways_reaped", "Dead gateways whose connections were released."
        )
        self.connections_reaped = Counter(
            "rt_presence_connections_reaped", "Connections of dead gateways released."
        )
        self.lingering_expired = Counter(
            "rt_presence_lingering_expired", "Lingering connections released after the grace."
        )
        self.sweep_lag = Gauge(
            "rt_presence_sweep_lag_seconds",
            "How far this instance's sweeper is behind its schedule: seconds since a sweep "
            "was due, until it succeeds (a sweep's duration at most while on time).",
        )
        self.sweep_errors = Counter(
            "rt_presence_sweep_errors", "Sweeps that failed (Redis unreachable, say)."
        )

    def published(self, joins: int, leaves: int) -> None:
        if joins:
            self.events.labels("join").inc(joins)
        if leaves:
            self.events.labels("leave").inc(leaves)

    def state(self, stats: Stats) -> None:
        self.channels.set(stats.channels)
        self.users.set(stats.users)
        self.lingering.set(stats.lingering)
        self.gateways.set(stats.gateways)

    def reaped(self, reaped: Reaped) -> None:
        self.gateways_reaped.inc(len(reaped.gateways))
        self.connections_reaped.inc(reaped.connections)
        self.published(0, reaped.leaves)
