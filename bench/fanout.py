"""Gateway fan-out benchmark: ``scripts/bench`` (``python -m bench.fanout --help``).

Starts a private Redis and a gateway pinned to CPU 0, and drives it from this process pinned
to CPU 1 with a minimal WebSocket client (:mod:`bench.wsclient`):

1. N authenticated connections subscribe to ``presence:bench`` (no service involved);
2. events are PUBLISHed on the bus at a fixed rate, then as fast as the gateway delivers them
   (a bounded number in flight); each carries its send time and a sequence number;
3. per phase: deliveries/s, latency percentiles, lost/duplicate/out-of-order messages, the
   gateway's CPU time per delivery (``/proc/<pid>/stat``) and its RSS;
4. a fresh gateway holds C idle authenticated connections: RSS per connection, CPU while idle
   (fresh, so that memory freed by the fan-out's connections, which Python reuses, does not
   hide part of the growth).

The load generator and Redis share CPU 1; the gateway has CPU 0 to itself unless other
processes of the machine run there, which the report shows (CPU 0 busy vs. gateway CPU).

The report goes to stdout, progress to stderr. Everything runs on 127.0.0.1, is bounded in
count and time, and every process started here is stopped by PID on the way out (Ctrl-C too).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TypeVar

import uvloop
from redis.asyncio import Redis

from bench.wsclient import WsClient, connect
from common.auth import issue_token
from common.bus.publisher import event_message
from common.codec import dump_client
from common.envelope import Event
from common.redis_server import LOOPBACK, RedisServer
from common.settings import Secret


CHANNEL = "presence:bench"
GATEWAY_CPU, LOADGEN_CPU = 0, 1
CONNECT_TIMEOUT = 10.0
#: Concurrent upgrades while opening connections (the gateway's listen backlog is 4096).
CONNECT_CONCURRENCY = 256
READY_TIMEOUT = 20.0
SETTLE_TIMEOUT = 10.0
CLOSE_TIMEOUT = 10.0
#: How long a phase waits for its last deliveries after its last publish.
DRAIN_TIMEOUT = 30.0
#: How long the burst waits for room in its window before it gives up.
STALL_TIMEOUT = 10.0
#: Upper bound on a burst phase, however many events it was asked for.
BURST_TIMEOUT = 180.0
WARMUP_EVENTS = 5

TARGET_CPU_US = 14.0
TARGET_P99_MS = 50.0
TARGET_IDLE_KB = 20.0
REFERENCES = (
    "CPU per delivery: Node socket.io + Redis adapter 16.4 µs, websockets broadcast() 17.5 µs,",
    "  plain Starlette on websockets-sansio 21.7 µs;",
    "memory per idle connection: websockets 15.4 KB, plain Starlette 26 KB",
)

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_Client = TypeVar("_Client", bound=WsClient)


class BenchError(Exception):
    """The benchmark could not run (a process failed, connections were refused...)."""


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def out(line: str = "") -> None:
    print(line, flush=True)


# Processes.


def process_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a process, all its threads (``/proc/<pid>/stat``)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) / _CLOCK_TICKS, int(fields[12]) / _CLOCK_TICKS


def cpu_times(cpu: int) -> tuple[float, float]:
    """Busy and softirq seconds of one CPU, whatever ran on it (``/proc/stat``)."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            user, nice, system, _, _, irq, softirq = (int(v) for v in line.split()[1:8])
            return (user + nice + system + irq + softirq) / _CLOCK_TICKS, softirq / _CLOCK_TICKS
    raise BenchError(f"no cpu{cpu} in /proc/stat")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise BenchError(f"no VmRSS for pid {pid}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


#: Whether both CPUs are ours to pin to (decided before this process pins itself).
CAN_PIN = {GATEWAY_CPU, LOADGEN_CPU} <= os.sched_getaffinity(0)


class GatewayProcess:
    """``python -m realtime_gateway`` on a free port, pinned with taskset, logging to a file."""

    def __init__(self, redis_url: str, secret: Secret, *, max_connections: int) -> None:
        self.port = free_port()
        # Only the variables set here: an RT_* of the caller must not change what is measured.
        env = {key: value for key, value in os.environ.items() if not key.startswith("RT_")}
        env.update(
            RT_REDIS_URL=redis_url,
            RT_JWT_SECRET=secret.reveal(),
            RT_HOST=LOOPBACK,
            RT_PORT=str(self.port),
            RT_GATEWAY_ID="gw-bench",
            RT_LOG_LEVEL="warning",
            RT_LOG_FORMAT="console",
            RT_MAX_CONNECTIONS=str(max_connections),
            RT_RATE_LIMIT="100000",
            RT_RATE_BURST="100000",
            RT_OUTBOX_MAX_MESSAGES="100000",
            RT_OUTBOX_MAX_BYTES=str(256 * 1024 * 1024),
            RT_SHUTDOWN_GRACE="2",
        )
        # Kept open for the process's lifetime and closed in stop(), so no `with`.
        self._log = tempfile.NamedTemporaryFile(prefix="bench-gateway-", suffix=".log")  # noqa: SIM115
        command = [sys.executable, "-m", "realtime_gateway"]
        if CAN_PIN:
            command = ["taskset", "-c", str(GATEWAY_CPU), *command]
        # A session of its own: a Ctrl-C reaches only this process, which stops the gateway.
        self._process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self._process.pid

    async def wait_ready(self) -> None:
        """Poll ``/readyz`` until it answers 200."""
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BenchError(
                    f"the gateway exited with {self._process.returncode}:\n"
                    + "\n".join(self.log_tail())
                )
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(2.0):
                    reader, writer = await asyncio.open_connection(LOOPBACK, self.port)
                    try:
                        writer.write(b"GET /readyz HTTP/1.1\r\nHost: bench\r\n\r\n")
                        status = await reader.readline()
                    finally:
                        writer.close()
                if status.startswith(b"HTTP/1.1 200"):
                    return
            await asyncio.sleep(0.05)
        raise BenchError(f"the gateway was not ready within {READY_TIMEOUT} s")

    def cpu_seconds(self) -> float:
        return sum(process_times(self.pid))

    def rss_bytes(self) -> int:
        return rss_bytes(self.pid)

    def log_tail(self, lines: int = 10) -> list[str]:
        return Path(self._log.name).read_text(errors="replace").splitlines()[-lines:]

    async def settle(self) -> None:
        """Return once the gateway used at most one clock tick of CPU in 0.25 s (or 10 s)."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        before = self.cpu_seconds()
        while time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            now = self.cpu_seconds()
            if now - before <= 1.0 / _CLOCK_TICKS:
                return
            before = now

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s. Idempotent; prints the gateway's log if any."""
        process = self._process
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5.0)
        tail = self.log_tail(20)
        if tail:
            progress(f"gateway log (last {len(tail)} lines):\n  " + "\n  ".join(tail))
        self._log.close()


