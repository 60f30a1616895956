"""The request benchmark's driver (bench/request.py): clients that each joined a chat room of
their own, and the run that fires one request type at a time from all of them and measures it.

Every connection is its own user in its own public room (``bench-<i>``): a ``chat.join``
creates the room and subscribes the connection (which also makes it present there, so that
``presence.count`` of ``chat:bench-<i>`` is allowed), and sends never contend on one room.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import time
from collections.abc import Callable
from typing import Any

from bench.request_report import Tally
from bench.wsclient import WsClient, connect
from loadtests.stack import Stack, cpu_seconds


__all__ = ["REQUEST_KINDS", "RequestRun", "Requester"]

REPLY_TIMEOUT = 10.0
CONNECT_TIMEOUT = 10.0
#: How long a phase waits, once it stopped sending, for the replies still owed.
DRAIN_TIMEOUT = 15.0
#: The most requests a connection may have in flight: the gateway's RT_MAX_INFLIGHT default,
#: and what bench.wsclient queues unread.
MAX_WINDOW = 64


def _chat_send(client: Requester, ref: int) -> dict[str, Any]:
    # client_id unique per message: every send posts (a repeat would be a de-duplicated no-op).
    return {"type": "chat.send", "ref": ref, "room": client.room, "text": "bench",
            "client_id": f"c-{ref}"}  # fmt: skip


def _presence_count(client: Requester, ref: int) -> dict[str, Any]:
    return {"type": "presence.count", "ref": ref, "channel": f"chat:{client.room}"}


#: Each request type the benchmark drives: the frame it sends, and which service answers.
REQUEST_KINDS: dict[str, tuple[Callable[[Requester, int], dict[str, Any]], str]] = {
    "chat.send": (_chat_send, "chat"),
    "presence.count": (_presence_count, "presence"),
}


class Requester(WsClient):
    """One authenticated connection, member of its own room, sending one request type."""

    def __init__(self, port: int, index: int) -> None:
        super().__init__("127.0.0.1", port)
        self.user = f"requester-{index}"
        self.room = f"bench-{index}"
        self.ref = 0
        #: ref -> (perf_counter_ns at send, whether it counts for the measured window).
        self.sent: dict[int, tuple[int, bool]] = {}
        self.make: Callable[[Requester, int], dict[str, Any]] = _chat_send

    def fire(self, measured: bool) -> None:
        self.ref += 1
        self.sent[self.ref] = (time.perf_counter_ns(), measured)
        self.send_json(self.make(self, self.ref))


async def _receive(client: WsClient) -> dict[str, Any]:
    async with asyncio.timeout(REPLY_TIMEOUT):
        return await client.receive()


class RequestRun:
    """The connections of one stack, and one phase per request type on them."""

    def __init__(self, options: argparse.Namespace, stack: Stack, services: dict[str, int]):
        self.options = options
        self.stack = stack
        #: Service name -> PID of its one instance.
        self.services = services
        self.clients: list[Requester] = []

    async def open(self) -> None:
        port = self.stack.gateways[0].port
        for index in range(self.options.connections):
            async with asyncio.timeout(CONNECT_TIMEOUT):
                client = await connect(functools.partial(Requester, port, index), "127.0.0.1", port)
            self.clients.append(client)
            client.send_json({"type": "auth", "token": self.stack.token(client.user)})
            welcome = await _receive(client)
            if welcome.get("type") != "welcome":
                raise RuntimeError(f"auth failed: {welcome}")
            client.send_json({"type": "chat.join", "ref": 0, "room": client.room})
            joined = await _receive(client)
            if not joined.get("ok"):
                raise RuntimeError(f"chat.join failed: {joined}")

    def close(self) -> None:
        for client in self.clients:
            client.close()

    async def _receive_replies(self, client: Requester, tally: Tally, state: _Phase) -> None:
        """Take the replies of one connection until the phase cancels it."""
        while True:
            try:
                if client.sent:
                    reply = await _receive(client)
                else:  # nothing owed (open loop, between sends): no deadline to miss
                    reply = await client.receive()
            except (TimeoutError, ConnectionError) as exc:
                tally.lost_connections += 1
                tally.note(f"{client.user}: {exc!r}")
                return
            now = time.perf_counter_ns()
            entry = client.sent.pop(reply.get("ref", -1), None)
            if entry is None:
                tally.unexpected += 1  # a second reply, or one to nothing we sent
                continue
            sent_at, measured = entry
            error = None if reply.get("ok") else str(reply.get("error", {}).get("code"))
            tally.answer(error, now - sent_at if measured else None)
            if state.sending:
                if state.closed_loop:
                    client.fire(state.measuring)
            elif not client.sent and not any(other.sent for other in self.clients):
                state.drained.set()

    async def phase(self, kind: str) -> Tally:
        """Drive ``kind`` from every connection: warm-up, the measured window, the drain."""
        options = self.options
        make, owner = REQUEST_KINDS[kind]
        state = _Phase(closed_loop=options.rate == 0)
        tally = Tally(kind, owner)
        for client in self.clients:
            client.make = make
        first_ref = sum(client.ref for client in self.clients)
        receivers = [
            asyncio.create_task(self._receive_replies(client, tally, state))
            for client in self.clients
        ]
        pids = {
            "gateway": [self.stack.gateways[0].pid],
            owner: [self.services[owner]],
            # Every node of a cluster: what matters is Redis's CPU per request in all.
            "redis": self.stack.redis.pids,
            "driver": [os.getpid()],
        }
        loop = asyncio.get_running_loop()
        try:
            if state.closed_loop:
                for client in self.clients:
                    for _ in range(options.window):
                        client.fire(False)
            await self._pace(loop.time() + options.warmup, state, tally)
            before = {name: sum(map(cpu_seconds, group)) for name, group in pids.items()}
            started = loop.time()
            state.measuring = True
            await self._pace(started + options.duration, state, tally)
            state.measuring = False
            tally.elapsed = loop.time() - started
            after = {name: sum(map(cpu_seconds, group)) for name, group in pids.items()}
            tally.cpu = {name: after[name] - before[name] for name in pids}
            state.sending = False
            if any(client.sent for client in self.clients):
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(DRAIN_TIMEOUT):
                        await state.drained.wait()
        finally:
            for task in receivers:
                task.cancel()
            await asyncio.gather(*receivers, return_exceptions=True)
        tally.sent = sum(client.ref for client in self.clients) - first_ref
        tally.unanswered = sum(len(client.sent) for client in self.clients)
        for client in self.clients:
            client.sent.clear()
        return tally

    async def _pace(self, until: float, state: _Phase, tally: Tally) -> None:
        """Until ``until``: in the closed loop just wait (each reply fires the next request);
        in the open loop send ``--rate`` per second round-robin, skipping full windows."""
        loop = asyncio.get_running_loop()
        if state.closed_loop:
            await asyncio.sleep(max(0.0, until - loop.time()))
            return
        rate, window, count = self.options.rate, self.options.window, len(self.clients)
        start, due_sent = loop.time(), 0
        while (now := loop.time()) < until:
            for _ in range(int((now - start) * rate) - due_sent):
                for _ in range(count):
                    client = self.clients[state.turn % count]
                    state.turn += 1
                    if len(client.sent) < window:
                        client.fire(state.measuring)
                        break
                else:
                    tally.skipped += 1
                due_sent += 1
            await asyncio.sleep(0.001)


class _Phase:
    """What the receivers of one phase need to know of it."""

    def __init__(self, *, closed_loop: bool) -> None:
        self.closed_loop = closed_loop
        self.sending = True
        self.measuring = False
        self.turn = 0
        #: Set once sending stopped and no request is owed a reply.
        self.drained = asyncio.Event()
