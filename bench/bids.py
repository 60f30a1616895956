"""Benchmark of ``bids.place`` through one gateway and the bids service (an asyncio driver).

``python -m bench.bids`` (or ``scripts/bench-bids``) starts a private stack on loopback (Redis,
one gateway, ``--instances`` bids instances), opens ``--connections`` client connections, and
places bids at ``--rate`` per second (open loop; ``--rate 0`` keeps ``--window`` bids in
flight per connection instead) for ``--duration`` seconds after ``--warmup``. Each
connection bids on an auction of its own with rising amounts, so every bid should be accepted;
``--observers`` connections subscribe to every auction and check that events arrive in order.

``--cluster`` runs it on a private Redis Cluster (3 masters, no replicas; the bids service
with a partition per master unless ``--partitions`` says otherwise), ``--compare REF`` on
REF's code and the tree's in alternating rounds, ``--cluster-compare`` on one Redis and on a
cluster in alternating rounds (bench/alternate.py), each with a table of the means and ratios.

It prints throughput, reply latency, event delay, the CPU time each process spent per accepted
bid (from /proc/<pid>/stat; Redis's summed over a cluster's nodes), and the invariant check
of every auction's history. The driver is not locust on purpose: gevent clients cost more
CPU than the system under test on two cores, while this driver's raw client
(bench/wsclient.py) costs a few microseconds per message.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench.alternate import Figures, Side, cancelled_on_sigterm, cluster_sides, report_rounds
from bench.bids_driver import Run
from bench.bids_figures import ROWS, Sample, line
from bench.cluster_options import add_cluster_options, check_cluster_options
from bench.compare import compare, verify_code_root
from bench.report import cpu_lines
from devtools.private_redis import RedisLayout
from loadtests.invariants import check_invariants
from loadtests.stack import REPO_ROOT, Stack


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _scrape(url: str) -> dict[str, float]:
    """Sums of the samples of a process's /metrics, by sample name and ``le`` label."""
    with urllib.request.urlopen(url + "/metrics", timeout=5.0) as response:
        text = response.read().decode()
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name
            if "le" in sample.labels:
                name += f"@{sample.labels['le']}"
            sums[name] = sums.get(name, 0.0) + sample.value
    return sums


def _quantile(metrics: dict[str, float], name: str, fraction: float) -> str:
    """The upper bound of the histogram bucket holding the quantile (as Prometheus would)."""
    buckets = sorted(
        (float(key.split("@")[1]), count)
        for key, count in metrics.items()
        if key.startswith(name + "_bucket@")
    )
    if not buckets or not buckets[-1][1]:
        return "?"
    wanted = fraction * buckets[-1][1]
    for bound, count in buckets:
        if count >= wanted:
            return f"<={bound * 1000:g}" if bound != float("inf") else ">max"
    return "?"


def internals(stack: Stack) -> str:
    """Where a bid's time goes inside the system, from the processes' own metrics."""
    bids = [_scrape(process.url) for process in stack.instances]
    gateway = _scrape(stack.gateways[0].url)

    def total(name: str) -> float:
        return sum(metrics.get(name, 0.0) for metrics in bids)

    batches = total("rt_bids_batch_size_count") or 1.0
    reads = total("rt_bids_queue_seconds_count") or 1.0
    requests = gateway.get("rt_gateway_request_seconds_count") or 1.0
    queue = bids[0] if len(bids) == 1 else {}
    gateway_rtt = gateway.get("rt_gateway_request_seconds_sum", 0) / requests * 1000
    return (
        f"inside (whole run): {total('rt_bids_batch_size_sum') / batches:.1f} bids per read, "
        f"{total('rt_bids_batch_seconds_sum') / batches * 1000:.2f} ms per read's script call; "
        f"gateway -> verdict {total('rt_bids_queue_seconds_sum') / reads * 1000:.2f} ms mean "
        f"(p50 {_quantile(queue, 'rt_bids_queue_seconds', 0.5)}, "
        f"p99 {_quantile(queue, 'rt_bids_queue_seconds', 0.99)} ms); "
        f"gateway round trip {gateway_rtt:.2f} ms mean "
        f"(p50 {_quantile(gateway, 'rt_gateway_request_seconds', 0.5)}, "
        f"p99 {_quantile(gateway, 'rt_gateway_request_seconds', 0.99)} ms)"
    )


