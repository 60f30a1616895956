"""What every connection of one gateway process shares, and what a session asks of it."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from common.announcer import RegistryReader
from common.auth import ClaimRules, Identity, verify_token
from common.bus.listener import Listener
from common.envelope import now_ms
from common.registry import RegistryView
from common.revocation import RevocationSet
from realtime_gateway.edge import Edge
from realtime_gateway.hub import Hub
from realtime_gateway.keystore import KeyStore
from realtime_gateway.limits import Ticket
from realtime_gateway.metrics import GatewayMetrics
from realtime_gateway.revoker import Revocable, Revoker
from realtime_gateway.routing import Router
from realtime_gateway.settings import GatewaySettings


__all__ = ["Gateway"]


@dataclass(slots=True)
class Gateway:
    """The gateway's object graph (built by :func:`realtime_gateway.wiring.build_gateway`).

    It is each session's :class:`~realtime_gateway.session.Gatekeeper`.
    """

    settings: GatewaySettings
    hub: Hub
    router: Router
    listener: Listener
    revoker: Revoker
    metrics: GatewayMetrics
    edge: Edge
    keys: KeyStore
    rules: ClaimRules
    revocations: RevocationSet
    connections: dict[str, Revocable]
    #: Reads the namespace registry every RT_REGISTRY_POLL seconds.
    registry_reader: RegistryReader
    accepting: bool = True
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def next_connection_id(self) -> str:
        return f"{self.settings.gateway_id}.{next(self._ids)}"

    # The session's Gatekeeper.

    @property
    def registry(self) -> RegistryView:
        return self.registry_reader.view

    def verify(self, token: object) -> Identity:
        return verify_token(self.keys.keys, token, self.rules)

    def is_revoked(self, identity: Identity) -> bool:
        return self.revocations.refuses(identity, now_ms())

    def may_authenticate(self, ticket: Ticket | None) -> bool:
        return self.edge.may_authenticate(ticket)

    def auth_failed(self, ticket: Ticket | None) -> None:
        self.edge.auth_failed(ticket)

    def admit_user(self, ticket: Ticket | None, user: str) -> bool:
        return self.edge.authenticated(ticket, user)

    def count_message(self, kind: str) -> None:
        self.metrics.messages_in(kind).inc()

    def refuse(self, reason: str) -> None:
        self.edge.refuse(reason)
