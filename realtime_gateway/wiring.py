"""The gateway's object graph, built once: router, hub, bus listener, revoker, registry
reader, and what ties
them together (which bus message goes where, what a bus reconnect sets off).

Built in the app's lifespan, on the running loop with Redis at hand. What uvicorn needs
before the loop runs (the metrics, the token keys, the edge that bounds request heads) is
made by :class:`~realtime_gateway.app.GatewayApp` and passed in.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from redis.asyncio.cluster import RedisCluster

from common.announcer import RegistryReader
from common.auth import ClaimRules
from common.bus.listener import Listener, PubSubListener
from common.bus.producer import RequestProducer
from common.bus.sharded import ShardedListener
from common.keys import EVENT_CHANNEL_PREFIX, REVOCATIONS, client_channel, reply_channel
from common.redis_client import RedisClient
from common.registry import Registry
from common.revocation import RevocationSet
from realtime_gateway.edge import Edge
from realtime_gateway.gateway import Gateway
from realtime_gateway.hub import Hub
from realtime_gateway.keystore import KeyStore
from realtime_gateway.metrics import GatewayMetrics
from realtime_gateway.revoker import Revocable, Revoker
from realtime_gateway.routing import Router
from realtime_gateway.settings import GatewaySettings
from realtime_gateway.tasks import spawn


__all__ = ["build_gateway"]


def build_gateway(
    settings: GatewaySettings,
    metrics: GatewayMetrics,
    edge: Edge,
    keys: KeyStore,
    *,
    redis: RedisClient,
    bus: RedisClient,
) -> Gateway:
    """The graph on ``redis`` (commands) and ``bus`` (the pub/sub listener's own client)."""
    replies = reply_channel(settings.gateway_id)

    def producer(on_failure: Callable[[list[str], BaseException], None]) -> RequestProducer:
        return RequestProducer(redis, maxlen=settings.bus.stream_maxlen, on_failure=on_failure)

    registry = RegistryReader(redis, settings.bus.registry_poll, on_error=metrics.bus_errors.inc)
    router = Router(
        settings.gateway_id,
        producer,
        timeout=settings.request_timeout,
        metrics=metrics,
        registry=registry.view,
    )
    connections: dict[str, Revocable] = {}
    revocations = RevocationSet()
    revoker = Revoker(revocations, connections, metrics)

    def on_message(channel: str, body: bytes) -> None:
        if channel == replies:
            router.on_message(body)
        elif channel.startswith(EVENT_CHANNEL_PREFIX):
            hub.on_event(client_channel(channel), body)
        elif channel == REVOCATIONS:
            revoker.on_message(body)

    def on_reconnect() -> None:
        metrics.bus_reconnects.inc()
        hub.recover()
        # Revocations published while the bus was away were never heard.
        spawn(revoker.sync(redis))

    listener: Listener
    if isinstance(bus, RedisCluster):
        # Replies and events are SPUBLISHed on a cluster; revocations still PUBLISHed.
        listener = ShardedListener(
            bus,
            on_message,
            [replies],
            classic=[REVOCATIONS],
            on_error=metrics.bus_errors.inc,
            on_reconnect=on_reconnect,
        )
    else:
        listener = PubSubListener(
            bus,
            on_message,
            [replies, REVOCATIONS],
            on_error=metrics.bus_errors.inc,
            on_reconnect=on_reconnect,
        )
    metrics.registry_services.set_function(lambda: _alive_services(registry.view.current))
    hub = Hub(listener, router, metrics, registry.view)
    tokens = settings.tokens
    rules = ClaimRules(issuer=tokens.issuer, audience=tokens.audience, leeway=tokens.leeway)
    return Gateway(
        settings=settings,
        hub=hub,
        router=router,
        listener=listener,
        revoker=revoker,
        metrics=metrics,
        edge=edge,
        keys=keys,
        rules=rules,
        revocations=revocations,
        connections=connections,
        registry_reader=registry,
    )


def _alive_services(registry: Registry) -> int:
    now = time.monotonic()
    return sum(1 for service in registry.expiries if registry.alive(service, now))
