"""Fire-and-forget tasks that are neither garbage-collected early nor silently failed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any


__all__ = ["spawn"]

logger = logging.getLogger(__name__)
_running: set[asyncio.Task[Any]] = set()


def spawn(coroutine: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    """Run ``coroutine`` in the background, holding a reference until it ends."""
    task = asyncio.get_running_loop().create_task(coroutine)
    _running.add(task)
    task.add_done_callback(_finished)
    return task


def _finished(task: asyncio.Task[Any]) -> None:
    _running.discard(task)
    if not task.cancelled() and task.exception() is not None:
        logger.error("background task failed", exc_info=task.exception())
