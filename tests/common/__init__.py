"""Tests of the common package, and the waiting helpers its bus tests share."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable


__all__ = ["WAIT", "cancel_and_wait", "eventually"]

#: The deadline of one wait, in seconds: generous, as a wait ends as soon as its condition holds.
WAIT = 10.0

#: How often a condition is polled.
_POLL = 0.01


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]],
    what: str,
    *,
    within: float = WAIT,
) -> None:
    """Poll ``condition`` (a function, possibly async) until it holds.

    Raises:
        AssertionError: it did not hold within ``within`` seconds; the message names ``what``.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() >= deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(_POLL)


async def cancel_and_wait(
    tasks: list[asyncio.Task[None]], what: str, *, rounds: int = 5, within: float = 1.0
) -> None:
    """Cancel ``tasks`` and wait until they have ended, whatever they ended with.

    A task that swallowed a cancellation (redis-py can, inside a blocking command; see
    test_bus_worker_recovery) is cancelled again, up to ``rounds`` times, so that one test's cleanup
    does not hang the next.

    Raises:
        AssertionError: a task was still running after every round; the message shows where.
    """
    running = {task for task in tasks if not task.done()}
    for _ in range(rounds):
        if not running:
            break
        for task in running:
            task.cancel()
        _, running = await asyncio.wait(running, timeout=within)
    if running:
        stacks = [
            " <- ".join(f"{f.f_code.co_name}:{f.f_lineno}" for f in reversed(task.get_stack()))
            for task in running
        ]
        raise AssertionError(f"{len(running)} {what} still running after cancel: {stacks}")
    for task in tasks:
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not log it as never retrieved