def raise_open_files_limit(needed: int) -> int:
    """Raise this process's RLIMIT_NOFILE (children inherit it) to at least ``needed``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return soft
    if hard != resource.RLIM_INFINITY and hard < needed:
        with contextlib.suppress(ValueError, OSError):  # needs CAP_SYS_RESOURCE
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            return needed
    target = needed if hard == resource.RLIM_INFINITY else hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        raise BenchError(f"need {needed} open files, the hard limit is {hard}: raise it")
    return target


# Load generation.


@dataclass(slots=True)
class Phase:
    """What the subscribers received of events with seq in [first_seq, first_seq + capacity)."""

    first_seq: int
    capacity: int
    published: int = 0
    #: Deliveries, each (subscriber, seq) counted once.
    received: int = 0
    duplicates: int = 0
    reordered: int = 0
    #: Events outside the phase's range, or that did not parse.
    strays: int = 0
    first_publish_ns: int = 0
    last_receive_ns: int = 0
    latencies: array[int] = field(default_factory=lambda: array("q"))
    #: Per event (index seq - first_seq): publish time, first and last receive time (ns).
    sent: array[int] = field(init=False)
    first_rx: array[int] = field(init=False)
    last_rx: array[int] = field(init=False)
    wake_at: int = sys.maxsize
    waiter: asyncio.Future[None] | None = None

    def __post_init__(self) -> None:
        self.sent = array("q", bytes(8 * self.capacity))
        self.first_rx = array("q", bytes(8 * self.capacity))
        self.last_rx = array("q", bytes(8 * self.capacity))

    async def received_within(self, count: int, seconds: float) -> bool:
        """Whether ``received`` reaches ``count`` within ``seconds``."""
        if self.received >= count:
            return True
        self.waiter = asyncio.get_running_loop().create_future()
        self.wake_at = count
        try:
            async with asyncio.timeout(seconds):
                await self.waiter
        except TimeoutError:
            return False
        finally:
            self.waiter, self.wake_at = None, sys.maxsize
        return True


class Subscriber(WsClient):
    """Records each event's sequence number and latency into the current :class:`Phase`."""

    def __init__(self, host: str, port: int, token: str) -> None:
        super().__init__(host, port, headers={"Authorization": f"Bearer {token}"})
        self.phase: Phase | None = None
        self._seen = bytearray()
        self._last = -1

    def start(self, phase: Phase) -> None:
        self.phase = phase
        self._seen = bytearray(phase.capacity)
        self._last = -1

    def on_event(self, data: bytes, start: int, end: int, now_ns: int) -> None:
        phase = self.phase
        if phase is None:
            return
        # The event's data is {"seq":N,"ts":T,"pad":"..."}, in this order: msgpack and orjson
        # keep it, and the pad is only x's. Three finds beat decoding the JSON.
        i = data.find(b'"seq":', start, end)
        j = data.find(b",", i, end)
        k = data.find(b",", j + 1, end)
        if i < 0 or j < 0 or k < 0:
            phase.strays += 1
            return
        index = int(data[i + 6 : j]) - phase.first_seq
        if not 0 <= index < phase.capacity:
            phase.strays += 1
            return
        seen = self._seen
        if seen[index]:
            phase.duplicates += 1
            return
        seen[index] = 1
        if index < self._last:
            phase.reordered += 1
        else:
            self._last = index
        phase.latencies.append(now_ns - int(data[j + 6 : k]))
        if not phase.first_rx[index]:
            phase.first_rx[index] = now_ns
        phase.last_rx[index] = now_ns
        phase.last_receive_ns = now_ns
        phase.received += 1
        waiter = phase.waiter
        if phase.received >= phase.wake_at and waiter is not None and not waiter.done():
            waiter.set_result(None)


