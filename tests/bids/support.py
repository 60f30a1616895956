"""Helpers of the bids tests: processes, the admin API, a concurrent client, Redis reads."""

from __future__ import annotations

import asyncio
import itertools
import json
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Mapping
from typing import Any, ClassVar, cast

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from bids_service.keys import BidKeys
from bids_service.store import BidStore
from common.codec import load_bus
from common.keys import Partitions
from common.redis_client import RedisClient
from tests.bids.model import Auction, apply_bid
from tests.support.client import DEADLINE, connect_user
from tests.support.launcher import ModuleProcesses
from tests.support.processes import ManagedProcess, wait_all_ready
from tests.support.waiting import Deadline


__all__ = [
    "ADMIN_TOKEN",
    "KEYS",
    "BidClient",
    "Launcher",
    "admin",
    "create_auction",
    "history",
    "make_store",
    "replay_through_model",
    "spread",
    "state",
]

ADMIN_TOKEN = "bids-test-admin-token-0123456789"
#: The names of the bids service's keys with one partition, as the tests' processes run it.
KEYS = BidKeys(Partitions("bids"))


class Launcher(ModuleProcesses):
    """Starts one test module's gateways and bids instances; stops them all at its end."""

    gateway_env: ClassVar[Mapping[str, str]] = {"RT_REQUEST_TIMEOUT": "10"}

    def bids(
        self,
        env: Mapping[str, str] | None = None,
        *,
        wait: bool = True,
        module: str = "bids_service",
    ) -> ManagedProcess:
        """A bids instance with the admin token, named ``bids-<module>-<n>``; ``module``
        runs another version of it (tests/support/upgraded_bids.py)."""
        settings = {
            "RT_BIDS_ADMIN_TOKEN": ADMIN_TOKEN,
            "RT_BIDS_CLOSE_INTERVAL": "0.1",
            # Short, so that the worker notices a lost consumer group (FLUSHALL) quickly.
            "RT_CLAIM_INTERVAL": "0.5",
            # Test bidders bid far faster than people do; test_limits.py tests the limit.
            "RT_BIDS_BID_RATE": "100000",
            "RT_BIDS_BID_BURST": "100000",
            **(env or {}),
        }
        return self.service(module, "bids", settings, wait=wait)

    def stack(
        self,
        *,
        gateways: int = 1,
        instances: int = 1,
        bids_env: Mapping[str, str] | None = None,
        gateway_env: Mapping[str, str] | None = None,
    ) -> tuple[list[ManagedProcess], list[ManagedProcess]]:
        """Gateways and bids instances, started together."""
        started_gateways = [self.gateway(gateway_env, wait=False) for _ in range(gateways)]
        started_instances = [self.bids(bids_env, wait=False) for _ in range(instances)]
        wait_all_ready([*started_gateways, *started_instances])
        return started_gateways, started_instances


def make_store(
    redis: RedisClient, *, partitions: int = 1, bid_rate: float = 1e6, bid_burst: int = 10**6
) -> BidStore:
    """A store as the service makes one: keys kept a minute, bids not limited unless asked."""
    return BidStore(
        redis,
        Partitions("bids", partitions),
        key_ttl_ms=60_000,
        history_maxlen=0,
        replay_limit=100,
        refusal_ttl_ms=60_000,
        bid_rate=bid_rate,
        bid_burst=bid_burst,
    )


def spread(partitions: Partitions, name: str, per_partition: int = 1) -> list[str]:
    """Auction ids ``<name>-<n>``, ``per_partition`` in each partition, ordered so that the
    partitions alternate (a batch of them mixes partitions)."""
    found: dict[int, list[str]] = {partition: [] for partition in partitions}
    n = 0
    while any(len(ids) < per_partition for ids in found.values()):
        auction = f"{name}-{n}"
        ids = found[partitions.of(auction)]
        if len(ids) < per_partition:
            ids.append(auction)
        n += 1
    return [ids[i] for i in range(per_partition) for ids in found.values()]


# The admin API.


def _admin_call(
    url: str, method: str, body: bytes | None, headers: dict[str, str]
) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=DEADLINE) as response:
            status, answer_headers, raw = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        status, answer_headers, raw = exc.code, dict(exc.headers), exc.read()
    return int(status), answer_headers, json.loads(raw) if raw else None


