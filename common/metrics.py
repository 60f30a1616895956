"""Prometheus helpers shared by every process."""

from __future__ import annotations

from typing import Generic, TypeVar

from prometheus_client import Counter, Gauge, Histogram


__all__ = ["Children"]

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
