"""Run the locust load test headless against a private stack: ``python -m loadtests.run``.

Starts Redis, one gateway and ``--instances`` bids instances on loopback, creates the
auctions (most outlive the run; ``--closing`` of them end halfway through it, so that closing
is under load too), then runs locust for ``--time`` seconds with ``--users`` bidders and
prints its summary and the invariant check (run once the verdicts still in flight are in, or
``--settle`` seconds have passed). ``--cluster`` runs it on a private Redis Cluster of 3
masters, the bids service in 3 partitions. Exits with locust's status: non-zero when a
request failed or an invariant was violated.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools.private_redis import SINGLE, RedisLayout
from loadtests.stack import REPO_ROOT, Stack, cpu_seconds


__all__ = ["LoadResult", "main", "run_load"]

LOCUSTFILE = Path(__file__).with_name("locustfile.py")


@dataclass
class LoadResult:
    exit_code: int
    stats_csv: Path
    results: dict[str, Any]
    #: CPU seconds each process used while locust ran (locust, gateway, bids, redis).
    cpu: dict[str, float]
    seconds: float

    def cpu_line(self) -> str:
        shares = ", ".join(
            f"{name} {used / self.seconds * 100:.0f}%" for name, used in self.cpu.items()
        )
        return f"CPU while locust ran ({self.seconds:.0f} s, share of one core): {shares}"


def run_load(
    *,
    users: int,
    spawn_rate: float,
    seconds: int,
    instances: int,
    auctions: int,
    closing: int,
    work_dir: Path,
    think_time: tuple[float, float] = (0.0, 0.05),
    settle_seconds: float | None = None,
    quiet: bool = False,
    redis: RedisLayout = SINGLE,
) -> LoadResult:
    """One locust run against a fresh stack; locust's output goes to stdout unless ``quiet``.
    On a cluster (``redis``) the bids service has a partition per master."""
    bids_env = {"RT_BIDS_PARTITIONS": str(redis.masters)} if redis.cluster else {}
    with Stack(work_dir / "logs", instances=instances, bids_env=bids_env, redis=redis) as stack:
        created = []
        for index in range(auctions):
            ends_soon = index < closing
            created.append(
                stack.create_auction(
                    id=f"load-{index + 1}",
                    title=f"load auction {index + 1}",
                    starting_price=1000,
                    increment=10,
                    duration_s=max(1, seconds // 2) if ends_soon else seconds + 600,
                    # No anti-sniping on those meant to close: bids never stop here.
                    extend_window=0 if ends_soon else 5,
                    extend_by=5,
                )
            )
        config: dict[str, Any] = {
            "gateway_ws": f"ws://127.0.0.1:{stack.gateways[0].port}/ws",
            "jwt_secret": stack.jwt_secret,
            "redis_url": stack.redis.url,
            "redis_cluster": redis.cluster,
            "bids_partitions": stack.bids_partitions,
            "auctions": [
                {key: auction[key] for key in ("id", "starting_price", "increment")}
                for auction in created
            ],
            "results": str(work_dir / "results.json"),
            "think_time": think_time,
        }
        if settle_seconds is not None:
            config["settle_seconds"] = settle_seconds
        config_path = work_dir / "config.json"
        config_path.write_text(json.dumps(config))
        csv_prefix = work_dir / "locust"
        command = [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(LOCUSTFILE),
            "--headless",
            "--users",
            str(users),
            "--spawn-rate",
            str(spawn_rate),
            "--run-time",
            f"{seconds}s",
            "--stop-timeout",
            "5",
            "--host",
            f"http://127.0.0.1:{stack.gateways[0].port}",
            "--only-summary",
            "--csv",
            str(csv_prefix),
            "--bids-config",
            str(config_path),
            "--loglevel",
            "WARNING",
        ]
        env = {"PYTHONPATH": str(REPO_ROOT)}
        output = subprocess.DEVNULL if quiet else None
        groups = {
            "gateway": [process.pid for process in stack.gateways],
            "bids": [process.pid for process in stack.instances],
            "redis": stack.redis.pids,
        }
        before = {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in groups.items()}
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        completed = subprocess.run(
            command,
            cwd=REPO_ROOT,
            env={**_environ(), **env},
            stdout=output,
            stderr=output,
            timeout=seconds + 120,
            check=False,
        )
        elapsed = time.monotonic() - started
        after = {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in groups.items()}
        locust = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = {
            "locust": locust.ru_utime + locust.ru_stime - children.ru_utime - children.ru_stime,
            **{name: after[name] - before[name] for name in groups},
        }
        results_path = work_dir / "results.json"
        results = json.loads(results_path.read_text()) if results_path.exists() else {}
        return LoadResult(
            completed.returncode, Path(f"{csv_prefix}_stats.csv"), results, cpu, elapsed
        )


def _environ() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("RT_")}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--users", type=int, default=50, help="simulated bidders (max 500)")
    parser.add_argument("--spawn-rate", type=float, default=25.0)
    parser.add_argument("--time", type=int, default=30, help="seconds of load (max 600)")
    parser.add_argument("--instances", type=int, default=1, help="bids instances")
    parser.add_argument("--auctions", type=int, default=6)
    parser.add_argument("--closing", type=int, default=2, help="auctions ending mid-run")
    parser.add_argument(
        "--think",
        type=float,
        nargs=2,
        default=(0.0, 0.05),
        metavar=("LOW", "HIGH"),
        help="seconds a bidder waits between bids, uniform in [LOW, HIGH]",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=None,
        metavar="SECONDS",
        help="at the end, wait at most this long for verdicts in flight (default: request "
        "timeout + 5 s)",
    )
    parser.add_argument("--work-dir", default=None, help="logs, CSV and results (default: tmp)")
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="on a private Redis Cluster of 3 masters, the bids service in 3 partitions",
    )
    options = parser.parse_args(argv)
    if not 1 <= options.users <= 500 or not 1 <= options.time <= 600:
        parser.error("keep the run bounded: 1-500 users, 1-600 seconds")
    if not 0 <= options.closing <= options.auctions:
        parser.error("--closing must be between 0 and --auctions")
    return options


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    work_dir = Path(options.work_dir or tempfile.mkdtemp(prefix="loadtest-bids-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    print(
        f"load test: {options.users} bidders, {options.time} s, {options.instances} bids "
        f"instance(s), {options.auctions} auctions ({options.closing} ending mid-run)"
        f"{' on a Redis Cluster of 3 masters' if options.cluster else ''}; "
        f"logs and CSV in {work_dir}",
        flush=True,
    )
    result = run_load(
        users=options.users,
        spawn_rate=options.spawn_rate,
        seconds=options.time,
        instances=options.instances,
        auctions=options.auctions,
        closing=options.closing,
        work_dir=work_dir,
        think_time=tuple(options.think),
        settle_seconds=options.settle,
        redis=RedisLayout(3) if options.cluster else SINGLE,
    )
    print(result.cpu_line())
    print(f"locust exited with {result.exit_code}")
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
