"""A locust run stopped mid-flight judges its bids against Redis only once every verdict is in."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import pytest
from redis.asyncio import Redis

from common.codec import load_bus
from common.keys import request_stream
from tests.bids.support import KEYS, Launcher, create_auction
from tests.support.processes import JWT_SECRET, REPO_ROOT, ManagedProcess, start_process
from tests.support.waiting import wait_until


LOCUSTFILE = REPO_ROOT / "loadtests" / "locustfile.py"
USERS = 10
AUCTIONS = 3
#: Accepted bids in the history before a run is stopped: its users are bidding by then.
BIDS_BEFORE_STOP = 150
#: Seconds locust may take from Ctrl-C to its exit (the check's own waits are bounded by less).
EXIT_WITHIN = 40.0


@pytest.fixture(scope="module")
def stack(launcher: Launcher) -> tuple[ManagedProcess, ManagedProcess]:
    """One gateway and one bids instance, shared by the module's runs."""
    gateways, instances = launcher.stack()
    return gateways[0], instances[0]


class LocustRun:
    """One headless locust run of loadtests/locustfile.py without a time limit, on its auctions."""

    def __init__(self, process: ManagedProcess, results: Path, auctions: list[str]) -> None:
        self.process = process
        self.results = results
        self.auctions = auctions

    async def bidding(self, bus: Redis) -> None:
        """Return once the run's bidders have had :data:`BIDS_BEFORE_STOP` bids accepted."""

        async def enough() -> bool:
            assert self.process.running, f"locust exited early\n{self.process.describe()}"
            lengths = [await bus.xlen(KEYS.history(auction)) for auction in self.auctions]
            return sum(lengths) >= BIDS_BEFORE_STOP

        await wait_until(enough, within=30.0, what=f"{BIDS_BEFORE_STOP} accepted bids")

    async def interrupt(self) -> tuple[int, dict[str, Any]]:
        """Ctrl-C (SIGINT) the run; return its exit code and the results it wrote."""
        self.process.signal(signal.SIGINT)
        code = await asyncio.to_thread(self.process.wait, EXIT_WITHIN)
        log = self.process.describe()
        assert code is not None, f"locust still runs {EXIT_WITHIN} s after Ctrl-C\n{log}"
        assert self.results.exists(), f"locust wrote no results\n{log}"
        return code, cast("dict[str, Any]", json.loads(self.results.read_text()))


StartRun = Callable[..., Awaitable[LocustRun]]


@pytest.fixture
async def start_run(
    launcher: Launcher, stack: tuple[ManagedProcess, ManagedProcess], name: str, tmp_path: Path
) -> AsyncIterator[StartRun]:
    """Starts a locust run on fresh auctions (config overrides as keywords); stopped by PID."""
    gateway, instance = stack
    started: list[ManagedProcess] = []

    async def start(**overrides: Any) -> LocustRun:
        auctions = [
            await create_auction(instance, id=f"{name}-{index}", starting_price=1000, increment=10)
            for index in range(AUCTIONS)
        ]
        results = tmp_path / "results.json"
        config = {
            "gateway_ws": gateway.ws_url,
            "jwt_secret": JWT_SECRET,
            "redis_url": launcher.redis_url,
            "auctions": [
                {key: auction[key] for key in ("id", "starting_price", "increment")}
                for auction in auctions
            ],
            "results": str(results),
            **overrides,
        }
        config_path = tmp_path / "config.json"
        config_path.write_text(json.dumps(config))
        args = ["-f", str(LOCUSTFILE), "--headless", "--users", str(USERS)]
        args += ["--spawn-rate", str(USERS), "--host", gateway.base_url, "--only-summary"]
        args += ["--bids-config", str(config_path), "--loglevel", "WARNING"]
        process = start_process(
            launcher.name("locust"),
            "locust",
            log_dir=launcher.log_dir,
            env={},
            args=args,
            wait=False,
        )
        started.append(launcher.track(process))
        return LocustRun(process, results, [auction["id"] for auction in auctions])

    try:
        yield start
    finally:
        for process in started:
            process.stop()


async def test_a_run_stopped_while_bidding_reports_no_loss(start_run: StartRun, bus: Redis) -> None:
    """Ctrl-C while bidders have bids in flight ends with the invariants OK and exit code 0."""
    run = await start_run()
    await run.bidding(bus)
    code, results = await run.interrupt()
    assert results["violations"] == [], run.process.describe()
    assert results["invariants_ok"] is True
    assert results["verdicts"]["accepted"] >= BIDS_BEFORE_STOP
    assert results["unsettled"] == 0
    assert code == 0, run.process.describe()


async def test_a_bid_removed_from_redis_is_reported_lost(start_run: StartRun, bus: Redis) -> None:
    """An accepted bid deleted from the history mid-run fails the check, and only for that."""
    run = await start_run()
    await run.bidding(bus)
    auction = run.auctions[0]
    entries = cast(
        "list[tuple[bytes, dict[bytes, bytes]]]", await bus.xrange(KEYS.history(auction), count=5)
    )
    removed = next(
        entry_id for entry_id, fields in entries if load_bus(fields[b"e"])["event"] == "bid.placed"
    )
    assert await bus.xdel(KEYS.history(auction), removed) == 1
    position = int(removed.split(b"-")[0])
    code, results = await run.interrupt()
    violations = results["violations"]
    lost = f"{auction}: accepted bid at {position} is missing from the history"
    assert lost in violations
    gap = f"{auction}: history positions are not"
    assert all(v == lost or v.startswith(gap) for v in violations), violations
    assert results["invariants_ok"] is False
    assert code == 1


async def test_requests_without_a_verdict_at_the_bound_are_said_not_lost(
    start_run: StartRun, bus: Redis, stack: tuple[ManagedProcess, ManagedProcess]
) -> None:
    """When bids still wait for verdicts at the settle bound, the check says so and passes."""
    _, instance = stack
    run = await start_run(settle_seconds=1.0)
    await run.bidding(bus)
    instance.signal(signal.SIGSTOP)
    try:

        async def every_bidder_waits() -> bool:
            # A stopped instance still gets the entries Redis hands its blocked read: pending.
            groups = await bus.xinfo_groups(request_stream("bids", 0))
            return sum(int(g["pending"]) + int(g["lag"] or 0) for g in groups) >= USERS

        await wait_until(every_bidder_waits, within=10.0, what="a request of every bidder queued")
        code, results = await run.interrupt()
    finally:
        instance.signal(signal.SIGCONT)
    assert 1 <= results["unsettled"] <= USERS, run.process.describe()
    assert results["drained"] is False
    assert results["violations"] == []
    assert code == 0, run.process.describe()
