"""Tests of the common package, and the clean-up helper its bus tests share (waits are
tests/support/waiting.py's)."""

from __future__ import annotations

import asyncio


__all__ = ["cancel_and_wait"]


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