class Publisher:
    """PUBLISHes numbered, timestamped events of :data:`CHANNEL` on the bus."""

    def __init__(self, redis: Redis, frame_bytes: int) -> None:
        self._redis = redis
        self.next_seq = 1
        probe = {"seq": 10**6, "ts": time.time_ns(), "pad": ""}
        overhead = len(dump_client(Event(CHANNEL, "bench", probe).to_client()))
        self.pad = "x" * max(0, frame_bytes - overhead)
        self.frame_bytes = overhead + len(self.pad)

    def new_phase(self, events: int, subscribers: Sequence[Subscriber]) -> Phase:
        phase = Phase(first_seq=self.next_seq, capacity=events)
        for subscriber in subscribers:
            subscriber.start(phase)
        return phase

    async def publish(self, phase: Phase, count: int = 1) -> None:
        """Publish ``count`` events in one round trip (a pipeline, not a transaction)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for _ in range(count):
                seq, self.next_seq = self.next_seq, self.next_seq + 1
                now = time.time_ns()
                if not phase.first_publish_ns:
                    phase.first_publish_ns = now
                phase.sent[seq - phase.first_seq] = now
                data = {"seq": seq, "ts": now, "pad": self.pad}
                channel, body = event_message(Event(CHANNEL, "bench", data))
                pipe.publish(channel, body)
            await pipe.execute()
        phase.published += count


async def open_connections(count: int, make: Callable[[int], Awaitable[_Client]]) -> list[_Client]:
    """``count`` connections, CONNECT_CONCURRENCY at a time: all of them, or BenchError."""
    opened: list[_Client] = []
    failures: list[str] = []
    indices = iter(range(count))

    async def worker() -> None:
        for index in indices:
            if failures:
                return
            try:
                opened.append(await make(index))
            except (OSError, TimeoutError, BenchError) as exc:
                failures.append(f"connection {index}: {exc!r}")

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(CONNECT_CONCURRENCY, count)):
                group.create_task(worker())
    except BaseException:
        await close_all(opened)
        raise
    if failures:
        await close_all(opened)
        raise BenchError(f"{len(failures)} connection(s) failed, the first: {failures[0]}")
    return opened


async def close_all(clients: Sequence[WsClient]) -> None:
    for client in clients:
        client.close()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await asyncio.gather(*(client.closed for client in clients))
    for client in clients:
        if client.transport is not None and not client.closed.done():
            client.transport.abort()


async def open_client(client: _Client, port: int, subscribe: bool) -> _Client:
    """Upgrade, expect the welcome (Bearer authentication), subscribe if asked."""
    async with asyncio.timeout(CONNECT_TIMEOUT):
        client = await connect(lambda: client, LOOPBACK, port)
        try:
            welcome = await client.receive()
            if welcome.get("type") != "welcome":
                raise BenchError(f"expected a welcome, got {welcome}")
            if subscribe:
                client.send_json({"type": "subscribe", "ref": 1, "channel": CHANNEL})
                reply = await client.receive()
                if reply.get("type") != "reply" or reply.get("ok") is not True:
                    raise BenchError(f"subscribe refused: {reply}")
        except BaseException:
            client.close()
            raise
    return client


# Measurement.


@dataclass(frozen=True, slots=True)
class Usage:
    """Seconds of wall and CPU time over a phase."""

    wall: float
    gateway_user: float
    gateway_system: float
    own: float
    #: Everything that ran on the gateway's CPU, softirq included (which the kernel may
    #: charge to no process), other processes too.
    cpu_busy: float
    cpu_softirq: float

    @property
    def gateway(self) -> float:
        return self.gateway_user + self.gateway_system


class Meter:
    """Wall time and CPU use of the gateway, its CPU and this process, since construction."""

    def __init__(self, gateway: GatewayProcess) -> None:
        self._pid = gateway.pid
        self._start = self._sample()

    def _sample(self) -> Usage:
        user, system = process_times(self._pid)
        busy, softirq = cpu_times(GATEWAY_CPU) if CAN_PIN else (math.nan, math.nan)
        own = time.process_time()
        return Usage(time.monotonic(), user, system, own, busy, softirq)

    def stop(self) -> Usage:
        end, start = self._sample(), self._start
        return Usage(*(getattr(end, f.name) - getattr(start, f.name) for f in fields(Usage)))


def percentile(ordered: Sequence[int], q: float) -> int:
    """Nearest-rank percentile of sorted values."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


