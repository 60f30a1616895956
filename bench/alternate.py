"""One benchmark on several sides in alternating rounds, and the table that sets them side by
side: ``--compare REF`` (REF's code, then the tree's: bench/compare.py) and
``--cluster-compare`` (the tree on one Redis, then on a Redis Cluster) of ``scripts/bench``
and ``scripts/bench-bids``.

This machine is noisy (two cores, shared): two runs minutes apart differ by more than most
changes gain or cost. So the sides run in one invocation, in alternating rounds (A, B, A,
B, ...), so that a noisy spell hits them alike, and the table shows each figure's mean per
side with each round's figure, and the ratio of each side's mean to the first side's.

The table and the parsing of the options are pure; :func:`run_rounds` runs what it is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import statistics
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from devtools.private_redis import SINGLE, RedisLayout
from devtools.processes import REPO_ROOT


__all__ = [
    "DEFAULT_CLUSTER_COMPARE",
    "Figures",
    "Measure",
    "Outcome",
    "Row",
    "Side",
    "cancelled_on_sigterm",
    "cluster_sides",
    "parse_layouts",
    "report_rounds",
    "run_rounds",
    "table",
]

#: ``--cluster-compare`` without a value: one Redis against a cluster of three masters.
DEFAULT_CLUSTER_COMPARE = "single,3"
#: The most sides one comparison may alternate (each round runs every one).
_MAX_SIDES = 6
#: The largest cluster a comparison may start on this machine.
_MAX_MASTERS = 6


@dataclass(frozen=True, slots=True)
class Side:
    """One column of a comparison: whose code runs, on which Redis."""

    label: str
    code_root: Path = REPO_ROOT
    redis: RedisLayout = SINGLE


class Outcome(Protocol):
    """What a comparison needs of every run's figures: whether the run's checks held."""

    @property
    def ok(self) -> bool: ...


S = TypeVar("S", bound=Outcome)
#: A row of the table: its label and how to read its figure off a run's figures.
Row = tuple[str, Callable[[S], float]]
#: One run of one side: (side, log directory, profile directory or None) -> its figures.
Measure = Callable[[Side, Path, Path | None], Awaitable[S]]


@dataclass(frozen=True, slots=True)
class Figures(Generic[S]):
    """How a benchmark's runs are reported: the table's rows, the line printed as a run
    ends, and what its checks are called (``invariants``)."""

    rows: Sequence[Row[S]]
    line: Callable[[S], str]
    checks: str


def parse_layouts(text: str) -> list[RedisLayout]:
    """The Redis layouts of ``--cluster-compare``: comma-separated ``single`` (one Redis) or
    a number of masters (``single,3``; ``1,2,3``: clusters of 1, 2 and 3 masters).

    Raises:
        ValueError: a word is neither, a count is out of range, a layout is repeated, or
            there are fewer than two or too many.
    """
    layouts: list[RedisLayout] = []
    for word in (part.strip() for part in text.split(",")):
        if word == "single":
            layout = SINGLE
        elif word.isdigit() and 1 <= int(word) <= _MAX_MASTERS:
            layout = RedisLayout(int(word))
        else:
            raise ValueError(f"{word!r} is neither 'single' nor a count of 1 to {_MAX_MASTERS}")
        if layout in layouts:
            raise ValueError(f"{word!r} is given twice")
        layouts.append(layout)
    if not 2 <= len(layouts) <= _MAX_SIDES:
        raise ValueError(f"compare 2 to {_MAX_SIDES} layouts, not {len(layouts)}")
    return layouts


def cluster_sides(layouts: Sequence[RedisLayout]) -> list[Side]:
    """The sides of ``--cluster-compare``: the tree's code on each layout."""
    return [Side(layout.label, REPO_ROOT, layout) for layout in layouts]


