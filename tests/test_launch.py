"""scripts/launch.py's choice of processes: ``scripts/run [NAME ...]``."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import pytest

from tests.support.processes import REPO_ROOT


@pytest.fixture(scope="module")
def launch() -> ModuleType:
    """scripts/launch.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("launch", REPO_ROOT / "scripts" / "launch.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["launch"] = module
    spec.loader.exec_module(module)
    return module


def test_no_name_selects_every_process_in_table_order(launch: ModuleType) -> None:
    """Without names the launcher starts the whole table, as scripts/run always did."""
    names = [spec.name for spec in launch.select([])]
    assert names == ["gateway", "chat", "presence", "bids", "poll"]


def test_names_select_those_processes_in_table_order(launch: ModuleType) -> None:
    """Names pick their processes, in the table's order whatever order they are given in."""
    assert [spec.name for spec in launch.select(["bids", "gateway"])] == ["gateway", "bids"]


def test_an_unknown_name_is_refused_before_anything_starts(
    launch: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown name exits 2 with the known names, and starts nothing."""
    assert launch.main(["gateway", "search"]) == 2
    assert "unknown process search: choose among bids, chat, gateway, poll, presence" in (
        capsys.readouterr().err
    )
