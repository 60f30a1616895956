"""The lock-free metrics expose what prometheus_client's own would, sample for sample."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from common.metrics import LoopCounter, LoopHistogram


BUCKETS = (0.001, 0.01, 0.1, 1.0)


def _exposition(registry: CollectorRegistry) -> list[str]:
    """The text exposition without ``_created`` samples (their values are clock readings)."""
    lines = generate_latest(registry).decode().splitlines()
    return [line for line in lines if "_created" not in line]


def test_a_loop_counter_exposes_what_a_counter_does() -> None:
    native, loop = CollectorRegistry(), CollectorRegistry()
    counters = (
        Counter("rt_x", "Things.", ["kind"], registry=native),
        LoopCounter("rt_x", "Things.", ["kind"], registry=loop),
    )
    plain = (
        Counter("rt_y", "Others.", registry=native),
        LoopCounter("rt_y", "Others.", registry=loop),
    )
    for counter in counters:
        counter.labels("a").inc()
        counter.labels("a").inc(2.5)
        counter.labels("b").inc()
    for counter in plain:
        counter.inc(3)
    assert _exposition(loop) == _exposition(native)
    assert "rt_x_created" in generate_latest(loop).decode()


def test_a_loop_histogram_exposes_what_a_histogram_does() -> None:
    native, loop = CollectorRegistry(), CollectorRegistry()
    histograms = (
        Histogram("rt_s", "Seconds.", ["service"], buckets=BUCKETS, registry=native),
        LoopHistogram("rt_s", "Seconds.", ["service"], buckets=BUCKETS, registry=loop),
    )
    for histogram in histograms:
        # On a bound, between bounds, past the last one.
        for value in (0.001, 0.0005, 0.05, 0.1, 3.0, 0.5):
            histogram.labels("bids").observe(value)
        histogram.labels("chat").observe(0.002)
    assert _exposition(loop) == _exposition(native)


def test_label_values_must_match_the_label_names() -> None:
    registry = CollectorRegistry()
    counter = LoopCounter("rt_z", "Z.", ["a", "b"], registry=registry)
    with pytest.raises(ValueError, match="takes labels"):
        counter.labels("only-one")
    with pytest.raises(ValueError, match="has labels"):
        counter.inc()
    histogram = LoopHistogram("rt_h", "H.", ["a"], buckets=BUCKETS, registry=registry)
    with pytest.raises(ValueError, match="takes labels"):
        histogram.labels()
    assert counter("x", "y") is counter.labels("x", "y")
