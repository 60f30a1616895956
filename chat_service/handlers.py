"""Chat requests: each becomes a plan (one script call, or none) and a way to read its result.

Planning validates (chat_service/rules.py) and builds the call; :meth:`ChatHandlers.handle_batch`
runs the calls of a whole batch in one pipeline and then finishes each plan with its result.
``docs/chat.md`` describes every request, reply, event and error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ResponseError

from chat_service import rules
from chat_service.metrics import ChatMetrics
from chat_service.settings import ChatSettings
from chat_service.store import (
    ChatStore,
    RoomCall,
    decode_create,
    decode_history,
    decode_open,
    decode_send,
    decode_typing,
)
from common.bus.worker import Outcome, traced
from common.envelope import Reply, Request, new_id
from common.errors import ErrorCode, ServiceError
from common.requests import check_fields


__all__ = ["ChatHandlers", "Plan"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Plan:
    """What one request needs: a script call (or none) and how to read its result."""

    call: RoomCall | None
    finish: Callable[[Any], Outcome]


class ChatHandlers:
    def __init__(
        self, store: ChatStore, settings: ChatSettings, metrics: ChatMetrics | None = None
    ) -> None:
        self._store = store
        self._settings = settings
        self._limits = settings.limits
        self._metrics = metrics
        self._planners: dict[str, Callable[[Request, str], Plan]] = {
            "chat.join": self._join,
            "chat.leave": self._leave,
            "chat.send": self._send,
            "chat.history": self._history,
            "chat.typing": self._typing,
            "chat.create": self._create,
            "subscribe": self._subscribe,
        }

    async def handle_batch(self, requests: list[Request]) -> list[Outcome]:
        """Handle one read's requests in order, with one Redis round trip per partition their
        rooms are in (one in all when the read is of one partition's stream)."""
        plans: list[Plan | ServiceError] = []
        for request in requests:
            try:
                plans.append(self.plan(request))
            except ServiceError as exc:
                plans.append(exc)
        calls = [plan.call for plan in plans if isinstance(plan, Plan) and plan.call is not None]
        results = iter(await self._store.run(calls))
        outcomes: list[Outcome] = []
        for request, plan in zip(requests, plans, strict=True):
            if isinstance(plan, ServiceError):
                outcomes.append(plan)
                continue
            result = next(results) if plan.call is not None else None
            outcomes.append(_finish(request, plan, result))
        return outcomes

    def plan(self, request: Request) -> Plan:
        """The plan of one request.

        Raises:
            ServiceError: the request is malformed, or of a type chat does not know.
        """
        planner = self._planners.get(request.type)
        if planner is None:
            raise ServiceError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {request.type!r}")
        if request.user is None:
            raise ServiceError(ErrorCode.UNAUTHENTICATED, "chat needs an authenticated user")
        try:
            check_fields(rules.REQUESTS, request.type, request.data)
            return planner(request, request.user)
        except ServiceError as exc:
            self.count(request, exc.code)
            raise

    def count(self, request: Request, result: str) -> None:
        """Count a chat.send or chat.typing outcome."""
        if self._metrics is None:
            return
        if request.type == "chat.send":
            self._metrics.messages.labels(result).inc()
        elif request.type == "chat.typing":
            self._metrics.typing.labels(result).inc()

    # Rooms.

    def _create(self, request: Request, user: str) -> Plan:
        command = rules.parse_create(request.data, self._limits)

        def finish(result: Any) -> Outcome:
            created = decode_create(result)
            if created.status == "conflict":
                return ServiceError(
                    rules.ROOM_EXISTS,
                    f"room {command.room!r} exists already",
                    room=command.room,
                )
            if created.status == "too_many_members":
                return ServiceError(
                    ErrorCode.TOO_MANY_MEMBERS,
                    f"a room has at most {created.detail} members, its creator included: "
                    "nobody was added",
                    room=command.room,
                    limit=created.detail,
                )
            refused = rules.creation_refusal(created.status, command.room, created.detail)
            if refused is not None:
                return refused
            return {
                "room": command.room,
                "channel": rules.channel_of(command.room),
                "private": command.private,
                "created": created.status == "created",
                "member_count": created.detail,
            }

        call = self._store.create(command.room, user, command.private, command.members)
        return Plan(call, finish)

    def _join(self, request: Request, user: str) -> Plan:
        command = rules.parse_join(request.data)
        channel = rules.channel_of(command.room)

        def finish(result: Any) -> Outcome:
            opened = decode_open(result)
            refused = rules.creation_refusal(opened.status, command.room, opened.detail)
            if refused is not None:
                return refused
            if opened.status not in ("ok", "created"):
                return rules.refusal(opened.status, command.room, "join it")
            data: dict[str, Any] = {
                "room": command.room,
                "channel": channel,
                "private": opened.private,
                "created": opened.status == "created",
                "position": opened.position,
                "messages": opened.messages,
            }
            if opened.recovered is not None:
                data["recovered"] = opened.recovered
            # The gateway subscribes the connection, delivers this reply, then asks for what
            # came after `position` (a subscribe with since), so the join has no gap.
            return Reply(request.id, request.connection, data=data, subscribe=(channel,))

        call = self._store.open(
            command.room,
            user,
            create=True,
            since=command.since,
            latest=self._settings.join_messages,
        )
        return Plan(call, finish)

    def _leave(self, request: Request, user: str) -> Plan:
        command = rules.parse_room_only(request.data)
        channel = rules.channel_of(command.room)
        data = {"room": command.room, "channel": channel}
        # The gateway unsubscribes the connection before it delivers the reply.
        reply = Reply(request.id, request.connection, data=data, unsubscribe=(channel,))
        return Plan(None, lambda _: reply)

    def _subscribe(self, request: Request, user: str) -> Plan:
        command = rules.parse_subscribe(request.data)

        def finish(result: Any) -> Outcome:
            opened = decode_open(result)
            if opened.status != "ok":
                return rules.refusal(opened.status, command.room, "subscribe to it")
            answer: dict[str, Any] = {"position": opened.position}
            if opened.recovered is not None:
                answer["recovered"] = opened.recovered
                answer["events"] = [rules.replayed_event(message) for message in opened.messages]
            return answer

        latest = self._settings.join_messages if command.since is not None else 0
        call = self._store.open(
            command.room, user, create=False, since=command.since, latest=latest
        )
        return Plan(call, finish)

    # Messages.

    def _send(self, request: Request, user: str) -> Plan:
        command = rules.parse_send(request.data, self._limits)

        def finish(result: Any) -> Outcome:
            sent = decode_send(result)
            outcome: Outcome
            if sent.status in ("posted", "duplicate"):
                outcome = {"id": sent.id, "position": sent.position}
            elif sent.status == "rate_limited":
                outcome = ServiceError(
                    ErrorCode.RATE_LIMITED,
                    "too many messages: slow down",
                    retry_after_ms=sent.retry_after_ms,
                )
            else:
                outcome = rules.refusal(sent.status, command.room, "post in it")
            self.count(request, outcome.code if isinstance(outcome, ServiceError) else sent.status)
            return outcome

        call = self._store.send(command.room, user, command.text, command.client_id, new_id())
        return Plan(call, finish)

    def _history(self, request: Request, user: str) -> Plan:
        command = rules.parse_history(request.data, self._limits)

        def finish(result: Any) -> Outcome:
            history = decode_history(result)
            if history.status != "ok":
                return rules.refusal(history.status, command.room, "read it")
            return {"room": command.room, "messages": history.messages, "more": history.more}

        call = self._store.history(command.room, user, command.before, command.limit)
        return Plan(call, finish)

    def _typing(self, request: Request, user: str) -> Plan:
        command = rules.parse_room_only(request.data)

        def finish(result: Any) -> Outcome:
            status = decode_typing(result)
            if status in ("sent", "dropped"):
                self.count(request, status)
                return {"sent": status == "sent"}
            refusal = rules.refusal(status, command.room, "type in it")
            self.count(request, refusal.code)
            return refusal

        return Plan(self._store.typing(command.room, user, new_id()), finish)


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
