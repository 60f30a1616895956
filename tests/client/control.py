"""A loopback HTTP API through which the node tests of clients/js start and replace gateways.

Node cannot run the Python launchers, and a test of reconnection needs a gateway it may kill
(by PID, itself) and then replace by a new one **on the same port**, so that the client's URL
stays right. Every process started here is tracked by the module's launcher, which stops it.

Routes (JSON answers):

``POST /gateways``
    Starts a private gateway: ``{"name", "pid", "port", "url", "http"}``.
``POST /gateways/<name>/restart``
    Waits for that gateway's process to end (SIGTERM after a grace period if it still runs),
    then starts a new one on its port; answers like ``POST /gateways``.
``POST /outages/<gateway id>/<room>``
    A bus outage of that gateway (its pub/sub connection killed) in which the room's history
    was trimmed past every position, so that its recovery cannot be exact: ``{"killed": n}``.
``GET /streams/<service>``
    ``{"length": n}``: the entries in the service's request stream (so a test can wait until
    a request has reached the bus).
"""

from __future__ import annotations

import json
import re
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import redis

from chat_service.keys import place_of
from common.keys import Partitions, request_stream
from tests.support.launcher import ModuleProcesses
from tests.support.processes import ManagedProcess


__all__ = ["Control", "serve_control"]

#: How long a gateway being replaced may keep running (a SIGTERM drains for a while).
_EXIT_GRACE = 10.0


def _describe(name: str, process: ManagedProcess) -> dict[str, Any]:
    return {
        "name": name,
        "pid": process.pid,
        "port": process.port,
        "url": process.ws_url,
        "http": process.base_url,
    }


class Control:
    """The processes the node tests may start, replace and signal."""

    def __init__(self, launcher: ModuleProcesses, redis_url: str) -> None:
        self.launcher = launcher
        self.redis_url = redis_url
        self.gateways: dict[str, ManagedProcess] = {}
        self._lock = threading.Lock()

    def start_gateway(self) -> dict[str, Any]:
        process = self.launcher.gateway()
        with self._lock:
            name = f"g{len(self.gateways) + 1}"
            self.gateways[name] = process
        return _describe(name, process)

    def restart_gateway(self, name: str) -> dict[str, Any]:
        with self._lock:
            old = self.gateways[name]
        old.wait(_EXIT_GRACE)  # a test killed it, or sent SIGTERM and it is draining
        old.stop()
        new = self.launcher.gateway(port=old.port)
        with self._lock:
            self.gateways[name] = new
        return _describe(name, new)

    def stream_length(self, service: str) -> dict[str, Any]:
        with redis.Redis.from_url(self.redis_url) as client:
            return {"length": int(client.xlen(request_stream(service, 0)))}

    def outage(self, gateway_id: str, room: str) -> dict[str, Any]:
        with redis.Redis.from_url(self.redis_url, decode_responses=True) as client:
            # What chat's retention records when it trims (chat_service/lua/send.lua).
            room_key = place_of(Partitions("chat"), room).keys.room(room)
            client.hset(room_key, "trimmed", "99999999999999-0")
            listeners = [
                entry["id"]
                for entry in client.client_list(_type="pubsub")
                if entry["name"] == gateway_id
            ]
            for listener in listeners:
                client.client_kill_filter(_id=listener)
        return {"killed": len(listeners)}

    def reset(self) -> None:
        """After a test: resume whatever it paused (SIGSTOP) and stop its private gateways."""
        for process in self.launcher.processes:
            process.signal(signal.SIGCONT)
        with self._lock:
            gateways = list(self.gateways.values())
            self.gateways.clear()
        for process in gateways:
            process.stop()


_ROUTES: list[tuple[str, re.Pattern[str], Callable[[Control, re.Match[str]], dict[str, Any]]]] = [
    ("POST", re.compile(r"/gateways"), lambda control, _: control.start_gateway()),
    (
        "POST",
        re.compile(r"/gateways/(\w+)/restart"),
        lambda control, match: control.restart_gateway(match[1]),
    ),
    (
        "POST",
        re.compile(r"/outages/([\w.-]+)/([\w.-]+)"),
        lambda control, match: control.outage(match[1], match[2]),
    ),
    ("GET", re.compile(r"/streams/(\w+)"), lambda control, match: control.stream_length(match[1])),
]


def _handler(control: Control) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

        def _route(self, method: str) -> None:
            for verb, pattern, action in _ROUTES:
                match = pattern.fullmatch(self.path)
                if verb == method and match:
                    try:
                        self._answer(200, action(control, match))
                    except Exception as exc:
                        self._answer(500, {"error": repr(exc)})
                    return
            self._answer(404, {"error": f"no route {method} {self.path}"})

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # pytest shows the node output; the access log adds nothing

    return Handler


@contextmanager
def serve_control(control: Control) -> Iterator[str]:
    """Serve ``control`` on a free loopback port for the block; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(control))
    thread = threading.Thread(target=server.serve_forever, name="client-control", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
