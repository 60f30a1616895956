"""How tests wait: one scaled unit of time, one deadline, one way to wait for a condition.

Every deadline a test waits under is a multiple of :data:`MS`, one millisecond scaled by
``REALTIME_TEST_TIMEOUT_SCALE`` (default 1): a slow machine, or a run under coverage, stretches
them all at once with ``REALTIME_TEST_TIMEOUT_SCALE=2`` (the idea of python-websockets'
``tests/utils.py``). A wait ends as soon as its condition holds, so a generous deadline costs
nothing in a test that passes. Settings the processes under test get (a request timeout, a
grace period) are not waits, and are not scaled. :class:`Deadline` is devtools' own (the
process launcher waits with it too).
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Awaitable, Callable

from devtools import waiting
from devtools.waiting import Deadline


__all__ = ["MS", "WAIT", "Deadline", "wait_until", "wait_until_blocking"]

#: One millisecond of test time.
MS = 0.001 * float(os.environ.get("REALTIME_TEST_TIMEOUT_SCALE", "1"))
#: The deadline of a wait that names none.
WAIT = 10_000 * MS
# How often a condition is polled: a plain function is cheap, an async one does I/O (HTTP,
# Redis), which a faster poll would only load the machine with.
_POLL = 0.01
_POLL_IO = 0.05


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]],
    what: str = "the condition",
    *,
    within: float = WAIT,
    interval: float | None = None,
) -> None:
    """Poll ``condition`` (a function, possibly async) until it holds.

    Raises:
        AssertionError: it did not hold within ``within`` seconds; the message names ``what``.
    """
    deadline = Deadline(within)
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
            pause = _POLL_IO if interval is None else interval
        else:
            pause = _POLL if interval is None else interval
        if result:
            return
        if deadline.expired():
            raise AssertionError(f"timed out after {within:g} s waiting for {what}")
        await asyncio.sleep(pause)


def wait_until_blocking(
    condition: Callable[[], bool],
    what: str = "the condition",
    *,
    within: float = WAIT,
    interval: float = _POLL_IO,
) -> None:
    """:func:`wait_until` for code with no event loop (process start-up, the browser tests).

    Raises:
        AssertionError: ``condition`` did not hold within ``within`` seconds.
    """
    waiting.wait_until_blocking(condition, what, within=within, interval=interval)
