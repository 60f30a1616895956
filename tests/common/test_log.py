"""Structured logging: JSON lines with the ids bound in contextvars and the extra fields."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from common.log import configure_logging, connection_id, trace_id


_LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access")


class _Output:
    """What the one handler configure_logging installs writes, and logging's own complaints."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.complaints = io.StringIO()

    def lines(self) -> list[dict[str, Any]]:
        """The JSON objects written so far (and forgets them)."""
        text, complaints = self.stream.getvalue(), self.complaints.getvalue()
        self.stream.seek(0)
        self.stream.truncate()
        assert not complaints, complaints
        return [json.loads(line) for line in text.splitlines() if line]


@pytest.fixture
def json_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Output]:
    """Logging configured for JSON; the handler's stream captured, the previous setup restored."""
    saved = [
        (logger, logger.handlers[:], logger.level, logger.propagate)
        for logger in map(logging.getLogger, _LOGGERS)
    ]
    output = _Output()
    # logging reports a record it cannot format on sys.stderr ("--- Logging error ---").
    monkeypatch.setattr(sys, "stderr", output.complaints)
    configure_logging("info", "json")
    try:
        (handler,) = logging.getLogger().handlers
        assert isinstance(handler, logging.StreamHandler)
        assert handler.stream is output.complaints, "the handler writes to stderr"
        handler.setStream(output.stream)
        yield output
    finally:
        for logger, handlers, level, propagate in saved:
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate


def test_records_are_json_lines(json_logs: _Output) -> None:
    """Each record is one JSON object with ts, level, logger and the formatted message."""
    logging.getLogger("realtime.test").info("hello %s", "world")
    logging.getLogger("realtime.test").warning("second")
    first, second = json_logs.lines()
    assert first["msg"] == "hello world"
    assert first["level"] == "info"
    assert first["logger"] == "realtime.test"
    assert first["ts"].endswith("Z")
    assert second["level"] == "warning"
    assert "connection" not in first
    assert "trace" not in first


def test_records_carry_the_bound_connection_and_trace_ids(
    json_logs: _Output,
) -> None:
    """While ids are bound in the contextvars every record carries them, and not after."""
    logger = logging.getLogger("realtime.test")
    connection_token = connection_id.set("conn-1")
    trace_token = trace_id.set("trace-9")
    try:
        logger.info("inside")
    finally:
        trace_id.reset(trace_token)
        connection_id.reset(connection_token)
    logger.info("outside")
    inside, outside = json_logs.lines()
    assert (inside["connection"], inside["trace"]) == ("conn-1", "trace-9")
    assert "connection" not in outside
    assert "trace" not in outside


def test_extra_fields_become_keys(json_logs: _Output) -> None:
    """Fields passed as extra appear as keys with their JSON types."""
    logging.getLogger("realtime.test").info(
        "event", extra={"channel": "chat:a", "count": 3, "ok": True, "ids": ["a", "b"]}
    )
    (line,) = json_logs.lines()
    assert line["channel"] == "chat:a"
    assert line["count"] == 3
    assert line["ok"] is True
    assert line["ids"] == ["a", "b"]


def test_exceptions_are_included(json_logs: _Output) -> None:
    """A record logged with an exception carries its traceback in one field of the one line."""
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("realtime.test").exception("failed")
    (line,) = json_logs.lines()
    assert "RuntimeError: boom" in line["exc"]


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(object(), id="object"),
        pytest.param({1, 2}, id="set"),
        pytest.param(b"\xff", id="bytes"),
        pytest.param(ValueError("x"), id="exception"),
        pytest.param(float("nan"), id="nan"),
        pytest.param({1: "one"}, id="dict-with-int-keys"),
        pytest.param(2**70, id="int-beyond-64-bits"),
    ],
)
def test_unserialisable_extras_do_not_lose_the_record(json_logs: _Output, value: Any) -> None:
    """An extra value JSON cannot hold is written some other way; the record is still one line."""
    logging.getLogger("realtime.test").info("odd", extra={"odd": value})
    (line,) = json_logs.lines()
    assert line["msg"] == "odd"
    assert "odd" in line


def test_levels_below_the_configured_one_are_dropped(
    json_logs: _Output,
) -> None:
    """At level info, debug records are not written."""
    logging.getLogger("realtime.test").debug("hidden")
    logging.getLogger("realtime.test").info("shown")
    assert [line["msg"] for line in json_logs.lines()] == ["shown"]


def test_uvicorn_loggers_go_through_the_one_handler(
    json_logs: _Output,
) -> None:
    """uvicorn's error logger writes through the root handler, at warning and above only."""
    logging.getLogger("uvicorn.error").info("handshake noise")
    logging.getLogger("uvicorn.error").warning("worth seeing")
    lines = json_logs.lines()
    assert [line["msg"] for line in lines] == ["worth seeing"]
    assert lines[0]["logger"] == "uvicorn.error"
