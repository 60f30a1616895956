"""The bids benchmark's driver (bench/bids.py): bidders placing rising bids, observers
checking that events arrive in order, and the run that paces and measures them."""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import time
from collections import Counter
from typing import Any

import orjson

from bench.wsclient import WsClient, connect
from loadtests.invariants import Accepted
from loadtests.stack import Stack, cpu_seconds


__all__ = ["Bidder", "Observer", "Run"]

REPLY_TIMEOUT = 10.0
CONNECT_TIMEOUT = 10.0


async def _receive(client: WsClient) -> dict[str, Any]:
    async with asyncio.timeout(REPLY_TIMEOUT):
        return await client.receive()


class Bidder(WsClient):
    """One client connection placing rising bids on its own auction."""

    def __init__(self, port: int, index: int, user: str, auction: str) -> None:
        super().__init__("127.0.0.1", port)
        self.index = index
        self.user = user
        self.auction = auction
        self.amount = 0
        self.ref = 0
        self.sent: dict[int, tuple[float, int, bool]] = {}

    def place(self, measured: bool) -> None:
        self.ref += 1
        self.amount += 1
        self.sent[self.ref] = (time.perf_counter(), self.amount, measured)
        self.send_json(
            {
                "type": "bids.place",
                "ref": self.ref,
                "auction": self.auction,
                "amount": self.amount,
                "key": f"{self.index}-{self.ref}",
            }
        )


class Observer(WsClient):
    """Subscribed to auctions: checks per-channel order and measures event delay."""

    def __init__(self, port: int) -> None:
        super().__init__("127.0.0.1", port)
        self.last: dict[str, int] = {}
        self.delays: list[float] = []
        self.events = 0
        self.out_of_order = 0
        self.measure = False

    def on_event(self, data: bytes, start: int, end: int, now_ns: int) -> None:
        event = orjson.loads(data[start:end])
        self.events += 1
        position = int(event["position"])
        channel = event["channel"]
        if position != self.last.get(channel, 0) + 1:
            self.out_of_order += 1
        self.last[channel] = position
        placed_at = event["data"].get("placed_at")
        if self.measure and placed_at is not None:
            self.delays.append(now_ns / 1e6 - placed_at)


class Run:
    def __init__(self, options: argparse.Namespace, stack: Stack) -> None:
        self.options = options
        self.stack = stack
        self.bidders: list[Bidder] = []
        self.observers: list[Observer] = []
        self.latencies: list[float] = []
        self.outcomes: Counter[str] = Counter()
        self.accepted: list[Accepted] = []
        self.measuring = False
        self.sending = True
        self.measured_accepted = 0

    async def open(self) -> None:
        port = self.stack.gateways[0].port
        options = self.options
        for index in range(options.connections):
            auction = f"bench-{index}"
            self.stack.create_auction(
                id=auction,
                title=f"bench {index}",
                starting_price=1,
                increment=1,
                duration_s=3600,
                extend_window=0,
            )
            user = f"bidder-{index}"
            factory = functools.partial(Bidder, port, index, user, auction)
            async with asyncio.timeout(CONNECT_TIMEOUT):
                bidder = await connect(factory, "127.0.0.1", port)
            await self._auth(bidder, user)
            self.bidders.append(bidder)
        for index in range(options.observers):
            async with asyncio.timeout(CONNECT_TIMEOUT):
                observer = await connect(lambda: Observer(port), "127.0.0.1", port)
            await self._auth(observer, f"observer-{index}")
            for auction_index in range(index, options.connections, options.observers):
                observer.send_json(
                    {"type": "subscribe", "channel": f"auction:bench-{auction_index}"}
                )
                reply = await _receive(observer)
                if not reply.get("ok"):
                    raise RuntimeError(f"subscribe failed: {reply}")
            self.observers.append(observer)

    async def _auth(self, client: WsClient, user: str) -> None:
        client.send_json({"type": "auth", "token": self.stack.token(user)})
        welcome = await _receive(client)
        if welcome.get("type") != "welcome":
            raise RuntimeError(f"auth failed: {welcome}")

    async def receive(self, bidder: Bidder) -> None:
        closed_loop = self.options.rate == 0
        while True:
            try:
                reply = await _receive(bidder)
            except (TimeoutError, ConnectionError):
                return
            now = time.perf_counter()
            sent_at, amount, measured = bidder.sent.pop(reply["ref"])
            if reply.get("ok"):
                data = reply["data"]
                self.outcomes["accepted"] += 1
                key = f"{bidder.index}-{reply['ref']}"
                self.accepted.append(
                    Accepted(bidder.auction, data["seq"], amount, bidder.user, key)
                )
                if measured:
                    self.measured_accepted += 1
            else:
                self.outcomes[reply["error"]["code"]] += 1
            if measured:
                self.latencies.append((now - sent_at) * 1000)
            if closed_loop and self.sending:
                bidder.place(self.measuring)
            if not self.sending and not bidder.sent:
                return

    async def send_paced(self, until: float) -> int:
        """Place bids at the target rate, round-robin; return how many found no free window."""
        loop = asyncio.get_running_loop()
        rate, window = self.options.rate, self.options.window
        start, sent, skipped, turn = loop.time(), 0, 0, 0
        count = len(self.bidders)
        while (now := loop.time()) < until:
            due = int((now - start) * rate) - sent
            for _ in range(due):
                for _ in range(count):
                    bidder = self.bidders[turn % count]
                    turn += 1
                    if len(bidder.sent) < window:
                        bidder.place(self.measuring)
                        break
                else:
                    skipped += 1
                sent += 1
            await asyncio.sleep(0.001)
        return skipped

    async def run(self) -> dict[str, Any]:
        options = self.options
        loop = asyncio.get_running_loop()
        receivers = [asyncio.create_task(self.receive(bidder)) for bidder in self.bidders]
        pids = {
            "gateway": [self.stack.gateways[0].pid],
            "bids": [process.pid for process in self.stack.instances],
            # Every node of a cluster: what matters is Redis's CPU per bid in all.
            "redis": self.stack.redis.pids,
            "driver": [os.getpid()],
        }
        started = loop.time()
        if options.rate == 0:
            for bidder in self.bidders:
                for _ in range(options.window):
                    bidder.place(False)
        skipped = 0
        warm_until = started + options.warmup
        if options.rate:
            skipped += await self.send_paced(warm_until)
        else:
            await asyncio.sleep(options.warmup)
        before = {name: sum(cpu_seconds(pid) for pid in group) for name, group in pids.items()}
        nodes_before = [cpu_seconds(pid) for pid in pids["redis"]]
        self.measuring = True
        for observer in self.observers:
            observer.measure = True
        measure_start = loop.time()
        if options.rate:
            skipped += await self.send_paced(measure_start + options.duration)
        else:
            await asyncio.sleep(options.duration)
        elapsed = loop.time() - measure_start
        after = {name: sum(cpu_seconds(pid) for pid in group) for name, group in pids.items()}
        nodes = [
            cpu_seconds(pid) - used for pid, used in zip(pids["redis"], nodes_before, strict=True)
        ]
        self.measuring = False
        self.sending = False
        for observer in self.observers:
            observer.measure = False
        for bidder in self.bidders:
            if not bidder.sent:
                bidder.close()
        await asyncio.wait(receivers, timeout=REPLY_TIMEOUT + 5)
        cpu = {name: after[name] - before[name] for name in pids}
        return {"elapsed": elapsed, "cpu": cpu, "redis_nodes": nodes, "skipped": skipped}
