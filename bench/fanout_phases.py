"""The phases of the fan-out benchmark (bench/fanout.py) on a gateway whose subscribers are
open: the warm-up, phase 1 at a fixed rate, phase 2 as fast as the gateway delivers, Redis's
idle cost before them, and which pub/sub channel the gateway subscribed to."""

from __future__ import annotations

import argparse
import asyncio
import math
import time

from bench.fanout_load import CHANNEL, Publisher, Subscriber
from bench.report import Meter, PhaseFigures, Totals, report_phase
from bench.system import BenchError, GatewayProcess, out, progress
from devtools.private_redis import PrivateRedis


__all__ = ["redis_background", "run_phases", "subscribed_channel"]

#: How long a phase waits for its last deliveries after its last publish.
DRAIN_TIMEOUT = 30.0
#: How long the burst waits for room in its window before it gives up.
STALL_TIMEOUT = 10.0
#: Upper bound on a burst phase, however many events it was asked for.
BURST_TIMEOUT = 180.0
WARMUP_EVENTS = 5
#: How long Redis's CPU is measured with nothing published, before the phases.
BACKGROUND_SECONDS = 3.0
#: How long the gateway's subscription may take to show in Redis once subscribers have theirs.
SUBSCRIBED_TIMEOUT = 5.0


async def run_phases(
    args: argparse.Namespace,
    gateway: GatewayProcess,
    publisher: Publisher,
    subscribers: list[Subscriber],
    totals: Totals,
    redis: PrivateRedis,
) -> tuple[PhaseFigures, PhaseFigures]:
    """The warm-up, phase 1 (fixed rate) and phase 2 (max rate); the figures of the last two."""
    n = len(subscribers)
    nodes = len(redis.pids)
    warmup = publisher.new_phase(WARMUP_EVENTS, subscribers)
    await publisher.publish(warmup, WARMUP_EVENTS)
    if not await warmup.received_within(WARMUP_EVENTS * n, DRAIN_TIMEOUT):
        raise BenchError(f"warm-up: {warmup.received} of {WARMUP_EVENTS * n} deliveries")

    events = max(1, round(args.rate * args.duration))
    progress(f"phase 1: {events} events at {args.rate}/s")
    phase = publisher.new_phase(events, subscribers)
    meter = Meter(gateway, redis.pids)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(events):
        delay = start + i / args.rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        await publisher.publish(phase)
    await phase.received_within(events * n, DRAIN_TIMEOUT)
    rate = args.rate * n
    fixed = report_phase(
        f"phase 1, fixed rate: {args.rate:g} events/s x {n:,} subscribers = {rate:,.0f} "
        f"deliveries/s for {args.duration:g} s",
        phase,
        subscribers,
        meter.stop(),
        gateway,
        totals,
        p99_target=True,
        redis_nodes=nodes,
    )

    events, window = args.burst_events, args.burst_window
    progress(f"phase 2: {events} events, at most {window} in flight")
    phase = publisher.new_phase(events, subscribers)
    meter = Meter(gateway, redis.pids)
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
    burst = report_phase(
        f"phase 2, max rate: {phase.published:,} events, at most {window} in flight"
        + (" (stopped early: deliveries stalled)" if stalled else ""),
        phase,
        subscribers,
        measured,
        gateway,
        totals,
        p99_target=False,
        redis_nodes=nodes,
    )
    return fixed, burst


async def redis_background(gateway: GatewayProcess, redis: PrivateRedis) -> float:
    """Redis's CPU (every node) as a share of one core while nothing is published, over
    :data:`BACKGROUND_SECONDS`: what the servers cost idle (a cluster's nodes ping each other)."""
    meter = Meter(gateway, redis.pids)
    await asyncio.sleep(BACKGROUND_SECONDS)  # the measurement window itself
    usage = meter.stop()
    share = usage.redis / usage.wall
    nodes = len(redis.pids)
    each = "" if nodes == 1 else f", {nodes} nodes together"
    out(f"redis while idle: {share:.1%} of a core{each} (over {usage.wall:.1f} s)")
    return share


async def subscribed_channel(redis: PrivateRedis) -> str:
    """The pub/sub channel the gateway subscribed to for :data:`CHANNEL` (the tree's name is
    ``ch:{presence.0}:presence:bench``; an older checkout's, under ``--compare``, may differ).

    Raises:
        BenchError: none within :data:`SUBSCRIBED_TIMEOUT`, or more than one.
    """
    deadline = time.monotonic() + SUBSCRIBED_TIMEOUT
    while True:
        channels = await asyncio.to_thread(redis.subscribed_channels, "*" + CHANNEL)
        if len(channels) == 1:
            return channels[0]
        if len(channels) > 1 or time.monotonic() >= deadline:
            raise BenchError(f"the gateway subscribed to {channels or 'no channel'} for {CHANNEL}")
        await asyncio.sleep(0.05)