async def admin(
    instance: ManagedProcess,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = ADMIN_TOKEN,
    raw: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    """One admin API request: the status, the headers and the decoded JSON body."""
    headers = {"Content-Type": "application/json", **(headers or {})}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    return await asyncio.to_thread(_admin_call, instance.base_url + path, method, data, headers)


async def create_auction(instance: ManagedProcess, **body: Any) -> dict[str, Any]:
    """Create an auction (defaults: starting price 100, increment 10, one hour, no sniping)."""
    spec = {
        "title": "a test auction",
        "starting_price": 100,
        "increment": 10,
        "extend_window": 0,
        **body,
    }
    if "ends_at" not in spec:
        spec.setdefault("duration_s", 3600)
    status, _, answer = await admin(instance, "POST", "/auctions", spec)
    assert status == 201, answer
    assert isinstance(answer, dict)
    return answer


# Redis reads.


async def history(redis: RedisClient, auction: str, keys: BidKeys = KEYS) -> list[dict[str, Any]]:
    """An auction's history: each event's envelope plus ``key`` (the bid's idempotency key)."""
    entries = cast(
        "list[tuple[bytes, dict[bytes, bytes]]]", await redis.xrange(keys.history(auction))
    )
    events = []
    for _, fields in entries:
        envelope = load_bus(fields[b"e"])
        key = fields.get(b"k")
        envelope["key"] = None if key is None else key.decode()
        events.append(envelope)
    return events


async def state(redis: RedisClient, auction: str, keys: BidKeys = KEYS) -> dict[str, str]:
    """An auction's hash, decoded."""
    fields = cast("dict[bytes, bytes]", await redis.hgetall(keys.auction(auction)))
    return {key.decode(): value.decode() for key, value in fields.items()}


def replay_through_model(model: Auction, events: list[dict[str, Any]]) -> Auction:
    """Replay an auction's history (:func:`history`) serially through the reference rules:
    each ``bid.placed`` must be accepted there with the same seq, end and data, as if the
    bids had been judged one at a time in the history's order. The model's final state."""
    state: Auction | None = model
    for event in events:
        if event["event"] != "bid.placed":
            continue
        data = event["data"]
        state, verdict, emitted = apply_bid(
            state, model.id, data["amount"], data["bidder"], now=data["placed_at"]
        )
        assert verdict.ok, (event, verdict)
        assert verdict.seq == data["seq"], (event, verdict)
        assert verdict.ends_at == data["ends_at"], (event, verdict)
        assert emitted[0][2] == data, (event, emitted)
    assert state is not None
    return state


# A client that many requests may use at once.


class BidClient:
    """One authenticated connection with a reader task: replies by ref, events by channel."""

    def __init__(self, ws: ClientConnection, user: str) -> None:
        self.ws = ws
        self.user = user
        self._refs = itertools.count(1)
        self._waiting: dict[Any, asyncio.Future[dict[str, Any]]] = {}
        self.events: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.frames: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, gateway: ManagedProcess, user: str) -> BidClient:
        return cls(await connect_user(gateway.ws_url, user), user)

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                self.frames.append(frame)
                if frame.get("type") == "event":
                    self.events[frame["channel"]].append(frame)
                elif frame.get("type") == "reply":
                    waiter = self._waiting.pop(frame.get("ref"), None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(frame)
                self._changed.set()
        except ConnectionClosed:
            pass
        finally:
            self._changed.set()

    async def send(self, message: dict[str, Any]) -> asyncio.Future[dict[str, Any]]:
        """Send a request with a fresh ref; the future resolves to its reply."""
        ref = message.setdefault("ref", f"{self.user}-{next(self._refs)}")
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[ref] = future
        await self.ws.send(json.dumps(message))
        return future

    async def request(self, message: dict[str, Any], within: float = DEADLINE) -> dict[str, Any]:
        """Send a request and wait for its reply."""
        future = await self.send(message)
        try:
            async with asyncio.timeout(within):
                return await future
        except TimeoutError:
            raise AssertionError(f"no reply to {message} within {within} s") from None

    async def place(
        self, auction: str, amount: Any, key: str, within: float = DEADLINE
    ) -> dict[str, Any]:
        message = {"type": "bids.place", "auction": auction, "amount": amount, "key": key}
        return await self.request(message, within)

    async def subscribe(self, auction: str, since: str | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {"type": "subscribe", "channel": f"auction:{auction}"}
        if since is not None:
            message["since"] = since
        return await self.request(message)

    async def wait_events(
        self, auction: str, count: int, within: float = DEADLINE
    ) -> list[dict[str, Any]]:
        """Wait until at least ``count`` events of the auction arrived; return them all."""
        channel = f"auction:{auction}"
        deadline = Deadline(within)
        while len(self.events[channel]) < count:
            if deadline.expired() or self._reader.done():
                got = [(e["event"], e["position"]) for e in self.events[channel]]
                raise AssertionError(f"{count} events of {channel} not seen in {within} s: {got}")
            self._changed.clear()
            try:
                async with asyncio.timeout(deadline.remaining()):
                    await self._changed.wait()
            except TimeoutError:
                pass
        return self.events[channel]

    async def wait_event(self, auction: str, name: str, within: float = DEADLINE) -> dict[str, Any]:
        """Wait for the first event called ``name`` on the auction's channel."""
        channel = f"auction:{auction}"
        deadline = Deadline(within)
        while True:
            for event in self.events[channel]:
                if event["event"] == name:
                    return event
            if deadline.expired() or self._reader.done():
                raise AssertionError(f"no {name} on {channel} within {within} s")
            self._changed.clear()
            try:
                async with asyncio.timeout(deadline.remaining()):
                    await self._changed.wait()
            except TimeoutError:
                pass

    async def close(self) -> None:
        await self.ws.close()
        try:
            async with asyncio.timeout(DEADLINE):
                await self._reader
        except TimeoutError:
            self._reader.cancel()
