"""``--compare REF``'s helpers: REF's checkout, what it imports, the bids table."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bench.alternate import table
from bench.bids_figures import ROWS, Sample
from bench.compare import CheckoutError, dependency_changes, import_origin, ref_checkout
from tests.support.processes import REPO_ROOT


def _worktrees() -> str:
    return subprocess.run(
        ["git", "-C", str(REPO_ROOT), "worktree", "list", "--porcelain"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def _sample(gateway: float, throughput: float, *, ok: bool = True) -> Sample:
    cpu = {"gateway": gateway, "bids": 100.0, "redis": 50.0, "driver": 20.0}
    return Sample(cpu, throughput, 2.0, 20.0, "invariants: OK", ok)


def test_checkout_imports_its_own_packages_and_is_removed_afterwards() -> None:
    """A process started in REF's checkout imports REF's gateway, not the editable install of
    the tree, and the checkout leaves neither a directory nor a git worktree behind."""
    with ref_checkout("HEAD") as checkout:
        assert str(checkout) in _worktrees()
        origin = import_origin(checkout, "realtime_gateway")
        assert origin == checkout / "realtime_gateway" / "__init__.py"
    assert not checkout.parent.exists()
    assert str(checkout) not in _worktrees()


def test_checkout_is_removed_when_the_run_fails() -> None:
    """An error (or a Ctrl-C) in the middle of a comparison still removes REF's checkout."""
    with pytest.raises(KeyboardInterrupt), ref_checkout("HEAD") as checkout:
        raise KeyboardInterrupt
    assert not checkout.parent.exists()
    assert str(checkout) not in _worktrees()


def test_a_ref_that_names_no_commit_is_refused() -> None:
    """A mistyped REF stops the comparison before anything starts."""
    with pytest.raises(CheckoutError), ref_checkout("no-such-ref-anywhere"):
        pass


def test_dependency_changes_name_the_lines_that_differ(tmp_path: Path) -> None:
    """REF's runtime dependencies are compared with the tree's, both ways."""
    (tmp_path / "pyproject.toml").write_text(
        '[project]\ndependencies = ["orjson>=3,<4", "old-thing"]\n'
    )
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "pyproject.toml").write_text('[project]\ndependencies = ["orjson>=3,<4", "new"]\n')
    assert dependency_changes(tmp_path, tree) == ["REF old-thing", "tree new"]
    assert dependency_changes(REPO_ROOT, REPO_ROOT) == []


def test_side_by_side_prints_means_rounds_and_ratio() -> None:
    """Each row has REF's and the tree's mean over rounds, each round's figure and tree/REF."""
    ref = [_sample(200.0, 3000.0), _sample(240.0, 5000.0)]
    tree = [_sample(50.0, 12000.0), _sample(60.0, 12000.0)]
    lines = table(ROWS, {"REF": ref, "tree": tree})
    assert lines[0].rstrip().endswith("tree/REF")
    gateway = next(line for line in lines if "gateway CPU" in line)
    assert "220.0 (200.0, 240.0)" in gateway
    assert "55.0 (50.0, 60.0)" in gateway
    assert gateway.endswith("0.25")
    throughput = next(line for line in lines if "bids/s" in line)
    assert "4,000 (3,000, 5,000)" in throughput
    assert throughput.endswith("3.00")
    system = next(line for line in lines if "system CPU" in line)
    assert "370.0 (350.0, 390.0)" in system
    assert system.endswith("0.55")
