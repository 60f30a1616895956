"""Bounded waits that let a stopped load test settle before its invariants are read from Redis.

A bid's verdict reaches its client after the bid is committed, so every verdict a client holds
is in Redis by the time the client has it; the reverse race is the one to avoid: a verdict
that arrives after the check has read its auction looks like a lost bid. Hence the check stops
new requests, waits for those in flight (:class:`InFlight`) and for the request stream to drain
(:func:`wait_for_stream`), and only then reads Redis.
"""

from __future__ import annotations

import threading
import time
from typing import Any, cast

from common.keys import request_stream
from devtools.private_redis import blocking_client


__all__ = ["InFlight", "wait_for_stream"]

_POLL = 0.1


class InFlight:
    """Requests between their send and their verdict; once closed it admits no new one.

    Thread-safe; under locust's monkey-patching its waits yield to the other greenlets.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._count = 0
        self._closed = False

    def admit(self) -> bool:
        """Count one more request in flight; False, counting nothing, once closed."""
        with self._changed:
            if self._closed:
                return False
            self._count += 1
            return True

    def done(self) -> None:
        """An admitted request ended: with its verdict, without one, or killed."""
        with self._changed:
            self._count -= 1
            self._changed.notify_all()

    def close_and_wait(self, deadline: float) -> int:
        """Admit no more; wait until none is in flight or ``deadline`` (monotonic) passes.

        Returns:
            How many requests are still in flight (0 unless the deadline passed).
        """
        with self._changed:
            self._closed = True
            self._changed.wait_for(
                lambda: self._count == 0, timeout=max(0.0, deadline - time.monotonic())
            )
            return self._count


def wait_for_stream(
    redis_url: str, service: str, deadline: float, *, cluster: bool = False
) -> bool:
    """Wait until every request in ``service``'s streams (one per partition) was handled and
    acknowledged, on one Redis or on a cluster (``redis_url`` its seeds; the scan then goes
    over every master).

    Returns:
        True once drained; False if requests were still waiting at ``deadline`` (monotonic).
    """
    with blocking_client(redis_url, cluster=cluster) as client:
        streams = [
            name.decode()
            for name in client.scan_iter(match=request_stream(service, "*"), _type="stream")
        ]
        while True:
            groups = [
                group
                for stream in streams
                for group in cast("list[dict[str, Any]]", client.xinfo_groups(stream))
            ]
            if all(int(g["pending"]) == 0 and int(g.get("lag") or 0) == 0 for g in groups):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(_POLL)
