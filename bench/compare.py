"""``scripts/bench-bids --compare REF``: the same load on git ref REF's code and on the working
tree, in one run, side by side.

This machine is noisy (two cores, shared): two benchmark runs minutes apart differ by more
than most optimisations gain. So both sides run in the same invocation, in alternating
rounds (REF, tree, REF, tree, ...) so that a noisy spell hits both alike, and the result is a
ratio. REF's code is a detached ``git worktree`` in a temporary directory, removed afterwards
(also on Ctrl-C, SIGTERM or an error); its gateway and bids processes start with that
checkout as working directory and first on ``PYTHONPATH``, so ``python -m realtime_gateway``
imports REF's packages, not the editable install of the tree. Both are checked before any
load: where a probe with the same command line finds the packages, and the started
processes' ``/proc/<pid>/cwd``. The driver (the load generator) is always the tree's, so both
sides are measured the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from devtools.processes import REPO_ROOT, environment


__all__ = [
    "SERVICE_MODULES",
    "CheckoutError",
    "Sample",
    "compare",
    "dependency_changes",
    "import_origin",
    "ref_checkout",
    "side_by_side",
    "verify_code_root",
]

#: The packages whose processes run from REF's checkout.
SERVICE_MODULES = ("realtime_gateway", "bids_service")
_GIT_TIMEOUT = 120.0


class CheckoutError(RuntimeError):
    """REF is not a commit, its checkout failed, or a process runs other code than meant."""


@dataclass(frozen=True, slots=True)
class Sample:
    """What one run measured, by the figures the comparison sets side by side."""

    #: CPU microseconds per accepted bid, by process ("gateway", "bids", "redis", "driver").
    cpu_us: dict[str, float]
    throughput: float
    p50_ms: float
    p99_ms: float
    invariants: str
    ok: bool


#: Rows of the table: a label and how to read the figure off a sample.
_ROWS: tuple[tuple[str, Callable[[Sample], float]], ...] = (
    ("gateway CPU per bid, us", lambda s: s.cpu_us["gateway"]),
    ("bids CPU per bid, us", lambda s: s.cpu_us["bids"]),
    ("redis CPU per bid, us", lambda s: s.cpu_us["redis"]),
    (
        "system CPU per bid, us",
        lambda s: s.cpu_us["gateway"] + s.cpu_us["bids"] + s.cpu_us["redis"],
    ),
    ("driver CPU per bid, us", lambda s: s.cpu_us["driver"]),
    ("accepted bids/s", lambda s: s.throughput),
    ("reply latency p50, ms", lambda s: s.p50_ms),
    ("reply latency p99, ms", lambda s: s.p99_ms),
)


def _git(*args: str, cwd: Path = REPO_ROOT) -> str:
    done = subprocess.run(
        ["git", "-C", str(cwd), *args],
        capture_output=True,
        text=True,
        timeout=_GIT_TIMEOUT,
        check=False,
    )
    if done.returncode:
        raise CheckoutError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def describe(ref: str, cwd: Path = REPO_ROOT) -> str:
    """``<short sha> <subject>`` of a commit, shortened to one line."""
    line = _git("log", "-1", "--format=%h %s", ref, cwd=cwd)
    return line if len(line) <= 72 else line[:71] + "…"


@contextlib.contextmanager
def ref_checkout(ref: str, repo: Path = REPO_ROOT) -> Iterator[Path]:
    """A detached worktree of ``ref`` in a temporary directory, removed on the way out.

    Raises:
        CheckoutError: ``ref`` names no commit, or git could not check it out.
    """
    commit = _git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", cwd=repo)
    parent = Path(tempfile.mkdtemp(prefix="bench-compare-"))
    checkout = parent / "checkout"
    try:
        _git("worktree", "add", "--detach", str(checkout), commit, cwd=repo)
        yield checkout
    finally:
        # Best effort in order: git's own removal, the directory, then git's record of it.
        with contextlib.suppress(CheckoutError, subprocess.TimeoutExpired):
            _git("worktree", "remove", "--force", str(checkout), cwd=repo)
        shutil.rmtree(parent, ignore_errors=True)
        with contextlib.suppress(CheckoutError, subprocess.TimeoutExpired):
            _git("worktree", "prune", cwd=repo)


def import_origin(code_root: Path, module: str) -> Path:
    """Where ``module`` is imported from by a Python started as the stack starts its processes
    (working directory and ``PYTHONPATH`` ``code_root``, this interpreter)."""
    probe = f"import importlib.util; print(importlib.util.find_spec({module!r}).origin)"
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=code_root,
        env=environment({"PYTHONPATH": str(code_root)}),
        capture_output=True,
        text=True,
        timeout=30.0,
        check=True,
    )
    return Path(done.stdout.strip())


def verify_code_root(code_root: Path, pids: Sequence[int]) -> None:
    """Check that every process runs in ``code_root`` with it first on ``PYTHONPATH``.

    Raises:
        CheckoutError: one does not.
    """
    root = code_root.resolve()
    for pid in pids:
        cwd = Path(f"/proc/{pid}/cwd").resolve()
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        paths = [v[len(b"PYTHONPATH=") :] for v in environ if v.startswith(b"PYTHONPATH=")]
        first = Path(paths[0].split(b":")[0].decode()).resolve() if paths else None
        if cwd != root or first != root:
            raise CheckoutError(f"pid {pid} runs in {cwd} with PYTHONPATH {first}, not {root}")


def dependency_changes(ref_root: Path, tree_root: Path = REPO_ROOT) -> list[str]:
    """The runtime dependency lines of REF's pyproject.toml that differ from the tree's (which
    the venv has installed): REF then runs on versions it may not have been made for."""

    def runtime(root: Path) -> set[str]:
        project = tomllib.loads((root / "pyproject.toml").read_text()).get("project", {})
        extras = project.get("optional-dependencies", {}).values()
        return {*project.get("dependencies", []), *(line for group in extras for line in group)}

    ref, tree = runtime(ref_root), runtime(tree_root)
    return [f"REF {line}" for line in sorted(ref - tree)] + [
        f"tree {line}" for line in sorted(tree - ref)
    ]


def _figure(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.1f}"


def _column(values: Sequence[float]) -> str:
    """The mean, then each round's figure in brackets when there is more than one."""
    mean = _figure(statistics.fmean(values))
    if len(values) < 2:
        return mean
    return f"{mean} ({', '.join(_figure(v) for v in values)})"


