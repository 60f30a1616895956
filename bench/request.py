"""Benchmark of client requests through one gateway: ``scripts/bench --scenario request``.

Starts a private stack on loopback (Redis, one gateway, one chat and one presence instance,
as ``scripts/bench-bids`` starts its own), opens ``--connections`` authenticated client
connections, each of which joins a chat room of its own, then drives each of ``--requests``
in turn: closed loop with ``--window`` requests in flight per connection (``--rate 0``, the
default) or open loop at ``--rate`` per second, for ``--duration`` seconds after ``--warmup``.

Per request type it prints the table ``scripts/bench-bids`` prints per accepted bid: the CPU
time of the gateway, the owning service and Redis per successful request over the measured
window (from /proc/<pid>/stat), throughput, reply latency, errors, and whether every request
got exactly one reply. The rate limits of the gateway and of chat are set far above the load,
so any ``rate_limited`` is reported (as expected) but none should occur. ``--cluster`` runs it
on a private Redis Cluster (chat and presence with a partition per master; Redis's CPU then
every node's). Every process is stopped by PID on the way out.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import uvloop

from bench.cluster_options import add_cluster_options, check_cluster_options
from bench.request_driver import MAX_WINDOW, REQUEST_KINDS, RequestRun
from bench.request_report import report_lines
from bench.system import out, progress
from loadtests.stack import Process, Stack


__all__ = ["main", "parse_args"]

#: Limits far above what the benchmark sends, so that it measures the path, not refusals.
_UNLIMITED = "1000000"
GATEWAY_ENV = {
    "RT_RATE_LIMIT": _UNLIMITED,
    "RT_RATE_BURST": _UNLIMITED,
    "RT_MAX_INFLIGHT": str(MAX_WINDOW),
}
CHAT_ENV = {"RT_CHAT_SEND_RATE": _UNLIMITED, "RT_CHAT_SEND_BURST": _UNLIMITED}


def _start_services(stack: Stack, profile: Path | None) -> dict[str, Process]:
    common = {**stack.redis.env, "RT_LOG_LEVEL": "warning"}
    masters = stack.redis.layout.masters
    if masters:  # on a cluster, as scripts/run --cluster: a partition per master
        common |= {"RT_CHAT_PARTITIONS": str(masters), "RT_PRESENCE_PARTITIONS": str(masters)}
    services = {
        "chat": Process(
            "chat", "chat_service", {**common, **CHAT_ENV}, stack.log_dir, profile=profile
        ),
        "presence": Process("presence", "presence_service", common, stack.log_dir, profile=profile),
    }
    try:
        stack.wait_ready(list(services.values()))
        stack.wait_routed(len(services))
    except BaseException:
        for process in services.values():
            process.stop()
        raise
    return services


def _mode(options: argparse.Namespace) -> str:
    if options.rate:
        return f"open loop at {options.rate:g}/s (window {options.window})"
    return f"closed loop, window {options.window}"


async def run(options: argparse.Namespace, log_dir: Path, profile: Path | None) -> int:
    # The driver keeps every latency: a full collection over them would stall it mid-run and
    # show up as latency that is not the system's.
    gc.disable()
    with Stack(
        log_dir, instances=0, gateway_env=GATEWAY_ENV, profile=profile, redis=options.redis
    ) as stack:
        services = _start_services(stack, profile)
        try:
            pids = {name: process.pid for name, process in services.items()}
            requests = RequestRun(options, stack, pids)
            progress(f"opening {options.connections} connections, each joining its own room")
            await requests.open()
            out(
                f"request benchmark on {options.redis.describe()}: 1 gateway, 1 chat and 1 "
                "presence instance, "
                f"{options.connections} connections (one user and room each), "
                f"{options.duration:g} s measured after {options.warmup:g} s warm-up per type"
            )
            failed = 0
            try:
                for kind in options.requests:
                    progress(f"{kind}: {_mode(options)}")
                    tally = await requests.phase(kind)
                    out()
                    for line in report_lines(tally, _mode(options)):
                        out(line)
                    failed += not tally.ok
            finally:
                requests.close()
        finally:
            for process in services.values():
                process.stop()
    return 1 if failed else 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench --scenario request",
        description="Request benchmark of one gateway with chat and presence (loopback only).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--requests",
        default=",".join(REQUEST_KINDS),
        help=f"request types, in order, comma-separated (of {', '.join(REQUEST_KINDS)})",
    )
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--rate", type=float, default=0.0, help="requests/s; 0: closed loop")
    parser.add_argument("--window", type=int, default=16, help="most requests in flight each")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per type")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    parser.add_argument("--log-dir", default=None, help="process logs (default: a temp dir)")
    parser.add_argument(
        "--profile", default=None, help="run gateway and services under cProfile, to DIR"
    )
    add_cluster_options(parser, partitions=None, compare=False)
    options = parser.parse_args(argv)
    check_cluster_options(parser, options)
    options.requests = [kind.strip() for kind in options.requests.split(",") if kind.strip()]
    unknown = [kind for kind in options.requests if kind not in REQUEST_KINDS]
    if unknown or not options.requests:
        parser.error(f"--requests: unknown {unknown}; choose from {', '.join(REQUEST_KINDS)}")
    if options.connections < 1:
        parser.error("--connections must be at least 1")
    if not 1 <= options.window <= MAX_WINDOW:
        parser.error(f"--window must be 1 to {MAX_WINDOW}")
    if options.rate < 0 or options.duration <= 0 or options.warmup < 0:
        parser.error("--rate and --warmup must not be negative, --duration must be positive")
    return options


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    log_dir = Path(options.log_dir or tempfile.mkdtemp(prefix="bench-request-"))
    profile = Path(options.profile).absolute() if options.profile else None
    try:
        return uvloop.run(run(options, log_dir, profile))
    except KeyboardInterrupt:
        progress("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
