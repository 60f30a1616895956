"""Structured logging: JSON lines when stderr is not a terminal, with context from contextvars.

Connection and trace ids are bound in :data:`connection_id` and :data:`trace_id`; every record
logged while they are set carries them.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import time
from typing import Any

import orjson


__all__ = ["configure_logging", "connection_id", "trace_id"]

connection_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "connection_id", default=None
)
trace_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("trace_id", default=None)

_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.connection = connection_id.get()
        record.trace = trace_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line; extra fields given to the logger become keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        try:
            return orjson.dumps(entry, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        except (TypeError, orjson.JSONEncodeError):
            # Integers past 64 bits and the like: a record is never lost for an odd field.
            plain = {key: _plain(value) for key, value in entry.items()}
            return orjson.dumps(plain).decode()


class ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = [
            f"{key}={value}"
            for key, value in vars(record).items()
            if key not in _RESERVED and value is not None
        ]
        return f"{line} {' '.join(extras)}" if extras else line


class _NoClientTracebacks(logging.Filter):
    """Drops uvicorn's traceback for a client's invalid UTF-8 text frame.

    The client's fault, logged at error level with a traceback for every such frame: any
    client could flood the logs. The connection is closed with 1007, which the gateway
    counts in ``rt_gateway_closes_total``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and record.getMessage().startswith("Invalid UTF-8 sequence"))


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, str | bool | float) or type(value) is int:
        if type(value) is int and not -(2**63) <= value < 2**64:
            return str(value)
        return value
    return str(value)


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    """Send every logger (uvicorn's included) through one handler on stderr."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter())
    handler.setFormatter(
        JsonFormatter()
        if use_json
        else ConsoleFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # One line per WebSocket handshake is noise at ten thousand connections.
    logging.getLogger("uvicorn.error").setLevel(max(root.level, logging.WARNING))
    logging.getLogger("uvicorn.error").addFilter(_NoClientTracebacks())
    logging.getLogger("uvicorn.access").setLevel(max(root.level, logging.WARNING))