@dataclass(slots=True)
class Totals:
    lost: int = 0
    cpu_us: float | None = None
    p99_ms: float | None = None
    idle_kb: float | None = None


def report_phase(
    title: str,
    phase: Phase,
    subscribers: Sequence[Subscriber],
    usage: Usage,
    gateway: GatewayProcess,
    totals: Totals,
    *,
    p99_target: bool,
) -> None:
    gateway_cpu, own_cpu, wall = usage.gateway, usage.own, usage.wall
    n = len(subscribers)
    expected = phase.published * n
    lost = expected - phase.received
    totals.lost += lost
    span_s = max(phase.last_receive_ns - phase.first_publish_ns, 1) / 1e9
    ordered = sorted(phase.latencies)
    out(title)
    out(f"  events published        {phase.published:,} ({n:,} subscribers each)")
    out(
        f"  deliveries              {phase.received:,} of {expected:,}: lost {lost:,}, "
        f"duplicates {phase.duplicates:,}, out of order {phase.reordered:,}, "
        f"strays {phase.strays:,}   target 0 lost: {verdict(lost == 0)}"
    )
    out(f"  delivered/s             {phase.received / span_s:,.0f} (over {span_s:.2f} s)")
    if ordered:
        p50, p99, top = (percentile(ordered, q) / 1e6 for q in (0.50, 0.99, 1.0))
        line = f"  latency                 p50 {p50:.2f} ms   p99 {p99:.2f} ms   max {top:.2f} ms"
        if p99_target:
            totals.p99_ms = p99
            line += f"   target p99 < {TARGET_P99_MS:.0f} ms: {verdict(p99 < TARGET_P99_MS)}"
        out(line)
        complete = [i for i in range(phase.published) if phase.first_rx[i]]
        hops = sorted(phase.first_rx[i] - phase.sent[i] for i in complete)
        spans = sorted(phase.last_rx[i] - phase.first_rx[i] for i in complete)
        out(
            f"  per event               first delivery p50 {percentile(hops, 0.5) / 1e6:.2f} ms "
            f"max {hops[-1] / 1e6:.2f} ms; last minus first p50 "
            f"{percentile(spans, 0.5) / 1e6:.2f} ms max {spans[-1] / 1e6:.2f} ms"
        )
    per_delivery = gateway_cpu / phase.received * 1e6 if phase.received else math.nan
    # /proc counts whole clock ticks: below ~10 the figure is mostly rounding.
    coarse = "  (too few clock ticks to be precise)" if gateway_cpu < 10 / _CLOCK_TICKS else ""
    out(
        f"  gateway CPU             {gateway_cpu:.2f} s in {wall:.1f} s "
        f"({gateway_cpu / wall:.0%} of a core) = {per_delivery:.2f} µs per delivery"
        f"   target ≤ {TARGET_CPU_US:.0f} µs: {verdict(per_delivery <= TARGET_CPU_US)}{coarse}"
    )
    out(
        f"  gateway CPU split       user {usage.gateway_user:.2f} s, "
        f"system {usage.gateway_system:.2f} s; CPU {GATEWAY_CPU} busy {usage.cpu_busy:.2f} s "
        f"of which softirq {usage.cpu_softirq:.2f} s (all processes)"
    )
    out(f"  gateway RSS             {gateway.rss_bytes() / 2**20:.1f} MiB")
    load = own_cpu / wall
    note = "  (saturated: the load generator may be the bottleneck)" if load > 0.9 else ""
    out(f"  load generator CPU      {own_cpu:.2f} s ({load:.0%} of a core){note}")
    closes = Counter(s.close_code or s.error or "?" for s in subscribers if s.closed.done())
    if closes:
        out(f"  connections lost        {sum(closes.values())}: {dict(closes)}")


