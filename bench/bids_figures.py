"""What one ``scripts/bench-bids`` run measured, as ``--compare`` and ``--cluster-compare`` set
it side by side (bench/alternate.py's table)."""

from __future__ import annotations

from dataclasses import dataclass

from bench.alternate import Row


__all__ = ["ROWS", "Sample", "line"]


@dataclass(frozen=True, slots=True)
class Sample:
    """One run's figures."""

    #: CPU microseconds per accepted bid, by process ("gateway", "bids", "redis", "driver");
    #: "redis" is every node of a cluster together.
    cpu_us: dict[str, float]
    throughput: float
    p50_ms: float
    p99_ms: float
    invariants: str
    ok: bool
    #: CPU microseconds per accepted bid of the busiest Redis node (all of "redis" on one
    #: Redis; on a cluster, how evenly the partitions spread the work).
    busiest_node_us: float = float("nan")

    @property
    def system_us(self) -> float:
        return self.cpu_us["gateway"] + self.cpu_us["bids"] + self.cpu_us["redis"]


ROWS: tuple[Row[Sample], ...] = (
    ("gateway CPU per bid, us", lambda s: s.cpu_us["gateway"]),
    ("bids CPU per bid, us", lambda s: s.cpu_us["bids"]),
    ("redis CPU per bid, us", lambda s: s.cpu_us["redis"]),
    ("busiest redis node, us", lambda s: s.busiest_node_us),
    ("system CPU per bid, us", lambda s: s.system_us),
    ("driver CPU per bid, us", lambda s: s.cpu_us["driver"]),
    ("accepted bids/s", lambda s: s.throughput),
    ("reply latency p50, ms", lambda s: s.p50_ms),
    ("reply latency p99, ms", lambda s: s.p99_ms),
)


def line(sample: Sample) -> str:
    """The line printed as a run ends."""
    return f"{sample.throughput:7,.0f} bids/s  p99 {sample.p99_ms:6.2f} ms  {sample.invariants}"
