"""The README's wscat sessions, replayed with the real wscat against ``scripts/run``'s system.

The transcripts are read from README.md itself (see :mod:`tests.wscat.transcript`), so the
README cannot drift from what the gateway and the services do.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support.processes import REPO_ROOT
from tests.support.system import System
from tests.wscat.readme import section_blocks
from tests.wscat.transcript import Replay, Schedule


WSCAT_BIN = Path(__file__).parent / "node_modules" / ".bin"
#: How long one expected line may take: the bids session waits for its auction to close,
#: 30 s after the last bid (the session's own anti-sniping setting).
LINE_DEADLINE = 45.0

#: Per README section, the block of each input step in replay order (spaces only group
#: them). The README shows each terminal's own order; this says how the terminals interleave.
SCHEDULES: dict[str, str] = {
    # Alice's terminal (0), and the ```sh block (1) that publishes bob's event after her
    # subscribe.
    "A session with wscat": "00000 1 000",
    # Alice (0) joins; Bob (1) joins, types, says hi; Alice answers, retries, creates a
    # private room; Bob is refused it, reads the history and reconnects; Alice sends what he
    # misses; Bob joins with since, says "back now" and leaves; Alice says bye.
    "Chatting from two wscat sessions": "000 11111 0000 111 00 111 0",
    # The admin's curl (0); Alice (1) lists, follows and bids; Bob (2) bids; Alice reads the
    # state, mistypes an amount, and bids after the close.
    "Bidding from wscat": "0 11111 22222 111",
    # Alice (0) watches the auction's presence; Bob (1) comes, lists, leaves, comes back and
    # quits; then Alice's refused watch of a chat room.
    "Presence from wscat": "000 11111111 0",
}


@pytest.fixture(scope="module")
def system(bus_url: str, log_dir: Path) -> Iterator[System]:
    """Every process in one ``scripts/launch.py``, exactly as ``scripts/run`` starts them."""
    if not (WSCAT_BIN / "wscat").exists():
        pytest.fail(f"no wscat in {WSCAT_BIN}: scripts/test installs it (npm ci in tests/wscat)")
    started = System(bus_url, log_dir, "wscat")
    try:
        yield started.start(together=True)
    finally:
        started.stop()


def schedule_of(text: str) -> Schedule:
    return [int(char) for char in text if not char.isspace()]


def _rewrite_ports(system: System, redis_url: str) -> dict[str, str]:
    """The README's ports (scripts/run's defaults) to this system's."""
    redis_port = urlsplit(redis_url).port
    return {
        "8000": str(system.gateway_port()),
        "8101": str(system.ports["chat"]),
        "8102": str(system.ports["bids"]),
        "8103": str(system.ports["presence"]),
        "6390": str(redis_port),
    }


@pytest.mark.timeout(150)
@pytest.mark.parametrize("section", list(SCHEDULES))
def test_readme_session_replays_exactly(system: System, bus_url: str, section: str) -> None:
    """Each line of the section's terminals is what wscat shows when its inputs are typed."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    ports = _rewrite_ports(system, bus_url)
    pattern = re.compile(r"\b(localhost|127\.0\.0\.1):(" + "|".join(ports) + r")\b")

    def rewrite(command: str) -> str:
        return pattern.sub(lambda m: f"{m.group(1)}:{ports[m.group(2)]}", command)

    env = {key: value for key, value in os.environ.items() if not key.startswith("RT_")}
    env["PATH"] = f"{WSCAT_BIN}{os.pathsep}{env.get('PATH', '')}"
    replay = Replay(
        section_blocks(readme, section),
        schedule_of(SCHEDULES[section]),
        env=env,
        rewrite=rewrite,
        cwd=REPO_ROOT,
        deadline=LINE_DEADLINE,
    )
    replay.run()
