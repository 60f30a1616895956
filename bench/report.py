"""Measurement and report of the fan-out benchmark: CPU use, phase reports, targets."""

from __future__ import annotations

import argparse
import math
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from bench.system import (
    _CLOCK_TICKS,
    CAN_PIN,
    GATEWAY_CPU,
    GatewayProcess,
    cpu_times,
    out,
    process_cpu_ns,
    process_times,
)


if TYPE_CHECKING:
    from bench.fanout_load import Phase, Subscriber

__all__ = [
    "REFERENCES",
    "TARGET_CPU_US",
    "TARGET_IDLE_KB",
    "TARGET_P99_MS",
    "Meter",
    "PhaseFigures",
    "Totals",
    "Usage",
    "cpu_lines",
    "percentile",
    "report_phase",
    "summary",
    "verdict",
]

TARGET_CPU_US = 14.0
TARGET_P99_MS = 50.0
TARGET_IDLE_KB = 20.0
REFERENCES = (
    "CPU per delivery: Node socket.io + Redis adapter 16.4 µs, websockets broadcast() 17.5 µs,",
    "  plain Starlette on websockets-sansio 21.7 µs;",
    "memory per idle connection: websockets 15.4 KB, plain Starlette 26 KB",
)


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
    #: Every Redis server process (each node of a cluster) together, to the nanosecond.
    redis: float = 0.0

    @property
    def gateway(self) -> float:
        return self.gateway_user + self.gateway_system


class Meter:
    """Wall time and CPU use of the gateway, its CPU, this process and the Redis servers
    (``redis_pids``), since construction."""

    def __init__(self, gateway: GatewayProcess, redis_pids: Sequence[int] = ()) -> None:
        self._pid = gateway.pid
        self._redis_pids = tuple(redis_pids)
        self._start = self._sample()

    def _sample(self) -> Usage:
        user, system = process_times(self._pid)
        busy, softirq = cpu_times(GATEWAY_CPU) if CAN_PIN else (math.nan, math.nan)
        own = time.process_time()
        redis = sum(process_cpu_ns(pid) for pid in self._redis_pids) / 1e9
        return Usage(time.monotonic(), user, system, own, busy, softirq, redis)

    def stop(self) -> Usage:
        end, start = self._sample(), self._start
        return Usage(*(getattr(end, f.name) - getattr(start, f.name) for f in fields(Usage)))


def cpu_lines(
    cpu: Mapping[str, float], count: int, elapsed: float, *, per: str, owner: str
) -> list[str]:
    """The table of CPU per operation and share of one core, of each process and of the system
    (all but the driver), as ``scripts/bench-bids`` and ``--scenario request`` print it."""
    lines = [f"CPU per {per} (us) and share of one core:"]
    for name, seconds in cpu.items():
        each = seconds / count * 1e6 if count else math.nan
        share = seconds / elapsed * 100 if elapsed else math.nan
        lines.append(f"  {name:<8} {each:7.1f} us   {share:5.1f} %")
    system = sum(seconds for name, seconds in cpu.items() if name != "driver")
    lines.append(
        f"  {'system':<8} {system / count * 1e6 if count else math.nan:7.1f} us   "
        f"{system / elapsed * 100 if elapsed else math.nan:5.1f} %  (gateway + {owner} + redis)"
    )
    return lines


def percentile(ordered: Sequence[int], q: float) -> int:
    """Nearest-rank percentile of sorted values."""
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


@dataclass(frozen=True, slots=True)
class PhaseFigures:
    """What a fan-out phase measured, as ``--compare`` and ``--cluster-compare`` set it side by
    side (bench/fanout_figures.py)."""

    deliveries_per_s: float
    p50_ms: float
    p99_ms: float
    #: Deliveries lost, duplicated, out of order or stray: 0 in a sound run.
    faults: int
    gateway_us: float
    #: Redis CPU (every node) per delivery, and per event (what one SPUBLISH costs it).
    redis_us_per_delivery: float
    redis_us_per_event: float
    #: What the phase was: events published, seconds, Redis's CPU seconds (every node).
    events: int = 0
    wall: float = 0.0
    redis_seconds: float = 0.0

    def redis_us_per_event_beyond(self, idle_share: float) -> float:
        """Redis's CPU per event beyond what it spends idle (``idle_share`` of a core, its
        cron and a cluster's gossip), which a few events per second do not outweigh."""
        if not self.events:
            return math.nan
        return (self.redis_seconds - idle_share * self.wall) / self.events * 1e6


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
    redis_nodes: int = 0,
) -> PhaseFigures:
    """Print the phase's report (with Redis's CPU if ``redis_nodes`` servers were measured);
    its figures."""
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
    redis_per_delivery = usage.redis / phase.received * 1e6 if phase.received else math.nan
    redis_per_event = usage.redis / phase.published * 1e6 if phase.published else math.nan
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
    if redis_nodes:
        nodes = "" if redis_nodes == 1 else f", {redis_nodes} nodes together"
        out(
            f"  redis CPU               {usage.redis:.2f} s ({usage.redis / wall:.0%} of a core"
            f"{nodes}) = {redis_per_event:.2f} µs per event, {redis_per_delivery:.3f} µs per "
            "delivery"
        )
    load = own_cpu / wall
    note = "  (saturated: the load generator may be the bottleneck)" if load > 0.9 else ""
    out(f"  load generator CPU      {own_cpu:.2f} s ({load:.0%} of a core){note}")
    closes = Counter(s.close_code or s.error or "?" for s in subscribers if s.closed.done())
    if closes:
        out(f"  connections lost        {sum(closes.values())}: {dict(closes)}")
    p50, p99 = (
        (percentile(ordered, q) / 1e6 for q in (0.50, 0.99)) if ordered else (math.nan, math.nan)
    )
    return PhaseFigures(
        deliveries_per_s=phase.received / span_s,
        p50_ms=p50,
        p99_ms=p99,
        faults=lost + phase.duplicates + phase.reordered + phase.strays,
        gateway_us=per_delivery,
        redis_us_per_delivery=redis_per_delivery,
        redis_us_per_event=redis_per_event,
        events=phase.published,
        wall=wall,
        redis_seconds=usage.redis,
    )


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
