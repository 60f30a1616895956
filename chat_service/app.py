"""The chat service on the bus: a batch of requests is one pipeline of script calls."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from chat_service.handlers import ChatHandlers, ChatMetrics, Plan
from chat_service.settings import ChatSettings
from chat_service.store import ChatStore
from common.bus.worker import Outcome, traced
from common.envelope import Request
from common.errors import ErrorCode, ServiceError
from common.service import Service


__all__ = ["ChatService", "chat_factory"]

logger = logging.getLogger(__name__)


class ChatService(Service):
    """Rooms, messages and their history; see docs/chat.md."""

    def __init__(
        self, redis: Redis, settings: ChatSettings, metrics: ChatMetrics | None = None
    ) -> None:
        self.store = ChatStore(redis, settings)
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
        """Handle one read's requests in order, with one Redis round trip for all of them."""
        plans: list[Plan | ServiceError] = []
        for request in requests:
            try:
                plans.append(self.handlers.plan(request))
            except ServiceError as exc:
                plans.append(exc)
        calls = [plan.call for plan in plans if isinstance(plan, Plan) and plan.call is not None]
        results = iter(await self.store.run(calls))
        outcomes: list[Outcome] = []
        for request, plan in zip(requests, plans, strict=True):
            if isinstance(plan, ServiceError):
                outcomes.append(plan)
                continue
            result = next(results) if plan.call is not None else None
            outcomes.append(_finish(request, plan, result))
        return outcomes


def _finish(request: Request, plan: Plan, result: Any) -> Outcome:
    if isinstance(result, ResponseError):
        with traced(request):
            logger.error("a chat script failed", extra={"type": request.type, "error": str(result)})
        return ServiceError(ErrorCode.INTERNAL_ERROR, "internal error")
    try:
        return plan.finish(result)
    except (IndexError, ValueError, TypeError):
        with traced(request):
            logger.exception("unexpected script result", extra={"type": request.type})
        return ServiceError(ErrorCode.INTERNAL_ERROR, "internal error")


def chat_factory(settings: ChatSettings) -> Callable[[Redis], ChatService]:
    """The factory ``run_service`` calls once Redis is connected."""

    def factory(redis: Redis) -> ChatService:
        return ChatService(redis, settings, ChatMetrics())

    return factory
