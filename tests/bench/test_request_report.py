"""The request benchmark's tally and report (bench/request_report.py): pure, no processes."""

from __future__ import annotations

from bench.request_report import Tally, report_lines


def _tally(replies: int, *, errors: dict[str, int] | None = None) -> Tally:
    tally = Tally("chat.send", "chat", sent=replies + sum((errors or {}).values()))
    for i in range(replies):
        tally.answer(None, 1_000_000 * (i + 1))
    for code, count in (errors or {}).items():
        for _ in range(count):
            tally.answer(code, None)
    tally.elapsed = 2.0
    tally.cpu = {"gateway": 0.004, "chat": 0.002, "redis": 0.001, "driver": 0.003}
    return tally


def test_cpu_per_request_counts_successful_measured_replies() -> None:
    """CPU per request divides each process's CPU by the successful measured replies, and the
    system row sums gateway, owner and Redis but not the driver."""
    lines = report_lines(_tally(100), "closed loop, window 16")
    assert "  gateway     40.0 us     0.2 %" in lines
    assert "  chat        20.0 us     0.1 %" in lines
    assert any(line.startswith("  system      70.0 us") for line in lines)
    assert "throughput: 50 requests/s (100 answered ok in 2.00 s)" in lines
    assert any("p50 50.00  p90 90.00  p99 99.00  max 100.00" in line for line in lines)


def test_exactly_once_fails_on_a_missing_or_a_second_reply() -> None:
    """A request left unanswered, or a reply to nothing in flight, fails the correctness line."""
    tally = _tally(10)
    assert tally.ok
    assert "every request answered exactly once" in report_lines(tally, "")[-1]
    tally.unexpected = 1
    assert not tally.ok
    assert report_lines(tally, "")[-1].endswith("FAILED")
    missing = _tally(10)
    missing.sent += 1
    missing.unanswered = 1
    assert not missing.exactly_once


def test_rate_limits_are_expected_other_errors_are_not() -> None:
    """``rate_limited`` replies are reported as expected and pass; any other error fails."""
    limited = _tally(5, errors={"rate_limited": 2})
    assert limited.ok
    assert "errors: 0 unexpected, 2 expected (rate_limited); connections lost: 0" in (
        report_lines(limited, "")
    )
    broken = _tally(5, errors={"internal_error": 1})
    assert broken.exactly_once
    assert not broken.ok
