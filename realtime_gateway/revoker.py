"""Revocations heard on the bus: kept for later ``auth`` messages, and applied to connections.

Pub/sub may lose a message while the gateway's bus connection is down, so the revocations
in force are loaded from Redis once subscribed, and again after every reconnect.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Protocol

from redis.exceptions import RedisError

from common.bus.backoff import Backoff
from common.bus.revocations import load_revocations
from common.codec import load_bus
from common.envelope import now_ms
from common.errors import ProtocolError
from common.redis_client import RedisClient
from common.revocation import Revocation, RevocationSet
from common.tasks import raise_if_cancelled
from realtime_gateway.metrics import GatewayMetrics


__all__ = ["Revocable", "Revoker"]

logger = logging.getLogger(__name__)


class Revocable(Protocol):
    """A connection, as a revocation sees it."""

    def revoked_by(self, revocation: Revocation) -> bool:
        """Close the connection if ``revocation`` refuses its current token; whether it did."""
        ...


class Revoker:
    def __init__(
        self,
        revocations: RevocationSet,
        connections: Mapping[str, Revocable],
        metrics: GatewayMetrics,
    ) -> None:
        self._revocations = revocations
        self._connections = connections
        self._metrics = metrics
        #: Whether the revocations kept in Redis have been loaded since the gateway started.
        self.loaded = False

    def on_message(self, body: bytes) -> None:
        try:
            revocation = Revocation.from_wire(load_bus(body))
        except ProtocolError as exc:
            self._metrics.bus_errors.inc()
            logger.error("dropping an invalid revocation", extra={"error": exc.message})
            return
        closed = self.apply(revocation)
        # The user or jti is logged, never a token: they identify, they do not authenticate.
        logger.info(
            "revocation applied",
            extra={"user": revocation.user, "jti": revocation.jti, "closed": closed},
        )

    def apply(self, revocation: Revocation) -> int:
        """Keep ``revocation`` and close the connections it refuses; how many were closed."""
        self._revocations.add(revocation, now_ms())
        # A scan: revocations are rare, and a per-user index would cost every connection.
        closed = 0
        for connection in list(self._connections.values()):
            if connection.revoked_by(revocation):
                closed += 1
        return closed

    async def sync(self, redis: RedisClient) -> None:
        """Load and apply the revocations kept in Redis, trying again until it succeeds."""
        backoff = Backoff()
        while True:
            raise_if_cancelled()
            try:
                revocations = await load_revocations(redis)
            except (RedisError, OSError) as exc:
                logger.warning("could not load the revocations", extra={"error": repr(exc)})
                await asyncio.sleep(backoff.next_delay())
                continue
            for revocation in revocations:
                self.apply(revocation)
            self.loaded = True
            return
