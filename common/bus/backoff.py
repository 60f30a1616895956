"""Reconnect delays: exponential, capped, with full jitter so that processes do not stampede."""

from __future__ import annotations

import random


__all__ = ["Backoff"]


class Backoff:
    def __init__(self, initial: float = 0.05, maximum: float = 2.0) -> None:
        self._initial = initial
        self._maximum = maximum
        self._current = initial

    def next_delay(self) -> float:
        delay = random.uniform(self._initial, self._current)
        self._current = min(self._current * 2, self._maximum)
        return delay

    def reset(self) -> None:
        self._current = self._initial
