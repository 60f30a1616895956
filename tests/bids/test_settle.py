"""The load test's in-flight count lets its end-of-run check wait for verdicts, boundedly."""

from __future__ import annotations

import threading
import time

from loadtests.settle import InFlight
from tests.support.waiting import MS, wait_until_blocking


def _until_closed(in_flight: InFlight, within: float = 5_000 * MS) -> None:
    def closed() -> bool:
        if not in_flight.admit():
            return True
        in_flight.done()
        return False

    wait_until_blocking(closed, "the count closed", within=within, interval=0.001)


def test_the_wait_ends_when_the_last_request_in_flight_ends() -> None:
    """Closing waits for the admitted request, returns 0 as soon as it ends, then admits none."""
    in_flight = InFlight()
    assert in_flight.admit()
    left: list[int] = []
    waiter = threading.Thread(
        target=lambda: left.append(in_flight.close_and_wait(time.monotonic() + 30.0))
    )
    waiter.start()
    _until_closed(in_flight)
    assert waiter.is_alive()
    in_flight.done()
    waiter.join(timeout=5.0)
    assert left == [0]
    assert not in_flight.admit()


def test_the_wait_gives_up_at_its_deadline_with_the_count_left() -> None:
    """Requests still in flight at the deadline are counted, not waited for further."""
    in_flight = InFlight()
    for _ in range(3):
        assert in_flight.admit()
    in_flight.done()
    assert in_flight.close_and_wait(time.monotonic() + 0.05) == 2
