"""The chat service's own settings (``RT_CHAT_*``), read once in ``__main__``."""

from __future__ import annotations

from dataclasses import dataclass

from chat_service.rules import Limits
from common.settings import Env


__all__ = ["DEFAULT_PORT", "ChatSettings"]

#: The HTTP port of /livez, /readyz and /metrics unless ``RT_PORT`` says otherwise.
DEFAULT_PORT = 8101


@dataclass(frozen=True, slots=True)
class ChatSettings:
    #: Messages kept per room (the cap of its stream); older ones are trimmed.
    retention: int = 1000
    #: Newest messages a join gives (and a subscribe whose history no longer reaches back).
    join_messages: int = 50
    #: The most messages a join or subscribe with ``since`` replays; beyond, recovered=false.
    replay_limit: int = 500
    #: Characters a message may have.
    max_text: int = 2000
    #: Members a private room may have, its creator included (and a chat.create may list).
    max_members: int = 1000
    #: Rooms one user may have created that still exist (public ones by joining a new name).
    max_rooms: int = 20
    #: Rooms per second one user may create (a token bucket in Redis), and the bucket's size.
    create_rate: float = 0.1
    create_burst: int = 5
    #: Seconds a public room with no message lives after its creation or its last join.
    empty_room_ttl: float = 3600.0
    #: Messages a chat.history page has without ``limit``, and the most it may ask for.
    history_default: int = 50
    history_max: int = 100
    #: Sends per second per user (a token bucket in Redis), and the bucket's size.
    send_rate: float = 5.0
    send_burst: int = 20
    #: At most one typing event per user and room per this many seconds.
    typing_interval: float = 2.0
    #: How long a client_id is remembered (a retry after that posts again), in seconds.
    dedupe_ttl: float = 86400.0

    @property
    def limits(self) -> Limits:
        return Limits(
            max_text=self.max_text,
            max_members=self.max_members,
            history_default=self.history_default,
            history_max=self.history_max,
        )

    @classmethod
    def from_env(cls, env: Env) -> ChatSettings:
        history_max = env.integer("CHAT_HISTORY_MAX", 100, minimum=1)
        return cls(
            retention=env.integer("CHAT_RETENTION", 1000, minimum=1),
            join_messages=env.integer("CHAT_JOIN_MESSAGES", 50),
            replay_limit=env.integer("CHAT_REPLAY_LIMIT", 500, minimum=1),
            max_text=env.integer("CHAT_MAX_TEXT", 2000, minimum=1),
            max_members=env.integer("CHAT_MAX_MEMBERS", 1000, minimum=1),
            max_rooms=env.integer("CHAT_MAX_ROOMS", 20, minimum=1),
            create_rate=env.number("CHAT_CREATE_RATE", 0.1, minimum=0.001),
            create_burst=env.integer("CHAT_CREATE_BURST", 5, minimum=1),
            empty_room_ttl=env.number("CHAT_EMPTY_ROOM_TTL", 3600.0, minimum=0.1),
            history_default=min(history_max, env.integer("CHAT_HISTORY_DEFAULT", 50, minimum=1)),
            history_max=history_max,
            send_rate=env.number("CHAT_SEND_RATE", 5.0, minimum=0.01),
            send_burst=env.integer("CHAT_SEND_BURST", 20, minimum=1),
            typing_interval=env.number("CHAT_TYPING_INTERVAL", 2.0, minimum=0.01),
            dedupe_ttl=env.number("CHAT_DEDUPE_TTL", 86400.0, minimum=1.0),
        )
