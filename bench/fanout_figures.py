"""What one fan-out run measured (phases 1 and 2 of bench/fanout.py), as ``scripts/bench
--compare`` and ``--cluster-compare`` set it side by side (bench/alternate.py's table)."""

from __future__ import annotations

from dataclasses import dataclass

from bench.alternate import Row
from bench.report import PhaseFigures


__all__ = ["ROWS", "Fanout", "line"]


@dataclass(frozen=True, slots=True)
class Fanout:
    """One run's figures: phase 1 at a fixed rate, phase 2 as fast as the gateway delivers."""

    fixed: PhaseFigures
    burst: PhaseFigures
    #: Redis's CPU (every node) as a share of one core while nothing was published.
    redis_background: float

    @property
    def ok(self) -> bool:
        """Nothing lost, duplicated, reordered or stray in either phase."""
        return self.fixed.faults == 0 and self.burst.faults == 0

    def beyond_idle(self, phase: PhaseFigures) -> float:
        """Redis's CPU per event of ``phase`` beyond its idle cost (µs)."""
        return phase.redis_us_per_event_beyond(self.redis_background)


ROWS: tuple[Row[Fanout], ...] = (
    ("max rate: deliveries/s", lambda f: f.burst.deliveries_per_s),
    ("max rate: gateway us/delivery", lambda f: f.burst.gateway_us),
    ("max rate: redis us/event", lambda f: f.burst.redis_us_per_event),
    ("max rate: redis us/event beyond idle", lambda f: f.beyond_idle(f.burst)),
    ("max rate: latency p50, ms", lambda f: f.burst.p50_ms),
    ("max rate: latency p99, ms", lambda f: f.burst.p99_ms),
    ("fixed rate: gateway us/delivery", lambda f: f.fixed.gateway_us),
    ("fixed rate: redis us/event", lambda f: f.fixed.redis_us_per_event),
    ("fixed rate: redis us/event beyond idle", lambda f: f.beyond_idle(f.fixed)),
    ("fixed rate: latency p50, ms", lambda f: f.fixed.p50_ms),
    ("fixed rate: latency p99, ms", lambda f: f.fixed.p99_ms),
    ("redis idle, % of a core", lambda f: f.redis_background * 100),
)


def line(run: Fanout) -> str:
    """The line printed as a run ends."""
    faults = run.fixed.faults + run.burst.faults
    return (
        f"{run.burst.deliveries_per_s:9,.0f} deliveries/s  gateway "
        f"{run.burst.gateway_us:.2f} us/delivery  redis {run.burst.redis_us_per_event:.1f} "
        f"us/event  fixed-rate p99 {run.fixed.p99_ms:.2f} ms  "
        f"{'no fault' if not faults else f'{faults} lost/duplicated/reordered'}"
    )
