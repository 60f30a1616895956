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

``--cluster`` runs it on a private Redis Cluster (3 masters unless ``--masters``, no
replicas, every node on CPU 1; the gateway with ``RT_REDIS_CLUSTER=1``, events published
with SPUBLISH on the channel's master); Redis's CPU is then every node's together.
``--compare REF`` (REF's gateway, then the tree's) and ``--cluster-compare`` (the tree on one
Redis, then on a cluster; or clusters of 1, 2, 3 masters) run phases 1 and 2 in alternating
rounds and print a table of the means and ratios (bench/alternate.py); no phase 3 then.

The report goes to stdout, progress to stderr. Everything runs on 127.0.0.1, is bounded in
count and time, and every process started here is stopped by PID on the way out (Ctrl-C too).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Sequence
from pathlib import Path

import uvloop
from redis.asyncio import Redis

import bench.request
from bench.alternate import Figures, Side, cancelled_on_sigterm, cluster_sides, report_rounds
from bench.cluster_options import add_cluster_options, check_cluster_options
from bench.compare import compare, verify_code_root
from bench.fanout_figures import ROWS, Fanout, line
from bench.fanout_load import (
    CHANNEL,
    Publisher,
    Subscriber,
    close_all,
    open_client,
    open_connections,
)
from bench.fanout_phases import redis_background, run_phases, subscribed_channel
from bench.report import TARGET_IDLE_KB, Meter, Totals, summary, verdict
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
from devtools.private_redis import PrivateRedis
from devtools.processes import REPO_ROOT
from devtools.registry import announce
from presence_service.rules import OFFER as PRESENCE_OFFER


SCENARIOS = ("fanout", "request")


# The phases.


async def fanout(
    args: argparse.Namespace,
    redis: PrivateRedis,
    secret: Secret,
    totals: Totals,
    code_root: Path = REPO_ROOT,
) -> Fanout:
    """Phases 1 and 2 on a gateway of ``code_root``'s checkout; their figures."""
    n = args.subscribers
    with redis.client() as client:
        # The gateway routes by the registry: presence: is a namespace once announced.
        announce(client, PRESENCE_OFFER)
    gateway = GatewayProcess(
        redis.env, secret, max_connections=max(20_000, n + 100), code_root=code_root
    )
    try:
        await gateway.wait_ready()
        verify_code_root(code_root, [gateway.pid])
        progress(f"gateway pid {gateway.pid} on port {gateway.port}; opening {n} subscribers")
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
            channel = await subscribed_channel(redis)
            publishing = Redis.from_url(redis.url_of(channel))
            try:
                publisher = Publisher(
                    publishing, args.payload_bytes, channel, sharded=redis.layout.cluster
                )
                out(
                    f"fan-out on {redis.layout.describe()}: gateway pid {gateway.pid}, {n:,} "
                    f"subscribers to {CHANNEL} (connected and subscribed in {elapsed:.1f} s; "
                    f"pub/sub channel {channel}), {publisher.frame_bytes} B event frames"
                )
                background = await redis_background(gateway, redis)
                fixed, burst = await run_phases(
                    args, gateway, publisher, subscribers, totals, redis
                )
                return Fanout(fixed, burst, background)
            finally:
                await publishing.aclose()
        finally:
            await close_all(subscribers)
    finally:
        gateway.stop()


async def idle(
    args: argparse.Namespace, redis: PrivateRedis, secret: Secret, totals: Totals
) -> None:
    count = args.idle_connections
    gateway = GatewayProcess(redis.env, secret, max_connections=max(20_000, count + 100))
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


async def run(args: argparse.Namespace, redis: PrivateRedis) -> None:
    secret = Secret(os.urandom(32).hex())
    totals = Totals()
    await fanout(args, redis, secret, totals)
    if not args.skip_idle:
        await idle(args, redis, secret, totals)
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
    add_cluster_options(parser, partitions=None)
    parser.add_argument(
        "--compare",
        default=None,
        metavar="REF",
        help="phases 1 and 2 with git ref REF's gateway and the tree's, alternating, side by side",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="with --compare or --cluster-compare: runs of each side, alternating",
    )
    args = parser.parse_args(argv)
    check_cluster_options(parser, args)
    for name in ("subscribers", "burst_events", "burst_window", "idle_connections", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("rate", "duration", "idle_seconds"):
        if not getattr(args, name) > 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    return args


def pin_redis(redis: PrivateRedis) -> None:
    """Every Redis server (each node of a cluster) on the load generator's CPU, off the
    gateway's core: Redis competes with the load generator instead."""
    if CAN_PIN:
        for pid in redis.pids:
            os.sched_setaffinity(pid, {LOADGEN_CPU})


async def measure(args: argparse.Namespace, side: Side) -> Fanout:
    """Phases 1 and 2 of ``side``'s gateway on a fresh Redis of its layout."""
    with PrivateRedis(side.redis) as redis:
        pin_redis(redis)
        return await fanout(args, redis, Secret(os.urandom(32).hex()), Totals(), side.code_root)


async def compare_layouts(args: argparse.Namespace) -> int:
    """``--compare REF`` or ``--cluster-compare``: rounds of phases 1 and 2 (no idle phase),
    alternating the sides, then the table."""

    async def run_side(side: Side, log_dir: Path, profile: Path | None) -> Fanout:
        return await measure(args, side)

    load = (
        f"{args.subscribers:,} subscribers, phase 1 at {args.rate:g} events/s for "
        f"{args.duration:g} s, phase 2 {args.burst_events:,} events, {args.burst_window} in "
        "flight"
    )
    figures = Figures(ROWS, line, "deliveries (none lost, duplicated or reordered)")
    log_dir = Path(tempfile.mkdtemp(prefix="bench-fanout-"))
    try:
        if args.compare:
            return await compare(
                args.compare, args.rounds, log_dir, None, run_side, figures,
                load=load, modules=("realtime_gateway",), redis=args.redis,
            )  # fmt: skip
        sides = cluster_sides(args.cluster_compare)
        out(f"{args.rounds} round(s) of {', '.join(side.label for side in sides)}: {load}")
        async with cancelled_on_sigterm():
            return await report_rounds(sides, args.rounds, log_dir, None, run_side, figures)
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    chooser = argparse.ArgumentParser(add_help=False)
    chooser.add_argument("--scenario", choices=SCENARIOS, default="fanout")
    chosen, rest = chooser.parse_known_args(argv)
    if chosen.scenario == "request":
        return bench.request.main(rest)
    args = parse_args(argv)
    comparing = bool(args.compare or args.cluster_compare)
    if comparing:
        args.skip_idle = True
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
        f"gateway on CPU {GATEWAY_CPU}, load generator (pid {os.getpid()}) and Redis (every "
        f"node of a cluster) on CPU {LOADGEN_CPU}"
        if pinned
        else "nothing pinned (one CPU)"
    )
    out(f"{placement}; open files limit {limit}; Python {sys.version.split()[0]}, uvloop")
    try:
        if comparing:
            return uvloop.run(compare_layouts(args))
        with PrivateRedis(args.redis) as redis:
            pin_redis(redis)
            uvloop.run(run(args, redis))
    except BenchError as exc:
        progress(f"failed: {exc}")
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        progress("interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