# The phases.


async def fanout(args: argparse.Namespace, redis_url: str, secret: Secret, totals: Totals) -> None:
    n = args.subscribers
    gateway = GatewayProcess(redis_url, secret, max_connections=max(20_000, n + 100))
    try:
        await gateway.wait_ready()
        progress(f"gateway pid {gateway.pid} on port {gateway.port}; opening {n} subscribers")
        redis = Redis.from_url(redis_url)
        try:
            started = time.monotonic()
            subscribers = await open_connections(
                n,
                lambda i: open_client(
                    Subscriber(LOOPBACK, gateway.port, issue_token(secret, f"sub-{i}")),
                    gateway.port,
                    subscribe=True,
                ),
            )
            elapsed = time.monotonic() - started
            try:
                publisher = Publisher(redis, args.payload_bytes)
                out(
                    f"fan-out: gateway pid {gateway.pid}, {n:,} subscribers to {CHANNEL} "
                    f"(connected and subscribed in {elapsed:.1f} s), "
                    f"{publisher.frame_bytes} B event frames"
                )
                await run_phases(args, gateway, publisher, subscribers, totals)
            finally:
                await close_all(subscribers)
        finally:
            await redis.aclose()
    finally:
        gateway.stop()


async def run_phases(
    args: argparse.Namespace,
    gateway: GatewayProcess,
    publisher: Publisher,
    subscribers: list[Subscriber],
    totals: Totals,
) -> None:
    n = len(subscribers)
    warmup = publisher.new_phase(WARMUP_EVENTS, subscribers)
    await publisher.publish(warmup, WARMUP_EVENTS)
    if not await warmup.received_within(WARMUP_EVENTS * n, DRAIN_TIMEOUT):
        raise BenchError(f"warm-up: {warmup.received} of {WARMUP_EVENTS * n} deliveries")

    events = max(1, round(args.rate * args.duration))
    progress(f"phase 1: {events} events at {args.rate}/s")
    phase = publisher.new_phase(events, subscribers)
    meter = Meter(gateway)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(events):
        delay = start + i / args.rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await publisher.publish(phase)
    await phase.received_within(events * n, DRAIN_TIMEOUT)
    rate = args.rate * n
    report_phase(
        f"phase 1, fixed rate: {args.rate:g} events/s x {n:,} subscribers = {rate:,.0f} "
        f"deliveries/s for {args.duration:g} s",
        phase,
        subscribers,
        meter.stop(),
        gateway,
        totals,
        p99_target=True,
    )

    events, window = args.burst_events, args.burst_window
    progress(f"phase 2: {events} events, at most {window} in flight")
    phase = publisher.new_phase(events, subscribers)
    meter = Meter(gateway)
    deadline = loop.time() + BURST_TIMEOUT
    stalled = False
    while phase.published < events:
        # Keep `window` events in flight, counting an event delivered once `n` deliveries
        # arrived: wait until at least one has been delivered, then top the window up.
        need = (phase.published - window + 1) * n
        remaining = deadline - loop.time()
        if remaining <= 0 or not await phase.received_within(need, min(STALL_TIMEOUT, remaining)):
            stalled = True
            break
        in_flight = phase.published - phase.received // n
        await publisher.publish(phase, min(window - in_flight, events - phase.published))
    await phase.received_within(phase.published * n, DRAIN_TIMEOUT)
    measured = meter.stop()
    cpu = measured.gateway / phase.received * 1e6 if phase.received else math.nan
    totals.cpu_us = cpu
    report_phase(
        f"phase 2, max rate: {phase.published:,} events, at most {window} in flight"
        + (" (stopped early: deliveries stalled)" if stalled else ""),
        phase,
        subscribers,
        measured,
        gateway,
        totals,
        p99_target=False,
    )


