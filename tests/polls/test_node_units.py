"""The Node.js poll service's own checks pass: its unit tests (polls_service/test, node's test
runner) and TypeScript's strict check of its JSDoc types (``npm run check``)."""

from __future__ import annotations

import subprocess

from tests.support.processes import REPO_ROOT


SERVICE_DIR = REPO_ROOT / "polls_service"
#: The whole run takes about a second; a hang is a failure, not a stuck suite.
NODE_TIMEOUT = 120


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    """``command`` in polls_service/, its output captured, bounded by NODE_TIMEOUT."""
    return subprocess.run(
        list(command),
        cwd=SERVICE_DIR,
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT,
        check=False,
    )


def test_node_unit_tests_pass() -> None:
    """`node --test test/` in polls_service/ exits 0."""
    result = _run("node", "--test", "--test-reporter=spec", "test/")
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert "# fail 0" in result.stdout or "fail 0" in result.stdout, result.stdout


def test_typescript_finds_no_error_in_the_jsdoc_types() -> None:
    """`tsc` (strict, checkJs) over polls_service/src exits 0."""
    result = _run("node", "node_modules/typescript/bin/tsc", "-p", "tsconfig.json")
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"


def test_the_announce_script_is_the_one_of_the_spec() -> None:
    """polls_service/lua/announce.lua, past its comments, is docs/bus.md's script verbatim."""
    spec = (REPO_ROOT / "docs" / "bus.md").read_text()
    section = spec.split("### Announcing: the script", 1)[1]
    block = section.split("```lua\n", 1)[1].split("```", 1)[0]
    script = (SERVICE_DIR / "lua" / "announce.lua").read_text()
    code = "".join(line for line in script.splitlines(keepends=True) if not line.startswith("--"))
    assert code.strip() == block.strip()
