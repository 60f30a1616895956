"""The chat service on the bus: a batch of requests is one pipeline of script calls."""

from __future__ import annotations

import logging
from collections.abc import Callable

from redis.exceptions import RedisError

from chat_service.handlers import ChatHandlers
from chat_service.metrics import ChatMetrics
from chat_service.settings import ChatSettings
from chat_service.store import ChatStore
from common.bus.worker import Outcome
from common.envelope import Request
from common.keys import Partitions
from common.redis_client import RedisClient
from common.service import Service


__all__ = ["ChatService", "service_factory"]

logger = logging.getLogger(__name__)


class ChatService(Service):
    """Rooms, messages and their history; see docs/chat.md."""

    def __init__(
        self,
        redis: RedisClient,
        settings: ChatSettings,
        partitions: Partitions,
        metrics: ChatMetrics | None = None,
    ) -> None:
        self.store = ChatStore(redis, settings, partitions)
        self.handlers = ChatHandlers(self.store, settings, metrics)

    async def setup(self) -> None:
        # Redis may be unreachable at start (down, or refusing this process's certificate or
        # password): the scripts load on first use, and the process starts and reports unready,
        # as the other services do, instead of exiting.
        try:
            await self.store.load()
        except (RedisError, OSError) as exc:
            logger.warning("Redis unavailable at start-up", extra={"error": repr(exc)})

    async def handle_batch(self, requests: list[Request]) -> list[Outcome]:
        """Handle one read's requests in order, with one Redis round trip per partition."""
        return await self.handlers.handle_batch(requests)


def service_factory(settings: ChatSettings) -> Callable[[RedisClient, Partitions], ChatService]:
    """The factory ``run_service`` calls once Redis is connected."""

    def factory(redis: RedisClient, partitions: Partitions) -> ChatService:
        return ChatService(redis, settings, partitions, ChatMetrics())

    return factory