async def idle(args: argparse.Namespace, redis_url: str, secret: Secret, totals: Totals) -> None:
    count = args.idle_connections
    gateway = GatewayProcess(redis_url, secret, max_connections=max(20_000, count + 100))
    try:
        await gateway.wait_ready()

        def make(i: int) -> Awaitable[WsClient]:
            token = issue_token(secret, f"idle-{i}")
            client = WsClient(LOOPBACK, gateway.port, headers={"Authorization": f"Bearer {token}"})
            return open_client(client, gateway.port, subscribe=False)

        # One connection first, so that what the first one loads is not counted.
        await close_all(await open_connections(1, make))
        await gateway.settle()
        before = gateway.rss_bytes()
        progress(f"gateway pid {gateway.pid} on port {gateway.port}; opening {count} connections")
        connecting = Meter(gateway)
        clients = await open_connections(count, make)
        setup = connecting.stop()
        try:
            await gateway.settle()
            after = gateway.rss_bytes()
            progress(f"idle for {args.idle_seconds:g} s")
            meter = Meter(gateway)
            await asyncio.sleep(args.idle_seconds)  # the measurement window itself
            usage = meter.stop()
            gateway_cpu, wall = usage.gateway, usage.wall
            at_end = gateway.rss_bytes()
            lost = sum(1 for client in clients if client.closed.done())
        finally:
            await close_all(clients)
    finally:
        gateway.stop()
    per_connection = (after - before) / count / 1024
    totals.idle_kb = per_connection
    out(f"phase 3, idle: {count:,} authenticated connections, gateway pid {gateway.pid}")
    out(
        f"  connected               in {setup.wall:.1f} s ({count / setup.wall:,.0f}/s); "
        f"gateway CPU {setup.gateway:.2f} s = {setup.gateway / count * 1e6:.0f} µs per connection"
    )
    out(
        f"  gateway RSS             {before / 2**20:.1f} MiB before, {after / 2**20:.1f} MiB "
        f"after = {per_connection:.1f} KB per connection"
        f"   target ≤ {TARGET_IDLE_KB:.0f} KB: {verdict(per_connection <= TARGET_IDLE_KB)}"
    )
    out(
        f"  gateway CPU while idle  {gateway_cpu:.2f} s in {wall:.1f} s "
        f"({gateway_cpu / wall:.1%} of a core; keepalive pings every 20 s included), "
        f"RSS at the end {at_end / 2**20:.1f} MiB"
    )
    if lost:
        out(f"  connections lost        {lost:,}")


