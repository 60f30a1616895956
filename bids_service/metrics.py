"""The bids service's own Prometheus metrics, beside the shared ``rt_service_*`` ones."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from common.errors import ErrorCode


__all__ = ["BidsMetrics"]

#: Every result of a ``bids.place``; label values never come from clients.
RESULTS = (
    "accepted",
    ErrorCode.BID_TOO_LOW.value,
    ErrorCode.AUCTION_CLOSED.value,
    ErrorCode.AUCTION_NOT_FOUND.value,
    ErrorCode.INVALID_AMOUNT.value,
    ErrorCode.BAD_REQUEST.value,
    ErrorCode.RATE_LIMITED.value,
)


class BidsMetrics:
    """Created once per process (Prometheus metrics register globally)."""

    def __init__(self) -> None:
        placed = Counter(
            "rt_bids_placed",
            "bids.place requests handled, by result (accepted or an error code).",
            ["result"],
        )
        self.placed = {result: placed.labels(result) for result in RESULTS}
        self.replayed = Counter(
            "rt_bids_replayed",
            "bids.place answered with the verdict stored under its idempotency key (retries).",
        )
        self.extended = Counter("rt_bids_extended", "Auctions extended by a late bid.")
        self.closed = Counter("rt_bids_closed", "Auctions this instance closed.")
        self.close_lag = Histogram(
            "rt_bids_close_lag_seconds",
            "How late auctions closed: from their end (ends_at) to the close, by Redis's clock.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0),
        )
        self.closer_runs = Counter(
            "rt_bids_closer_runs", "Passes of the loop that closes auctions whose end has passed."
        )
        self.batch_seconds = Histogram(
            "rt_bids_batch_seconds",
            "Time to judge one read's bids together (one Redis round trip).",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        self.batch_size = Histogram(
            "rt_bids_batch_size",
            "bids.place requests judged together.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        )
        self.queue_seconds = Histogram(
            "rt_bids_queue_seconds",
            "From a bid's arrival at the gateway to its verdict (includes time in the stream).",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
        )
        self.close_errors = Counter(
            "rt_bids_closer_errors", "Redis failures of the loop that closes auctions."
        )
