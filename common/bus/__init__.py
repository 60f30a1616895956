"""The Redis bus: requests on streams, replies and events on pub/sub (see docs/bus.md)."""

from __future__ import annotations

from common.bus.listener import PubSubListener
from common.bus.producer import RequestProducer
from common.bus.publisher import event_message, publish_event
from common.bus.worker import RequestHandler, ServiceWorker


__all__ = [
    "PubSubListener",
    "RequestHandler",
    "RequestProducer",
    "ServiceWorker",
    "event_message",
    "publish_event",
]
