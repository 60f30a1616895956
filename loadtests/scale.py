"""The same locust load against 1, 2 and 4 bids instances: ``python -m loadtests.scale``.

Each run gets a fresh stack (Redis, one gateway, N bids instances) and the same bidders for
the same time; the table shows, per instance count, bids answered and accepted per second,
the round-trip percentiles of ``bids.place`` from locust, where the CPU went, and whether
the invariants held. The closing note says what such a table can show on this machine.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
from pathlib import Path

from loadtests.run import LoadResult, run_load


__all__ = ["main"]


def _row(result: LoadResult, name: str) -> dict[str, str]:
    with result.stats_csv.open() as stats:
        for row in csv.DictReader(stats):
            if row["Name"] == name:
                return row
    return {}


def _rate(result: LoadResult) -> float:
    return float(_row(result, "bids.place").get("Requests/s") or 0)


def _explanation(cpus: int, results: dict[int, LoadResult]) -> str:
    low, high = min(results), max(results)
    first, last = results[low], results[high]
    busiest = max(first.cpu, key=lambda name: first.cpu[name])
    change = (_rate(last) / _rate(first) - 1) * 100 if _rate(first) else 0.0
    bids_cpu = [result.cpu["bids"] / result.seconds * 100 for result in (first, last)]
    return (
        f"What this shows on this machine ({cpus} CPUs): locust, the gateway, Redis and every "
        f"bids instance share the same {cpus} cores, and the busiest process is {busiest}, "
        f"the load generator itself. From {low} to {high} instances bids.place/s changed by "
        f"{change:+.0f}% while the bids instances together used {bids_cpu[0]:.0f}% then "
        f"{bids_cpu[1]:.0f}% of a core for about the same work: more instances add consumers "
        "of the one request stream but no CPU here, and each read of the stream then brings "
        "fewer bids, so each bid costs more round trips (and more wake-ups of more "
        "processes). The table cannot show a speed-up on one small host, and does not "
        "pretend to. What it does show is that any number of instances judge the same "
        "stream correctly (the invariants hold at every count); the service scales out "
        "where instances get CPU of their own (more hosts or containers with cores to "
        "spare), up to the limits of the one gateway and the one Redis measured by "
        "scripts/bench-bids."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--time", type=int, default=20, help="seconds per run (max 300)")
    parser.add_argument("--instances", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--work-dir", default=None)
    options = parser.parse_args(argv)
    if not 1 <= options.users <= 500 or not 1 <= options.time <= 300:
        parser.error("keep the runs bounded: 1-500 users, 1-300 seconds each")
    work_dir = Path(options.work_dir or tempfile.mkdtemp(prefix="loadtest-scale-"))
    results: dict[int, LoadResult] = {}
    for count in options.instances:
        print(f"running {options.users} bidders for {options.time} s against {count} bids "
              f"instance(s)...", flush=True)  # fmt: skip
        results[count] = run_load(
            users=options.users,
            spawn_rate=max(1.0, options.users / 2),
            seconds=options.time,
            instances=count,
            auctions=6,
            closing=2,
            work_dir=work_dir / f"instances-{count}",
            quiet=True,
        )
    header = (
        f"{'instances':>9} | {'bids.place/s':>12} | {'accepted/s':>10} | {'p50 ms':>6} | "
        f"{'p99 ms':>6} | {'event p99 ms':>12} | {'failures':>8} | invariants | "
        "CPU share of one core"
    )
    print()
    print(header)
    print("-" * len(header))
    failed = False
    for count, result in results.items():
        place = _row(result, "bids.place")
        delay = _row(result, "bid.placed delay")
        accepted = result.results.get("verdicts", {}).get("accepted", 0)
        elapsed = result.results.get("elapsed") or result.seconds
        ok = bool(result.results.get("invariants_ok")) and result.exit_code == 0
        failed |= not ok
        cpu = ", ".join(
            f"{name} {used / result.seconds * 100:.0f}%" for name, used in result.cpu.items()
        )
        print(
            f"{count:>9} | {float(place.get('Requests/s') or 0):>12.0f} | "
            f"{accepted / elapsed:>10.0f} | {place.get('50%', '?'):>6} | "
            f"{place.get('99%', '?'):>6} | {delay.get('99%', '?'):>12} | "
            f"{place.get('Failure Count', '?'):>8} | {'OK' if ok else 'FAILED':<10} | {cpu}"
        )
    print()
    print(_explanation(os.cpu_count() or 0, results))
    print(f"\n(logs and locust CSV files in {work_dir})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
