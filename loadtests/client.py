"""A blocking, gevent-friendly client of the gateway's protocol v1, for locust.

Built on ``websocket-client``: under locust, gevent has patched ``socket``, so its blocking
calls yield to other greenlets (the asyncio ``websockets`` client cannot run inside locust,
locust issue #2383). One reader greenlet per connection hands replies to the greenlet that
waits for them (by ``ref``) and events to a callback. Every request fires a locust ``request``
event with its round-trip time, so it shows in locust's statistics.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import gevent  # type: ignore[import-untyped]
import websocket
from gevent.event import AsyncResult  # type: ignore[import-untyped]
from locust.env import Environment

from common.codec import dump_client_str, load_client


__all__ = ["BidsWebSocket", "ReplyError"]

#: Called with each event frame and the time it arrived (ms since the epoch).
EventCallback = Callable[[dict[str, Any], float], None]


class ReplyError(Exception):
    """A request got no reply in time, or the connection failed (a locust failure)."""


class BidsWebSocket:
    def __init__(
        self,
        url: str,
        environment: Environment,
        *,
        on_event: EventCallback | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._environment = environment
        self._on_event = on_event
        self._timeout = timeout
        self._refs = itertools.count(1)
        self._waiting: dict[int, AsyncResult] = {}
        self.closed = False
        started = time.perf_counter()
        try:
            self._ws = websocket.create_connection(url, timeout=timeout, enable_multithread=True)
        except (OSError, websocket.WebSocketException) as exc:
            self._fire("connect", started, 0, exc)
            raise ReplyError(f"cannot connect to {url}: {exc}") from exc
        self._fire("connect", started, 0, None)
        self._ws.settimeout(None)
        self._reader = gevent.spawn(self._read)

    def _fire(self, name: str, started: float, length: int, exc: BaseException | None) -> None:
        self._environment.events.request.fire(  # type: ignore[no-untyped-call]
            request_type="WS",
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=length,
            exception=exc,
            context={},
        )

    def _read(self) -> None:
        try:
            while True:
                raw = self._ws.recv()
                if not raw:
                    break
                frame = load_client(raw)
                kind = frame.get("type")
                if kind == "event":
                    if self._on_event is not None:
                        self._on_event(frame, time.time() * 1000)
                elif kind in ("reply", "welcome"):
                    waiter = self._waiting.pop(frame.get("ref"), None)  # type: ignore[arg-type]
                    if waiter is not None:
                        waiter.set(frame)
        except (OSError, websocket.WebSocketException):
            pass
        finally:
            self.closed = True
            for waiter in self._waiting.values():
                waiter.set_exception(ReplyError("the connection closed"))
            self._waiting.clear()

    def request(self, message: dict[str, Any], name: str | None = None) -> dict[str, Any]:
        """Send ``message`` with a fresh ref and return its reply (or welcome).

        The round trip is reported to locust as ``name`` (the message type by default): a
        success whether the reply is ok or a refusal, a failure without a reply in time.

        Raises:
            ReplyError: no reply within the timeout, or the connection closed.
        """
        ref = next(self._refs)
        result = AsyncResult()
        self._waiting[ref] = result
        payload = dump_client_str({**message, "ref": ref})
        started = time.perf_counter()
        try:
            if self.closed:
                raise ReplyError("the connection is closed")
            self._ws.send(payload)
            reply: dict[str, Any] = result.get(timeout=self._timeout)
        except gevent.Timeout:
            self._waiting.pop(ref, None)
            error = ReplyError(f"no reply to {message['type']} within {self._timeout} s")
            self._fire(name or str(message["type"]), started, len(payload), error)
            raise error from None
        except (OSError, websocket.WebSocketException, ReplyError) as exc:
            self._waiting.pop(ref, None)
            self._fire(name or str(message["type"]), started, len(payload), exc)
            raise ReplyError(str(exc)) from exc
        self._fire(name or str(message["type"]), started, len(payload), None)
        return reply

    def close(self) -> None:
        self.closed = True
        try:
            self._ws.close(timeout=1.0)
        except (OSError, websocket.WebSocketException):
            pass
        self._reader.kill(block=False)
