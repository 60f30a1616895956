"""Stopping background tasks within a bounded time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any


__all__ = ["cancel_and_wait", "raise_if_cancelled"]

logger = logging.getLogger(__name__)


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]], within: float = 5.0) -> None:
    """Cancel ``tasks`` and wait for them, giving up after ``within`` seconds.

    Cancelled again while waiting: on Python 3.11, redis-py's timed I/O (``asyncio.timeout``
    around a read or write) can swallow a cancellation that lands as the I/O completes, and
    a loop would then run on and hold the shutdown forever.
    """
    remaining = {task for task in tasks if not task.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while remaining and loop.time() < deadline:
        for task in remaining:
            task.cancel()
        _, remaining = await asyncio.wait(remaining, timeout=min(0.5, deadline - loop.time()))
    if remaining:
        logger.error(
            "tasks did not stop in time", extra={"tasks": [t.get_name() for t in remaining]}
        )


def raise_if_cancelled() -> None:
    """Raise CancelledError if this task was asked to stop: call it once per loop turn.

    On Python 3.11, redis-py's timed I/O (``asyncio.timeout`` or ``wait_for`` around a read
    or write) can lose a cancellation that lands as the I/O completes (redis-py #2028): the
    Redis call returns as if nothing happened, and a ``while True`` loop would go on for
    ever. The request stays counted on the task, so it is checked here.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