def report(options: argparse.Namespace, run: Run, result: dict[str, Any], invariants: str) -> None:
    elapsed, cpu = result["elapsed"], result["cpu"]
    accepted = run.measured_accepted
    throughput = accepted / elapsed
    lat = run.latencies
    mode = (
        f"open loop at {options.rate}/s"
        if options.rate
        else f"closed loop, window {options.window}"
    )
    print(
        f"bids.place benchmark on {options.redis.describe()}: 1 gateway, {options.instances} "
        f"bids instance(s) (RT_SERVICE_BATCH={options.batch}, "
        f"{partitions_of(options, options.redis)} partition(s)), "
        f"{options.connections} connections, {mode}, "
        f"{options.observers} observer(s), {options.duration:g} s measured after "
        f"{options.warmup:g} s warm-up, {os.cpu_count()} CPUs"
    )
    outcomes = ", ".join(f"{name} {count}" for name, count in sorted(run.outcomes.items()))
    print(f"replies (whole run): {outcomes}; sends with no free window: {result['skipped']}")
    print(f"throughput: {throughput:,.0f} accepted bids/s ({accepted} in {elapsed:.2f} s)")
    print(
        f"reply latency ms: p50 {_percentile(lat, 0.5):.2f}  p90 {_percentile(lat, 0.9):.2f}  "
        f"p99 {_percentile(lat, 0.99):.2f}  max {max(lat, default=float('nan')):.2f}  "
        f"mean {statistics.fmean(lat) if lat else float('nan'):.2f}"
    )
    delays = [delay for observer in run.observers for delay in observer.delays]
    if run.observers:
        disorder = sum(observer.out_of_order for observer in run.observers)
        events = sum(observer.events for observer in run.observers)
        print(
            f"event delay ms (commit -> observer, 1 ms clock): p50 {_percentile(delays, 0.5):.1f}"
            f"  p99 {_percentile(delays, 0.99):.1f}; {events} events, {disorder} out of order"
        )
    print("\n".join(cpu_lines(cpu, accepted, elapsed, per="accepted bid", owner="bids")))
    print(invariants)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One benchmark run's driver, measurement and invariant check, once its stack stopped."""

    run: Run
    result: dict[str, Any]
    invariants: str
    internals: str
    ok: bool


def partitions_of(options: argparse.Namespace, redis: RedisLayout) -> int:
    """The bids service's partitions on ``redis``: ``--partitions``, else one per master of a
    cluster (so that every master holds some: bids' tags land on distinct masters of a
    cluster of up to 3), one on a single Redis."""
    return int(options.partitions or redis.masters or 1)


async def run_once(
    options: argparse.Namespace, side: Side, log_dir: Path, profile: Path | None
) -> Outcome:
    """Start a stack of ``side``'s gateway and bids on its Redis, drive it, check it, stop it."""
    partitions = partitions_of(options, side.redis)
    bids_env = {"RT_SERVICE_BATCH": str(options.batch)}
    if partitions != 1:  # the environment of a single partition stays that of older REFs
        bids_env["RT_BIDS_PARTITIONS"] = str(partitions)
    with Stack(
        log_dir,
        instances=options.instances,
        bids_env=bids_env,
        profile=profile,
        code_root=side.code_root,
        redis=side.redis,
    ) as stack:
        verify_code_root(
            side.code_root, [process.pid for process in [*stack.gateways, *stack.instances]]
        )
        run = Run(options, stack)
        await run.open()
        result = await run.run()
        for client in [*run.bidders, *run.observers]:
            client.close()
        auctions = [bidder.auction for bidder in run.bidders]
        invariants = check_invariants(
            stack.redis.url,
            auctions,
            run.accepted,
            partitions=stack.bids_partitions,
            cluster=side.redis.cluster,
            # REF's checkout may predate the partitions' key names (see loadtests/invariants).
            legacy_names=side.code_root != REPO_ROOT,
        )
        try:
            inside = internals(stack)
        except (OSError, ValueError) as exc:  # another checkout may name its metrics otherwise
            inside = f"inside: no metrics ({exc})"
        disorder = sum(observer.out_of_order for observer in run.observers)
        ok = invariants.ok and not disorder
        return Outcome(run, result, invariants.summary(), inside, ok)


