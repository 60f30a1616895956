"""What every connection of one gateway process shares."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from common.auth import ClaimRules
from common.revocation import RevocationSet
from realtime_gateway.edge import Edge
from realtime_gateway.hub import Hub
from realtime_gateway.keystore import KeyStore
from realtime_gateway.metrics import GatewayMetrics
from realtime_gateway.routing import Router
from realtime_gateway.settings import GatewaySettings


if TYPE_CHECKING:
    from realtime_gateway.connection import Connection

__all__ = ["Gateway"]


@dataclass(slots=True)
class Gateway:
    settings: GatewaySettings
    hub: Hub
    router: Router
    metrics: GatewayMetrics
    edge: Edge
    keys: KeyStore
    rules: ClaimRules
    revocations: RevocationSet = field(default_factory=RevocationSet)
    connections: dict[str, Connection] = field(default_factory=dict)
    accepting: bool = True
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def next_connection_id(self) -> str:
        return f"{self.settings.gateway_id}.{next(self._ids)}"