def side_by_side(ref: Sequence[Sample], tree: Sequence[Sample]) -> list[str]:
    """The table: each figure's mean over rounds (each round's in brackets) for REF and the
    tree, and the ratio tree / REF of the means (below 1 is less CPU or latency)."""
    cells = [
        (label, _column([read(s) for s in ref]), _column([read(s) for s in tree]), read)
        for label, read in _ROWS
    ]
    ref_width = max(len("REF"), *(len(cell[1]) for cell in cells))
    tree_width = max(len("tree"), *(len(cell[2]) for cell in cells))
    lines = [f"  {'':<26}{'REF':>{ref_width}}  {'tree':>{tree_width}}  tree/REF"]
    for label, ref_cell, tree_cell, read in cells:
        before = statistics.fmean(read(s) for s in ref)
        after = statistics.fmean(read(s) for s in tree)
        ratio = f"{after / before:.2f}" if before else "-"
        lines.append(f"  {label:<26}{ref_cell:>{ref_width}}  {tree_cell:>{tree_width}}  {ratio:>8}")
    return lines


#: One run: (log directory, profile directory or None, code root) -> its sample.
Measure = Callable[[Path, Path | None, Path], Awaitable[Sample]]


async def compare(
    options: argparse.Namespace, log_dir: Path, profile: Path | None, measure: Measure
) -> int:
    """Run ``options.rounds`` rounds of REF then tree, print the table; 0 if every run's
    invariants held, else 1; 2 if REF could not be checked out or verified."""
    # SIGTERM cancels the run like a Ctrl-C does, so that the stacks stop and the checkout goes.
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        with ref_checkout(options.compare) as ref_root:
            return await _compare(options, log_dir, profile, measure, ref_root)
    except CheckoutError as exc:
        print(f"compare: {exc}", file=sys.stderr)
        return 2
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


async def _compare(
    options: argparse.Namespace,
    log_dir: Path,
    profile: Path | None,
    measure: Measure,
    ref_root: Path,
) -> int:
    sides = {"REF": ref_root, "tree": REPO_ROOT}
    for side, root in sides.items():
        for module in SERVICE_MODULES:
            origin = import_origin(root, module)
            if not origin.resolve().is_relative_to(root.resolve()):
                raise CheckoutError(f"{side}'s {module} would import from {origin}, not {root}")
            print(f"{side}: {module} imports from {origin}")
    dirty = (
        " + uncommitted changes" if _git("status", "--porcelain", "--untracked-files=no") else ""
    )
    print(f"REF  {describe(options.compare)}")
    print(f"tree {describe('HEAD')}{dirty}")
    changes = dependency_changes(ref_root)
    print(
        "REF's runtime dependencies differ from the installed venv: " + "; ".join(changes)
        if changes
        else "REF's runtime dependencies are the installed venv's"
    )
    mode = (
        f"open loop at {options.rate:g}/s"
        if options.rate
        else f"closed loop, window {options.window}"
    )
    print(
        f"{options.rounds} round(s) of REF then tree: 1 gateway, {options.instances} bids "
        f"instance(s), {options.connections} connections, {mode}, {options.duration:g} s "
        f"measured after {options.warmup:g} s warm-up each",
        flush=True,
    )
    samples: dict[str, list[Sample]] = {side: [] for side in sides}
    for round_number in range(1, options.rounds + 1):
        for side, root in sides.items():
            name = f"{round_number}-{side}"
            run_profile = profile / name if profile is not None else None
            if run_profile is not None:
                run_profile.mkdir(parents=True, exist_ok=True)
            sample = await measure(log_dir / name, run_profile, root)
            samples[side].append(sample)
            print(
                f"round {round_number} {side:<4} {sample.throughput:7,.0f} bids/s  "
                f"p99 {sample.p99_ms:6.2f} ms  {sample.invariants}",
                flush=True,
            )
    for line in side_by_side(samples["REF"], samples["tree"]):
        print(line)
    failed = [s for side in sides for s in samples[side] if not s.ok]
    print(f"invariants: {'OK in every run' if not failed else f'{len(failed)} run(s) FAILED'}")
    return 1 if failed else 0
