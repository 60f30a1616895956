"""One exception root, and the one table of error codes and close codes.

Exception tree::

    RealtimeError
    ├── ConfigError (ValueError)          bad or missing settings; fail at start-up
    ├── ProtocolError (ValueError)        a frame or bus entry that does not parse
    └── ServiceError                      a request refused with an error code
        └── (services raise it with their own codes)

Error codes travel in replies (``{"ok": false, "error": {"code": ...}}``); close codes end a
WebSocket connection. Both tables are part of protocol v1: add entries, never rename them.
"""

from __future__ import annotations

import enum
from typing import Any


__all__ = [
    "CLOSE_RECONNECT",
    "CloseCode",
    "ConfigError",
    "ErrorCode",
    "ProtocolError",
    "RealtimeError",
    "ServiceError",
]


class ErrorCode(enum.StrEnum):
    """Codes of error replies. Services add theirs here so that one table stays true."""

    # Protocol and gateway.
    BAD_REQUEST = "bad_request"
    TOO_LARGE = "too_large"
    UNKNOWN_TYPE = "unknown_type"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    INVALID_CHANNEL = "invalid_channel"
    ALREADY_SUBSCRIBED = "already_subscribed"
    NOT_SUBSCRIBED = "not_subscribed"
    TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"
    RATE_LIMITED = "rate_limited"
    SERVICE_UNAVAILABLE = "service_unavailable"
    INTERNAL_ERROR = "internal_error"
    NOT_FOUND = "not_found"

    # Bids.
    AUCTION_NOT_FOUND = "auction_not_found"
    AUCTION_CLOSED = "auction_closed"
    BID_TOO_LOW = "bid_too_low"
    INVALID_AMOUNT = "invalid_amount"

    # Chat.
    ROOM_NOT_FOUND = "room_not_found"
    ROOM_EXISTS = "room_exists"
    MESSAGE_TOO_LONG = "message_too_long"
    EMPTY_MESSAGE = "empty_message"
    TOO_MANY_ROOMS = "too_many_rooms"
    TOO_MANY_MEMBERS = "too_many_members"

    # Poll (the Node.js service, polls_service/: its own code, listed here for the one table).
    POLL_NOT_FOUND = "poll_not_found"
    UNKNOWN_OPTION = "unknown_option"
    POLL_CLOSED = "poll_closed"


class CloseCode(enum.IntEnum):
    """WebSocket close codes the gateway sends."""

    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    UNAUTHENTICATED = 4401
    FORBIDDEN = 4403
    SLOW_CONSUMER = 4408
    RATE_LIMITED = 4429


#: Whether a client should reconnect (with backoff) after each close code. The others are
#: terminal: reconnecting with the same credentials and behaviour gets the same close.
CLOSE_RECONNECT: dict[CloseCode, bool] = {
    CloseCode.NORMAL: False,
    CloseCode.GOING_AWAY: True,
    CloseCode.POLICY_VIOLATION: False,
    CloseCode.MESSAGE_TOO_BIG: False,
    CloseCode.INTERNAL_ERROR: True,
    CloseCode.SERVICE_RESTART: True,
    CloseCode.TRY_AGAIN_LATER: True,
    CloseCode.UNAUTHENTICATED: False,
    CloseCode.FORBIDDEN: False,
    CloseCode.SLOW_CONSUMER: True,
    CloseCode.RATE_LIMITED: True,
}


class RealtimeError(Exception):
    """Root of every exception this project raises on purpose."""


class ConfigError(RealtimeError, ValueError):
    """A setting is missing or does not parse."""


class ProtocolError(RealtimeError, ValueError):
    """A client frame or bus entry does not follow the protocol.

    Args:
        code: the error code the client or caller gets.
        message: a readable explanation, safe to show to the client.
        details: extra fields merged into the error object (``field`` for an unknown field).
    """

    def __init__(self, code: ErrorCode, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


class ServiceError(RealtimeError):
    """A request refused by the service that owns it.

    Args:
        code: an error code (a member of :class:`ErrorCode` or a service's own string).
        message: a readable explanation, safe to show to the client.
        details: extra fields merged into the error object (``minimum`` for ``bid_too_low``).
    """

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = str(code)
        self.message = message
        self.details = details

    def to_error(self) -> dict[str, Any]:
        """The error object of a reply."""
        return {**self.details, "code": self.code, "message": self.message}
