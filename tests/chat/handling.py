"""Helpers of the chat tests that drive :meth:`ChatService.handle_batch` on a real Redis, with
neither the bus worker nor a gateway: requests in, outcomes out."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from chat_service.app import ChatService
from chat_service.settings import ChatSettings
from common.bus.worker import Outcome
from common.envelope import Reply, Request
from common.errors import ServiceError
from common.keys import Partitions


__all__ = ["chat_request", "code", "data_of", "ok", "one", "post", "start_service"]


async def start_service(redis: Redis, partitions: int = 1, **settings: Any) -> ChatService:
    """A chat service with ``partitions`` and ``settings``, its scripts loaded."""
    service = ChatService(redis, ChatSettings(**settings), Partitions("chat", partitions))
    await service.setup()
    return service


def chat_request(kind: str, user: str = "alice", **data: Any) -> Request:
    return Request(type=kind, data=data, gateway="gw-test", connection="gw-test.1", user=user)


def data_of(outcome: Outcome) -> dict[str, Any]:
    """The data of a successful outcome (a plain answer or a Reply)."""
    if isinstance(outcome, Reply):
        assert outcome.error is None, outcome.error
        assert outcome.data is not None
        return outcome.data
    assert isinstance(outcome, dict), outcome
    return outcome


async def one(service: ChatService, kind: str, user: str = "alice", **data: Any) -> Outcome:
    return (await service.handle_batch([chat_request(kind, user, **data)]))[0]


async def ok(service: ChatService, kind: str, user: str = "alice", **data: Any) -> dict[str, Any]:
    return data_of(await one(service, kind, user, **data))


async def code(service: ChatService, kind: str, user: str = "alice", **data: Any) -> str:
    outcome = await one(service, kind, user, **data)
    assert isinstance(outcome, ServiceError), outcome
    return outcome.code


async def post(service: ChatService, room: str, count: int, user: str = "alice") -> list[str]:
    """Post ``count`` messages ``m<n>`` (client ids ``c<n>``) in one batch; their positions."""
    requests = [
        chat_request("chat.send", user, room=room, text=f"m{n}", client_id=f"c{n}")
        for n in range(count)
    ]
    return [data_of(outcome)["position"] for outcome in await service.handle_batch(requests)]
