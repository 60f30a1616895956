"""A fan-out run's figures as the comparisons read them (bench/fanout_figures.py): pure."""

from __future__ import annotations

import pytest

from bench.fanout_figures import ROWS, Fanout, line
from bench.report import PhaseFigures


def _phase(deliveries: float, *, faults: int = 0) -> PhaseFigures:
    return PhaseFigures(deliveries, 1.0, 5.0, faults, 0.7, 0.01, 10.0)


def test_a_run_is_sound_only_with_no_fault_in_either_phase() -> None:
    """A delivery lost, duplicated or reordered in phase 1 or 2 fails the run."""
    assert Fanout(_phase(1e4), _phase(3e5), 0.001).ok
    assert not Fanout(_phase(1e4, faults=1), _phase(3e5), 0.001).ok
    assert not Fanout(_phase(1e4), _phase(3e5, faults=2), 0.001).ok
    assert "2 lost/duplicated/reordered" in line(Fanout(_phase(1e4), _phase(3e5, faults=2), 0.0))


def test_the_rows_read_the_max_rate_phase_then_the_fixed_rate_one() -> None:
    """Throughput and CPU per event come from phase 2, the latency at a fixed rate from phase
    1, the idle share in percent."""
    run = Fanout(PhaseFigures(1e4, 2.0, 9.0, 0, 8.0, 0.02, 200.0), _phase(3e5), 0.004)
    figures = {label: read(run) for label, read in ROWS}
    assert figures["max rate: deliveries/s"] == 3e5
    assert figures["max rate: redis us/event"] == 10.0
    assert figures["fixed rate: latency p99, ms"] == 9.0
    assert figures["fixed rate: gateway us/delivery"] == 8.0
    assert figures["redis idle, % of a core"] == pytest.approx(0.4)


def test_redis_beyond_idle_takes_off_what_the_servers_spend_doing_nothing() -> None:
    """Of 0.05 s of Redis CPU over 10 s and 5,000 events, 0.4 % of a core idle leaves 0.01 s:
    2 µs per event."""
    fixed = PhaseFigures(2500.0, 1.0, 3.0, 0, 4.0, 0.2, 10.0, events=5000, wall=10.0,
                         redis_seconds=0.05)  # fmt: skip
    run = Fanout(fixed, _phase(3e5), 0.004)
    figures = {label: read(run) for label, read in ROWS}
    assert figures["fixed rate: redis us/event beyond idle"] == pytest.approx(2.0)
    assert fixed.redis_us_per_event_beyond(0.0) == pytest.approx(10.0)