def _figure(value: float) -> str:
    """Three significant digits or so: a fraction of a microsecond must not show as 0.0."""
    if math.isnan(value):
        return "-"
    size = abs(value)
    if size >= 1000:
        return f"{value:,.0f}"
    return f"{value:.1f}" if size >= 10 or value == 0 else f"{value:.{2 if size >= 1 else 3}f}"


def _column(values: Sequence[float]) -> str:
    """The mean, then each round's figure in brackets when there is more than one."""
    mean = _figure(statistics.fmean(values))
    if len(values) < 2:
        return mean
    return f"{mean} ({', '.join(_figure(v) for v in values)})"


def _ratio(after: float, before: float) -> str:
    if not before or math.isnan(before) or math.isnan(after):
        return "-"
    return f"{after / before:.2f}"


def table(rows: Sequence[Row[S]], columns: Mapping[str, Sequence[S]]) -> list[str]:
    """Each row's mean over rounds per side (each round's figure in brackets), then the ratio
    of each later side's mean to the first side's (below 1: less CPU, latency or throughput).

    Raises:
        ValueError: fewer than two sides, or a side without runs.
    """
    labels = list(columns)
    if len(labels) < 2 or not all(columns[label] for label in labels):
        raise ValueError("a table needs two sides or more, each with a run")
    first = labels[0]
    ratios = [f"{label}/{first}" for label in labels[1:]]
    label_width = max(len(label) for label, _ in rows) + 2
    cells = [[_column([read(s) for s in columns[side]]) for side in labels] for _, read in rows]
    widths = [max(len(side), *(len(row[i]) for row in cells)) for i, side in enumerate(labels)]
    header = (
        "  "
        + " " * label_width
        + "  ".join(side.rjust(width) for side, width in zip(labels, widths, strict=True))
    )
    lines = [header + "".join(f"  {ratio:>8}" for ratio in ratios)]
    for (label, read), row in zip(rows, cells, strict=True):
        means = [statistics.fmean(read(s) for s in columns[side]) for side in labels]
        line = "  " + label.ljust(label_width)
        line += "  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True))
        line += "".join(
            f"  {_ratio(mean, means[0]):>{max(8, len(ratio))}}"
            for mean, ratio in zip(means[1:], ratios, strict=True)
        )
        lines.append(line)
    return lines


async def run_rounds(
    sides: Sequence[Side],
    rounds: int,
    log_dir: Path,
    profile: Path | None,
    measure: Measure[S],
    line: Callable[[S], str],
) -> dict[str, list[S]]:
    """``rounds`` rounds of every side in turn; each run's figures by side, and a line per
    run printed as it ends (``line`` says what of it)."""
    samples: dict[str, list[S]] = {side.label: [] for side in sides}
    for round_number in range(1, rounds + 1):
        for side in sides:
            name = f"{round_number}-{side.label}"
            run_profile = profile / name if profile is not None else None
            if run_profile is not None:
                run_profile.mkdir(parents=True, exist_ok=True)
            sample = await measure(side, log_dir / name, run_profile)
            samples[side.label].append(sample)
            print(f"round {round_number} {side.label:<10} {line(sample)}", flush=True)
    return samples


async def report_rounds(
    sides: Sequence[Side],
    rounds: int,
    log_dir: Path,
    profile: Path | None,
    measure: Measure[S],
    figures: Figures[S],
) -> int:
    """:func:`run_rounds`, then the table and whether every run's checks held: 0 if they
    did, else 1."""
    samples = await run_rounds(sides, rounds, log_dir, profile, measure, figures.line)
    for row in table(figures.rows, samples):
        print(row)
    failed = sum(not sample.ok for runs in samples.values() for sample in runs)
    verdict = "OK in every run" if not failed else f"{failed} run(s) FAILED"
    print(f"{figures.checks}: {verdict}")
    return 1 if failed else 0


@contextlib.asynccontextmanager
async def cancelled_on_sigterm() -> AsyncIterator[None]:
    """SIGTERM cancels the current task, as a Ctrl-C does, so that the processes of the run
    in progress are stopped (and a checkout removed) on the way out."""
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
