"""Gateway fan-out benchmark: ``scripts/bench`` (``python -m bench.fanout --help``).

``--scenario request`` runs the request benchmark instead (:mod:`bench.request`, its own
options: ``scripts/bench --scenario request --help``); the default, ``fanout``, is this one:

Starts a private Redis and a gateway pinned to CPU 0, and drives it from this process pinned
to CPU 1 with a minimal WebSocket client (:mod:`bench.wsclient`):

1. N authenticated connections subscribe to ``presence:bench`` (no service involved: the
   presence service's namespace is announced in the registry, as it would announce it);
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
import math
import os
import sys
import time
from collections.abc import Awaitable, Sequence

import redis as redis_sync
import uvloop
from redis.asyncio import Redis

import bench.request
from bench.fanout_load import (
    CHANNEL,
    Publisher,
    Subscriber,
    close_all,
    open_client,
    open_connections,
)
from bench.report import TARGET_IDLE_KB, Meter, Totals, report_phase, summary, verdict
from bench.system import (
    CAN_PIN,
    GATEWAY_CPU,
    LOADGEN_CPU,
    BenchError,
    GatewayProcess,
    out,
    progress,
    raise_open_files_limit,
)
from bench.wsclient import WsClient
from common.auth import issue_token
from common.settings import Secret
from devtools.net import LOOPBACK
from devtools.redis_server import RedisServer
from devtools.registry import announce
from presence_service.rules import OFFER as PRESENCE_OFFER


#: How long a phase waits for its last deliveries after its last publish.
DRAIN_TIMEOUT = 30.0
#: How long the burst waits for room in its window before it gives up.
STALL_TIMEOUT = 10.0
#: Upper bound on a burst phase, however many events it was asked for.
BURST_TIMEOUT = 180.0
WARMUP_EVENTS = 5
SCENARIOS = ("fanout", "request")


# The phases.


async def fanout(args: argparse.Namespace, redis_url: str, secret: Secret, totals: Totals) -> None:
    n = args.subscribers
    with redis_sync.Redis.from_url(redis_url) as client:
        # The gateway routes by the registry: presence: is a namespace once announced.
        announce(client, PRESENCE_OFFER)
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
    parser.add_argument(
        "--scenario",
        choices=SCENARIOS,
        default="fanout",
        help="fanout: this benchmark; request: chat.send and presence.count (its own --help)",
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
    chooser = argparse.ArgumentParser(add_help=False)
    chooser.add_argument("--scenario", choices=SCENARIOS, default="fanout")
    chosen, rest = chooser.parse_known_args(argv)
    if chosen.scenario == "request":
        return bench.request.main(rest)
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
