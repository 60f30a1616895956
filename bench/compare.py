"""``--compare REF`` of ``scripts/bench-bids`` and ``scripts/bench``: the same load on git ref
REF's code and on the working tree, in one run, side by side.

Both sides run in the same invocation, in alternating rounds (REF, tree, REF, tree, ...:
bench/alternate.py says why), and the result is a ratio. REF's code is a detached ``git
worktree`` in a temporary directory, removed afterwards (also on Ctrl-C, SIGTERM or an
error); its gateway and service processes start with that checkout as working directory and
first on ``PYTHONPATH``, so ``python -m realtime_gateway`` imports REF's packages, not the
editable install of the tree. Both are checked before any load: where a probe with the same
command line finds the packages, and the started processes' ``/proc/<pid>/cwd``. The driver
(the load generator) is always the tree's, so both sides are measured the same way.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator, Sequence
from pathlib import Path

from bench.alternate import Figures, Measure, S, Side, cancelled_on_sigterm, report_rounds
from devtools.private_redis import SINGLE, RedisLayout
from devtools.processes import REPO_ROOT, environment


__all__ = [
    "SERVICE_MODULES",
    "CheckoutError",
    "compare",
    "dependency_changes",
    "import_origin",
    "ref_checkout",
    "verify_code_root",
]

#: The packages whose processes run from REF's checkout, in ``scripts/bench-bids``.
SERVICE_MODULES = ("realtime_gateway", "bids_service")
_GIT_TIMEOUT = 120.0


class CheckoutError(RuntimeError):
    """REF is not a commit, its checkout failed, or a process runs other code than meant."""


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


async def compare(
    ref: str,
    rounds: int,
    log_dir: Path,
    profile: Path | None,
    measure: Measure[S],
    figures: Figures[S],
    *,
    load: str,
    modules: Sequence[str] = SERVICE_MODULES,
    redis: RedisLayout = SINGLE,
) -> int:
    """Run ``rounds`` rounds of REF then tree (``modules`` from each side's code, on
    ``redis``), print the table; 0 if every run's checks held, else 1; 2 if REF could
    not be checked out or verified. ``load`` says what each run is, for the header."""
    try:
        async with cancelled_on_sigterm():
            with ref_checkout(ref) as ref_root:
                _check_sides(ref, ref_root, modules)
                print(
                    f"{rounds} round(s) of REF then tree on {redis.describe()}: {load}",
                    flush=True,
                )
                sides = [Side("REF", ref_root, redis), Side("tree", REPO_ROOT, redis)]
                return await report_rounds(sides, rounds, log_dir, profile, measure, figures)
    except CheckoutError as exc:
        print(f"compare: {exc}", file=sys.stderr)
        return 2


def _check_sides(ref: str, ref_root: Path, modules: Sequence[str]) -> None:
    """Print where each side's ``modules`` import from, what REF and the tree are, and how
    REF's dependencies differ.

    Raises:
        CheckoutError: a side would import a module from elsewhere than its checkout.
    """
    for side, root in {"REF": ref_root, "tree": REPO_ROOT}.items():
        for module in modules:
            origin = import_origin(root, module)
            if not origin.resolve().is_relative_to(root.resolve()):
                raise CheckoutError(f"{side}'s {module} would import from {origin}, not {root}")
            print(f"{side}: {module} imports from {origin}")
    dirty = (
        " + uncommitted changes" if _git("status", "--porcelain", "--untracked-files=no") else ""
    )
    print(f"REF  {describe(ref)}")
    print(f"tree {describe('HEAD')}{dirty}")
    changes = dependency_changes(ref_root)
    print(
        "REF's runtime dependencies differ from the installed venv: " + "; ".join(changes)
        if changes
        else "REF's runtime dependencies are the installed venv's"
    )
