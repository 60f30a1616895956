"""The chat service's own Prometheus metrics, beside the shared ``rt_service_*`` ones."""

from __future__ import annotations

from prometheus_client import Counter


__all__ = ["ChatMetrics"]


class ChatMetrics:
    """Counters of the chat service, beside the bus worker's (requests, latency, backlog)."""

    def __init__(self) -> None:
        self.messages = Counter(
            "rt_chat_messages",
            "chat.send requests by result: posted, duplicate, or an error code.",
            ["result"],
        )
        self.typing = Counter(
            "rt_chat_typing", "chat.typing requests by result: sent or dropped.", ["result"]
        )
