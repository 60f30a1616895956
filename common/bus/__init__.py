"""The Redis bus: requests on streams, replies and events on pub/sub (see docs/bus.md)."""

from __future__ import annotations

from common.bus.listener import PubSubListener
from common.bus.producer import RequestProducer
from common.bus.publisher import event_message, publish_event
from common.bus.worker import BatchHandler, ServiceWorker


__all__ = [
    "BatchHandler",
    "PubSubListener",
    "RequestProducer",
    "ServiceWorker",
    "event_message",
    "publish_event",
]
