"""Prometheus helpers shared by every process."""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Generic, TypeVar

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString


__all__ = ["Children", "LoopCounter", "LoopHistogram"]

_Metric = TypeVar("_Metric", Counter, Gauge, Histogram)


class Children(Generic[_Metric]):
    """The labelled children of one metric, looked up once per label set.

    ``metric.labels(...)`` validates and locks on every call: a cost paid per message on the
    hot paths, where the label sets are few and fixed.
    """

    __slots__ = ("_children", "_metric")

    def __init__(self, metric: _Metric) -> None:
        self._metric: _Metric = metric
        self._children: dict[tuple[str, ...], _Metric] = {}

    def __call__(self, *values: str) -> _Metric:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


# prometheus_client's Counter and Histogram take a lock on every update (0.4 and 1.3 us
# here), which a gateway paid seven times per bid: a tenth of its work. The metrics below
# are plain numbers updated by the event loop's thread and read when /metrics is scraped,
# with the same exposition (a counter's _total and _created, a histogram's buckets, count
# and sum). Only for code that runs on one thread, as everything on an event loop does.


_Child = TypeVar("_Child")


class _LoopFamily(Generic[_Child]):
    """A metric and its labelled children, registered for scraping."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        # Registered by the subclass once it is complete: registering reads describe().
        self._name = name
        self._documentation = documentation
        self._labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], _Child] = {}

    def labels(self, *values: str) -> _Child:
        """The child of these label values (looked up in a dict, as :class:`Children`)."""
        child = self._children.get(values)
        if child is None:
            if len(values) != len(self._labelnames):
                raise ValueError(f"{self._name} takes labels {self._labelnames}, got {values}")
            child = self._children[values] = self._new_child()
        return child

    __call__ = labels

    def _new_child(self) -> _Child:
        raise NotImplementedError


class LoopCounter(_LoopFamily["_CounterValue"]):
    """A counter, or the family of labelled ones, updated without a lock."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        super().__init__(name, documentation, labelnames)
        self._alone = None if labelnames else self.labels()
        registry.register(self)

    def _new_child(self) -> _CounterValue:
        return _CounterValue()

    def inc(self, amount: float = 1) -> None:
        """Count ``amount`` on a counter without labels."""
        if self._alone is None:
            raise ValueError(f"{self._name} has labels: count on .labels(...)")
        self._alone.value += amount

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(self._name, self._documentation, labels=self._labelnames)

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(self._name, self._documentation, labels=self._labelnames)
        for values, child in self._children.items():
            family.add_metric(values, child.value, created=child.created)
        yield family


class _CounterValue:
    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1) -> None:
        self.value += amount


class LoopHistogram(_LoopFamily["_HistogramValue"]):
    """A histogram, or the family of labelled ones, updated without a lock."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str] = (),
        *,
        buckets: Sequence[float],
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        super().__init__(name, documentation, labelnames)
        self._bounds = tuple(sorted(buckets))
        registry.register(self)

    def _new_child(self) -> _HistogramValue:
        return _HistogramValue(self._bounds)

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self._name, self._documentation, labels=self._labelnames)
        for values, child in self._children.items():
            buckets, total = [], 0
            for bound, count in zip((*self._bounds, float("inf")), child.counts, strict=True):
                total += count
                buckets.append((floatToGoString(bound), float(total)))  # type: ignore[no-untyped-call]
            family.add_metric(values, buckets, child.sum)
        yield family


class _HistogramValue:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        #: Per bucket, not cumulative; the last one is +Inf's.
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
