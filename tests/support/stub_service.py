"""A stub service for end-to-end tests: ``python -m tests.support.stub_service [--service chat]``.

It runs through :func:`common.service.run_service`, so it is a real consumer of the service's
request stream with /livez, /readyz and /metrics. Settings come from the usual ``RT_*``
variables (``RT_REDIS_URL``, ``RT_PORT``, ``RT_INSTANCE_ID``...). It announces the real
service's request types and namespaces plus its own types (tests/support/registry.py).

Every request it handles is first appended, as JSON, to the Redis list ``<service>:handled``
(see :func:`handled_key`), so a test can see that a request was handled even when its reply
went nowhere. Request types (``<service>`` is the name given with ``--service``):

``<service>.echo``
    Replies ``{"echo": <request data>, "user": <user>, "type": <type>}``.
``<service>.slow``
    Replies ``{"slept": <delay>}`` after ``delay`` seconds (default 0.5, at most 10).
``<service>.fail``
    Refuses with ``ServiceError(code, message, detail=...)`` (code default ``refused``).
``<service>.join``
    Replies ``{"joined": <channel>}`` with a server-side subscription to ``channel``, or
    to each of ``channels`` (a list) when given; with ``position``, the reply says it, so
    that the gateway catches up from there (a ``subscribe`` with ``since``).
``subscribe``
    Answers a channel subscription from the channel's script, a JSON object stored in
    ``<service>:channel:<channel>`` (see :func:`channel_key`), all fields optional:
    ``delay`` (seconds to wait before answering), ``deny`` (refuse with ``forbidden``),
    ``position`` (the reply's position, default ``"0"``), ``recovered`` (false: the
    history no longer reaches back to ``since``, no events), ``events`` (the history, as
    ``{event, position, data}`` in order: those after ``since`` are replayed), ``live``
    (events published on the bus before the reply, to test that the gateway holds them
    and drops those not newer than ``position``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from typing import Any

from common.bus.publisher import publish_event
from common.bus.worker import BatchHandler, Outcome
from common.envelope import Event, Reply, Request, position_key
from common.errors import ErrorCode, ServiceError
from common.keys import Partitions, service_prefix
from common.redis_client import RedisClient
from common.service import run_service
from tests.support.registry import stub_offer


__all__ = ["channel_key", "handled_key", "main", "make_handler"]

MAX_DELAY = 10.0


def handled_key(service: str) -> str:
    """The Redis list of every request the stub handled, oldest first, as JSON."""
    return service_prefix(service) + "handled"


def channel_key(service: str, channel: str) -> str:
    """The Redis string holding the JSON script of one channel's ``subscribe`` answers."""
    return service_prefix(service) + "channel:" + channel


def make_handler(service: str) -> Callable[[RedisClient, Partitions], BatchHandler]:
    """The ``make_handler`` argument of :func:`run_service` for a stub named ``service``."""

    def factory(redis: RedisClient, partitions: Partitions) -> BatchHandler:
        async def handle(request: Request) -> dict[str, Any] | Reply:
            record = {
                "id": request.id,
                "type": request.type,
                "user": request.user,
                "data": request.data,
                "gateway": request.gateway,
                "connection": request.connection,
            }
            await redis.rpush(handled_key(service), json.dumps(record))
            action = request.type.removeprefix(service + ".")
            if request.type == "subscribe":
                return await _subscribe(redis, service, partitions, request)
            if action == "echo":
                return {"echo": request.data, "user": request.user, "type": request.type}
            if action == "slow":
                delay = min(float(request.data.get("delay", 0.5)), MAX_DELAY)
                await asyncio.sleep(delay)
                return {"slept": delay}
            if action == "fail":
                code = str(request.data.get("code", "refused"))
                raise ServiceError(code, "refused by the stub", detail=42)
            if action == "join":
                channel = str(request.data.get("channel"))
                channels = request.data.get("channels") or [channel]
                data = {"joined": channel}
                if "position" in request.data:
                    data["position"] = str(request.data["position"])
                return Reply(
                    request.id, request.connection, data=data, subscribe=tuple(map(str, channels))
                )
            raise ServiceError(ErrorCode.UNKNOWN_TYPE, f"the stub has no {request.type!r}")

        async def handle_each(requests: list[Request]) -> list[Outcome]:
            # One at a time, in order: a refusal answers its own request only.
            outcomes: list[Outcome] = []
            for request in requests:
                try:
                    outcomes.append(await handle(request))
                except ServiceError as exc:
                    outcomes.append(exc)
            return outcomes

        return handle_each

    return factory


async def _subscribe(
    redis: RedisClient, service: str, partitions: Partitions, request: Request
) -> dict[str, Any]:
    channel = str(request.data.get("channel"))
    raw = await redis.get(channel_key(service, channel))
    script: dict[str, Any] = json.loads(raw) if raw else {}
    await asyncio.sleep(min(float(script.get("delay", 0)), MAX_DELAY))
    if script.get("deny"):
        raise ServiceError(ErrorCode.FORBIDDEN, f"{request.user} may not read {channel}")
    for live in script.get("live", []):
        event = Event(channel, live["event"], live.get("data", {}), position=live["position"])
        await publish_event(redis, partitions, event)
    answer: dict[str, Any] = {"position": str(script.get("position", "0"))}
    since = request.data.get("since")
    if since is not None:
        after = position_key(str(since))
        answer["recovered"] = script.get("recovered", True)
        answer["events"] = (
            []
            if not answer["recovered"]
            else [
                event
                for event in script.get("events", [])
                if position_key(str(event["position"])) > after
            ]
        )
    return answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--service", default="chat", choices=["chat", "bids", "presence"])
    options = parser.parse_args()
    sys.exit(
        run_service(options.service, 0, make_handler(options.service), stub_offer(options.service))
    )


if __name__ == "__main__":
    main()
