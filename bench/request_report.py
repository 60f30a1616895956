"""What one phase of the request benchmark counted, and its report (pure: no I/O).

The CPU table has the rows and columns of ``scripts/bench-bids``' "CPU per accepted bid":
microseconds of each process per successful request over the measured window, and its
share of one core.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass, field

from bench.report import cpu_lines, percentile


__all__ = ["EXPECTED_ERRORS", "Tally", "report_lines"]

#: Refusals a benchmark may meet without anything being wrong (it sets the limits high).
EXPECTED_ERRORS = frozenset({"rate_limited"})
#: Notes kept per phase (the first failures say enough).
_MAX_NOTES = 5


@dataclass(slots=True)
class Tally:
    """The counts of one request type's phase, filled in by the driver."""

    kind: str
    #: The service that answers ``kind``.
    owner: str
    #: Every request of the phase, warm-up and drain included.
    sent: int = 0
    #: Replies by outcome: ``"ok"`` or the error code.
    outcomes: Counter[str] = field(default_factory=Counter)
    #: Successful replies to requests sent in the measured window.
    measured_ok: int = 0
    #: Reply latencies (ns) of the requests sent in the measured window.
    latencies_ns: list[int] = field(default_factory=list)
    #: Replies to no request in flight: a second reply, or a stray.
    unexpected: int = 0
    #: Requests still without a reply when the phase ended.
    unanswered: int = 0
    #: Open loop: sends due that found every connection's window full.
    skipped: int = 0
    lost_connections: int = 0
    notes: list[str] = field(default_factory=list)
    #: Wall seconds of the measured window.
    elapsed: float = 0.0
    #: CPU seconds of each process over the measured window.
    cpu: dict[str, float] = field(default_factory=dict)

    def answer(self, error: str | None, latency_ns: int | None) -> None:
        """One reply: ``error`` is its code (None if ok); a latency if it was measured."""
        self.outcomes[error or "ok"] += 1
        if latency_ns is not None:
            self.latencies_ns.append(latency_ns)
            if error is None:
                self.measured_ok += 1

    def note(self, message: str) -> None:
        if len(self.notes) < _MAX_NOTES:
            self.notes.append(message)

    @property
    def answered(self) -> int:
        return sum(self.outcomes.values())

    @property
    def unexpected_errors(self) -> int:
        return sum(n for code, n in self.outcomes.items() if code not in {"ok", *EXPECTED_ERRORS})

    @property
    def exactly_once(self) -> bool:
        """Every request answered, none twice, no reply to nothing."""
        return self.answered == self.sent and not self.unexpected and not self.unanswered

    @property
    def ok(self) -> bool:
        return self.exactly_once and not self.unexpected_errors and not self.lost_connections


def _ms(ns: float) -> str:
    return f"{ns / 1e6:.2f}"


def report_lines(tally: Tally, mode: str) -> list[str]:
    """The report of one phase; ``mode`` says how it was driven (closed loop, rate...)."""
    elapsed, count = tally.elapsed, tally.measured_ok
    lines = [f"{tally.kind} ({tally.owner} service), {mode}, {elapsed:.2f} s measured"]
    outcomes = ", ".join(f"{name} {n}" for name, n in sorted(tally.outcomes.items()))
    lines.append(f"replies (whole phase): {outcomes or 'none'}; sends with no free window: "
                 f"{tally.skipped}")  # fmt: skip
    rate = count / elapsed if elapsed else math.nan
    lines.append(f"throughput: {rate:,.0f} requests/s ({count} answered ok in {elapsed:.2f} s)")
    ordered = sorted(tally.latencies_ns)
    if ordered:
        p50, p90, p99, top = (percentile(ordered, q) for q in (0.5, 0.9, 0.99, 1.0))
        lines.append(
            f"reply latency ms: p50 {_ms(p50)}  p90 {_ms(p90)}  p99 {_ms(p99)}  max {_ms(top)}  "
            f"mean {_ms(statistics.fmean(ordered))}"
        )
    lines.extend(cpu_lines(tally.cpu, count, elapsed, per="request", owner=tally.owner))
    errors = tally.unexpected_errors
    lines.append(
        f"errors: {errors} unexpected, {tally.answered - tally.outcomes['ok'] - errors} "
        f"expected ({', '.join(sorted(EXPECTED_ERRORS))}); "
        f"connections lost: {tally.lost_connections}"
    )
    lines.append(
        f"correctness: {tally.sent} sent, {tally.answered} answered, {tally.unanswered} "
        f"unanswered, {tally.unexpected} unexpected replies: "
        + ("every request answered exactly once" if tally.exactly_once else "FAILED")
    )
    lines.extend(f"  {note}" for note in tally.notes)
    return lines
