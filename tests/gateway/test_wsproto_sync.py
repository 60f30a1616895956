"""The light queue and flag that replace uvicorn's asyncio.Queue and asyncio.Event."""

from __future__ import annotations

import asyncio

import pytest

from realtime_gateway.wsproto import _Flag, _Inbox


async def test_inbox_get_waits_for_a_put_and_keeps_order() -> None:
    """get() waits until something is put, then returns items in the order they were put."""
    inbox = _Inbox()
    getter = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    assert not getter.done()
    inbox.put_nowait("first")
    inbox.put_nowait("second")
    assert await asyncio.wait_for(getter, 1.0) == "first"
    assert not inbox.empty()
    assert await inbox.get() == "second"
    assert inbox.empty()


async def test_inbox_get_cancelled_loses_nothing() -> None:
    """A get() cancelled while waiting leaves later items for the next get()."""
    inbox = _Inbox()
    getter = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    getter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await getter
    inbox.put_nowait("kept")
    assert await asyncio.wait_for(inbox.get(), 1.0) == "kept"


async def test_flag_wait_returns_at_once_when_set_and_waits_when_cleared() -> None:
    """wait() passes while set, blocks every waiter while cleared, and set() releases them."""
    flag = _Flag()
    assert await asyncio.wait_for(flag.wait(), 1.0) is True
    flag.clear()
    assert not flag.is_set()
    waiters = [asyncio.create_task(flag.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(waiter.done() for waiter in waiters)
    flag.set()
    assert await asyncio.wait_for(asyncio.gather(*waiters), 1.0) == [True, True, True]
