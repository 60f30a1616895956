"""A deadline, and a blocking wait for a condition under one.

The tests build their waits on these (tests/support/waiting.py scales every deadline); the
process launcher waits for readiness with them.
"""

from __future__ import annotations

import time
from collections.abc import Callable


__all__ = ["Deadline", "wait_until_blocking"]


class Deadline:
    """A moment ``within`` seconds from now."""

    def __init__(self, within: float) -> None:
        self.within = within
        self._end = time.monotonic() + within

    def remaining(self) -> float:
        """Seconds left, never below 0."""
        return max(0.0, self._end - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self._end


def wait_until_blocking(
    condition: Callable[[], bool], what: str, *, within: float, interval: float = 0.05
) -> None:
    """Poll ``condition`` every ``interval`` seconds until it holds, blocking the thread.

    Raises:
        AssertionError: it did not hold within ``within`` seconds; the message names ``what``.
    """
    deadline = Deadline(within)
    while not condition():
        if deadline.expired():
            raise AssertionError(f"timed out after {within:g} s waiting for {what}")
        time.sleep(interval)