def summary(args: argparse.Namespace, totals: Totals) -> None:
    out("targets")

    def row(name: str, value: str, ok: bool | None, condition: str) -> None:
        result = "n/a" if ok is None else verdict(ok)
        out(f"  {name:<40}{value:<14}{result:<6}{condition}")

    cpu, p99, kb = totals.cpu_us, totals.p99_ms, totals.idle_kb
    at = f"measured with {args.subscribers:,} subscribers"
    row(
        f"CPU per delivery ≤ {TARGET_CPU_US:.0f} µs (max rate)",
        "-" if cpu is None else f"{cpu:.2f} µs",
        None if cpu is None else cpu <= TARGET_CPU_US,
        "" if args.subscribers == 1000 else f"(target for 1,000 subscribers; {at})",
    )
    row(
        f"p99 < {TARGET_P99_MS:.0f} ms at 10,000 deliveries/s",
        "-" if p99 is None else f"{p99:.2f} ms",
        None if p99 is None else p99 < TARGET_P99_MS,
        ""
        if args.rate * args.subscribers == 10_000
        else f"(measured at {args.rate * args.subscribers:,.0f} deliveries/s)",
    )
    row(
        f"≤ {TARGET_IDLE_KB:.0f} KB per idle connection",
        "-" if kb is None else f"{kb:.1f} KB",
        None if kb is None else kb <= TARGET_IDLE_KB,
        ""
        if kb is None or args.idle_connections == 10_000
        else f"(target at 10,000; measured at {args.idle_connections:,})",
    )
    row("0 lost", f"{totals.lost:,}", totals.lost == 0, "")
    out("references")
    for line in REFERENCES:
        out(f"  {line}")


async def run(args: argparse.Namespace, redis_url: str) -> None:
    secret = Secret(os.urandom(32).hex())
    totals = Totals()
    await fanout(args, redis_url, secret, totals)
    if not args.skip_idle:
        await idle(args, redis_url, secret, totals)
    summary(args, totals)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Fan-out benchmark of one gateway (private Redis, loopback only).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--subscribers", type=int, default=1000, help="connections subscribed")
    parser.add_argument("--rate", type=float, default=10.0, help="events/s in phase 1")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of phase 1")
    parser.add_argument("--burst-events", type=int, default=1000, help="events in phase 2")
    parser.add_argument("--burst-window", type=int, default=20, help="phase 2 events in flight")
    parser.add_argument("--payload-bytes", type=int, default=200, help="event frame payload size")
    parser.add_argument("--idle-connections", type=int, default=10_000, help="phase 3 connections")
    parser.add_argument("--idle-seconds", type=float, default=20.0, help="phase 3 CPU window")
    parser.add_argument("--skip-idle", action="store_true", help="skip phase 3")
    args = parser.parse_args(argv)
    for name in ("subscribers", "burst_events", "burst_window", "idle_connections"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("rate", "duration", "idle_seconds"):
        if not getattr(args, name) > 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    connections = max(args.subscribers, 0 if args.skip_idle else args.idle_connections)
    try:
        limit = raise_open_files_limit(connections + 256)
    except BenchError as exc:
        progress(str(exc))
        return 1
    pinned = CAN_PIN
    if pinned:
        os.sched_setaffinity(0, {LOADGEN_CPU})
    else:
        progress("fewer than 2 CPUs: nothing is pinned, and the numbers mix both sides")
    placement = (
        f"gateway on CPU {GATEWAY_CPU}, load generator (pid {os.getpid()}) and Redis on CPU "
        f"{LOADGEN_CPU}"
        if pinned
        else "nothing pinned (one CPU)"
    )
    out(f"{placement}; open files limit {limit}; Python {sys.version.split()[0]}, uvloop")
    try:
        with RedisServer() as redis_server:
            if pinned and redis_server.pid is not None:
                # Off the gateway's core: Redis competes with the load generator instead.
                os.sched_setaffinity(redis_server.pid, {LOADGEN_CPU})
            uvloop.run(run(args, redis_server.url))
    except BenchError as exc:
        progress(f"failed: {exc}")
        return 1
    except KeyboardInterrupt:
        progress("interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
