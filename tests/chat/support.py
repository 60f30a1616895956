"""Helpers of the chat tests: chat service processes, and a client that keeps every frame.

:class:`ChatClient` never drops a frame: whatever arrives while it waits for something else
(events before a reply, say) is kept, in order, for the next wait.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection

from chat_service.keys import PartitionKeys, place_of
from chat_service.store import ChatStore, RoomCall
from common.envelope import new_id, position_key
from common.keys import Partitions
from tests.support.client import DEADLINE, Frame, connect_user, recv_json, send_json
from tests.support.processes import ManagedProcess, start_process
from tests.support.waiting import WAIT, Deadline


__all__ = [
    "BATCH_STEPS",
    "ChatClient",
    "PartitionsBatch",
    "batch_over_every_partition",
    "cut_pubsub",
    "is_message",
    "name",
    "position_key",
    "room_keys",
    "rooms_in",
    "start_chat",
]

_refs = itertools.count(1)


def start_chat(
    redis_url: str,
    *,
    log_dir: Path,
    instance: str,
    env: Mapping[str, str] | None = None,
    wait: bool = True,
) -> ManagedProcess:
    """Start ``python -m chat_service`` as ``instance`` with test settings plus ``env``."""
    settings = {
        "RT_REDIS_URL": redis_url,
        "RT_INSTANCE_ID": instance,
        # Short: backlog gauges refresh quickly, and a lost consumer group is noticed soon.
        "RT_CLAIM_INTERVAL": "0.2",
        **(env or {}),
    }
    return start_process(instance, "chat_service", log_dir=log_dir, env=settings, wait=wait)


async def cut_pubsub(redis: Redis, gateway_id: str) -> None:
    """Kill the pub/sub connection (and only it) of the gateway whose id is ``gateway_id-*``."""
    listeners = [
        client
        for client in await redis.client_list(_type="pubsub")
        if client["name"].startswith(gateway_id + "-")
    ]
    assert len(listeners) == 1, listeners
    await redis.client_kill_filter(_id=listeners[0]["id"])


def room_keys(room: str, partitions: int = 1) -> PartitionKeys:
    """The key names of the partition ``room`` lives in, of chat with ``partitions``."""
    return place_of(Partitions("chat", partitions), room).keys


def rooms_in(partitions: Partitions, partition: int, prefix: str, count: int) -> list[str]:
    """The first ``count`` room names ``<prefix><n>`` that live in ``partition``."""
    names = (f"{prefix}{n}" for n in itertools.count())
    return list(itertools.islice((n for n in names if partitions.of(n) == partition), count))


#: What :func:`batch_over_every_partition` asks of each partition, in this order.
BATCH_STEPS: Final = (
    "create",
    "join",
    "create over the quota",
    "subscribe",
    "send",
    "typing",
    "history",
)


@dataclass(frozen=True, slots=True)
class PartitionsBatch:
    calls: list[RoomCall]
    #: Per partition, the room its create, subscribe, send, typing and history are about.
    rooms: list[str]

    def results_of(self, step: str, results: Sequence[Any]) -> list[Any]:
        """The results of ``step`` (one of :data:`BATCH_STEPS`), one per partition."""
        return list(results[BATCH_STEPS.index(step) :: len(BATCH_STEPS)])


def batch_over_every_partition(store: ChatStore, partitions: Partitions) -> PartitionsBatch:
    """A batch of calls of every chat script in every partition, by user ``ann``: with a quota
    of 2 (``ChatSettings(max_rooms=2)``), her third new room of each partition is refused
    after the quota's pruning read her other rooms' hashes (keys the script builds)."""
    calls: list[RoomCall] = []
    rooms: list[str] = []
    prefix = name("batch") + "-"
    for partition in partitions:
        first, second, third = rooms_in(partitions, partition, prefix, 3)
        rooms.append(first)
        calls += [
            store.create(first, "ann", True, ("bob",)),
            store.open(second, "ann", create=True, since=None, latest=10),
            store.create(third, "ann", False, ()),
            store.open(first, "ann", create=False, since="0-0", latest=10),
            store.send(first, "ann", "hello", "c1", new_id()),
            store.typing(first, "ann", new_id()),
            store.history(first, "ann", None, 10),
        ]
    return PartitionsBatch(calls, rooms)


def name(prefix: str) -> str:
    """A name no other test uses (rooms, users)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def is_message(channel: str) -> Callable[[Frame], bool]:
    def matches(frame: Frame) -> bool:
        return (
            frame.get("type") == "event"
            and frame.get("channel") == channel
            and frame.get("event") == "message"
        )

    return matches


class ChatClient:
    """One authenticated connection; frames not yet asked for wait in :attr:`unread`."""

    def __init__(self, ws: ClientConnection, user: str) -> None:
        self.ws = ws
        self.user = user
        self.unread: list[Frame] = []

    @classmethod
    async def open(cls, url: str, user: str) -> ChatClient:
        return cls(await connect_user(url, user), user)

    async def close(self) -> None:
        await self.ws.close()

    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def send(self, frame: Frame) -> None:
        await send_json(self.ws, frame)

    async def next(self, predicate: Callable[[Frame], bool], within: float = DEADLINE) -> Frame:
        """The first unread frame that matches (earlier ones stay unread)."""
        for index, frame in enumerate(self.unread):
            if predicate(frame):
                return self.unread.pop(index)
        deadline = Deadline(within)
        while True:
            if deadline.expired():
                raise AssertionError(f"no matching frame within {within} s: {self.unread[-5:]}")
            frame = await recv_json(self.ws, deadline.remaining())
            if predicate(frame):
                return frame
            self.unread.append(frame)

    async def reply(self, ref: object, within: float = DEADLINE) -> Frame:
        return await self.next(lambda f: f.get("type") == "reply" and f.get("ref") == ref, within)

    async def request(self, kind: str, **data: Any) -> Frame:
        """Send a ``kind`` request with a fresh ref; return its reply."""
        ref = f"r{next(_refs)}"
        await self.send({"type": kind, "ref": ref, **data})
        return await self.reply(ref)

    async def ok(self, kind: str, **data: Any) -> dict[str, Any]:
        """Send a request that must succeed; return the reply's data."""
        reply = await self.request(kind, **data)
        assert reply["ok"] is True, reply
        result: dict[str, Any] = reply["data"]
        return result

    async def post(self, room: str, text: str, client_id: str) -> str:
        """Send a message; return its position."""
        data = await self.ok("chat.send", room=room, text=text, client_id=client_id)
        position: str = data["position"]
        return position

    async def messages(self, channel: str, count: int, within: float = WAIT) -> list[Frame]:
        """The next ``count`` message events of ``channel``, in order."""
        deadline = Deadline(within)
        return [await self.next(is_message(channel), deadline.remaining()) for _ in range(count)]