def sample(outcome: Outcome) -> Sample:
    """The figures of a run that ``--compare`` and ``--cluster-compare`` set side by side."""
    accepted = outcome.run.measured_accepted or 1
    latencies = outcome.run.latencies
    nodes = outcome.result["redis_nodes"]
    return Sample(
        cpu_us={name: seconds / accepted * 1e6 for name, seconds in outcome.result["cpu"].items()},
        throughput=outcome.run.measured_accepted / outcome.result["elapsed"],
        p50_ms=_percentile(latencies, 0.5),
        p99_ms=_percentile(latencies, 0.99),
        invariants=outcome.invariants,
        ok=outcome.ok,
        busiest_node_us=max(nodes) / accepted * 1e6 if nodes else float("nan"),
    )


def _load(options: argparse.Namespace) -> str:
    """What each run is, for the header of a comparison."""
    mode = (
        f"open loop at {options.rate:g}/s"
        if options.rate
        else f"closed loop, window {options.window}"
    )
    return (
        f"1 gateway, {options.instances} bids instance(s), {options.connections} connections, "
        f"{mode}, {options.duration:g} s measured after {options.warmup:g} s warm-up each"
    )


async def main_async(options: argparse.Namespace, log_dir: Path, profile: Path | None) -> int:
    # The driver keeps every result: a full collection over them would stall it mid-run and
    # show up as latency that is not the system's.
    gc.disable()

    async def measure(side: Side, log_dir: Path, profile: Path | None) -> Sample:
        return sample(await run_once(options, side, log_dir, profile))

    figures = Figures(ROWS, line, "invariants")
    if options.compare:
        return await compare(
            options.compare, options.rounds, log_dir, profile, measure, figures,
            load=_load(options), redis=options.redis,
        )  # fmt: skip
    if options.cluster_compare:
        sides = cluster_sides(options.cluster_compare)
        print(
            f"{options.rounds} round(s) of {', '.join(side.label for side in sides)} (bids "
            f"partitions: {', '.join(str(partitions_of(options, s.redis)) for s in sides)}): "
            f"{_load(options)}",
            flush=True,
        )
        async with cancelled_on_sigterm():
            return await report_rounds(sides, options.rounds, log_dir, profile, measure, figures)
    side = Side("tree", REPO_ROOT, options.redis)
    outcome = await run_once(options, side, log_dir, profile)
    report(options, outcome.run, outcome.result, outcome.invariants)
    print(outcome.internals)
    return 0 if outcome.ok else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--rate", type=float, default=3000.0, help="bids/s; 0: closed loop")
    parser.add_argument("--window", type=int, default=16, help="most bids in flight per connection")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--observers", type=int, default=1)
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument(
        "--batch", type=int, default=64, help="RT_SERVICE_BATCH of the bids service"
    )
    parser.add_argument("--log-dir", default=None)
    add_cluster_options(parser, partitions="bids")
    parser.add_argument(
        "--compare",
        default=None,
        metavar="REF",
        help="run the same load on git ref REF's checkout and on the working tree, side by side",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="with --compare or --cluster-compare: runs of each side, alternating",
    )
    parser.add_argument(
        "--profile", default=None, help="run gateway and bids under cProfile, profiles to DIR"
    )
    options = parser.parse_args(argv)
    check_cluster_options(parser, options)
    if options.rounds < 1:
        parser.error("--rounds must be at least 1")
    if options.connections > 100 * max(1, options.observers) and options.observers:
        parser.error("one observer follows at most 100 auctions: add --observers")
    return options


def main() -> int:
    options = parse_args()
    log_dir = Path(options.log_dir or tempfile.mkdtemp(prefix="bench-bids-"))
    profile = Path(options.profile).absolute() if options.profile else None
    try:
        import uvloop
    except ImportError:
        run: Callable[[Coroutine[Any, Any, int]], int] = asyncio.run
    else:
        run = uvloop.run
    try:
        return run(main_async(options, log_dir, profile))
    except (KeyboardInterrupt, asyncio.CancelledError):
        # Ctrl-C or (with --compare) SIGTERM: the stack and any checkout are gone by now.
        print("bench-bids: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
