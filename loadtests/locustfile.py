"""Locust load of the bids service alone, through the gateway.

Each simulated bidder connects with a blocking WebSocket client (loadtests/client.py),
authenticates, subscribes to a few auctions and places rising bids with idempotency keys;
some bids are sent twice on purpose and must get the same verdict. Locust's statistics show:

``bids.place``            round trip of a bid (accepted or refused: both are answers)
``bids.place (retry)``    round trip of a deliberate retry of the same key
``bid.placed delay``      from a bid's commit (its ``placed_at``) to its event reaching
                          another bidder, in ms (the clocks are the same: one machine)

At the end (the time limit, Ctrl-C or SIGTERM) bidders stop sending; the check waits, at
most ``settle_seconds``, for the verdicts of the requests still in flight and for the request
stream to drain, then checks the invariants of loadtests/invariants.py against Redis. A
violation, or a retry that got another verdict, makes locust exit non-zero; requests that got
no verdict (timed out, or still in flight at the bound) are counted and said, never called
lost. The run is configured by a JSON file (``--bids-config``, written by loadtests/run.py):
gateway URL, JWT secret, Redis URL, auctions, where to write the results, and optionally the
think time and ``settle_seconds``.
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import gevent  # type: ignore[import-untyped]
from locust import User, events, task
from locust.env import Environment

from common.auth import issue_token
from common.settings import Secret
from loadtests.client import BidsWebSocket, ReplyError
from loadtests.invariants import Accepted, check_invariants
from loadtests.settle import InFlight, wait_for_stream


#: Share of answered bids sent again with the same key, to check idempotency under load.
RETRY_SHARE = 0.05
#: Auctions each bidder follows (subscribes to and bids on).
FOLLOWED = 2
#: Seconds a bidder waits for the reply to one request before it counts as without a verdict.
REQUEST_TIMEOUT = 10.0
#: How long, by default, the end-of-run check waits for verdicts in flight and for the request
#: stream to drain: past the request timeout, by when every request has ended one way or another.
SETTLE_SECONDS = REQUEST_TIMEOUT + 5.0


class _Run:
    """What all bidders of this locust process share."""

    def __init__(self) -> None:
        self.config: dict[str, Any] = {}
        self.lock = threading.Lock()
        self.accepted: list[Accepted] = []
        self.verdicts: Counter[str] = Counter()
        self.retry_mismatches: list[str] = []
        #: Requests that ended without a verdict: timed out, connection closed, or stopped.
        self.unanswered = 0
        self.in_flight = InFlight()
        self.closed: set[str] = set()
        self.started = time.monotonic()

    def load(self, path: str) -> None:
        self.config = json.loads(Path(path).read_text())


RUN = _Run()


@events.init_command_line_parser.add_listener  # type: ignore[untyped-decorator]
def _arguments(parser: Any) -> None:
    parser.add_argument(
        "--bids-config",
        type=str,
        env_var="BIDS_LOADTEST_CONFIG",
        default="",
        help="JSON file written by loadtests/run.py (gateway, secret, Redis, auctions)",
    )


@events.init.add_listener  # type: ignore[untyped-decorator]
def _init(environment: Environment, **kwargs: Any) -> None:
    # Python raises Ctrl-C's KeyboardInterrupt in whichever greenlet runs when it comes: in a
    # connection's reader it kills the connection and fails the bids in flight on it. gevent's
    # handler runs in a greenlet of its own and hands the interrupt to the main greenlet, where
    # locust expects it and shuts down (running the check).
    gevent.signal_handler(signal.SIGINT, _interrupt)


def _interrupt() -> None:
    gevent.get_hub().handle_system_error(KeyboardInterrupt, KeyboardInterrupt())


@events.test_start.add_listener  # type: ignore[untyped-decorator]
def _start(environment: Environment, **kwargs: Any) -> None:
    path = environment.parsed_options.bids_config if environment.parsed_options else ""
    if not path:
        raise SystemExit("give --bids-config (run the load test with scripts/loadtest)")
    RUN.load(path)
    RUN.started = time.monotonic()


def _think_time(user: User) -> float:
    """Seconds between a bidder's bids: uniform in the configured [low, high]."""
    low, high = RUN.config.get("think_time", (0.0, 0.05))
    return random.uniform(low, high)


class Bidder(User):
    """One bidder: follows a few auctions, bids a little above the known minimum."""

    wait_time = _think_time

    def on_start(self) -> None:
        config = RUN.config
        self.user = f"bidder-{uuid.uuid4().hex[:10]}"
        self.minimum: dict[str, int] = {}
        self.increment = {a["id"]: int(a["increment"]) for a in config["auctions"]}
        self.client = BidsWebSocket(
            config["gateway_ws"], self.environment, on_event=self._on_event, timeout=REQUEST_TIMEOUT
        )
        token = issue_token(Secret(config["jwt_secret"]), self.user)
        welcome = self.client.request({"type": "auth", "token": token}, name="auth")
        if welcome.get("type") != "welcome":
            raise ReplyError(f"auth refused: {welcome}")
        self.following: list[str] = []
        hot = [a for a in config["auctions"] if a["id"] not in RUN.closed]
        for auction in random.sample(hot, min(FOLLOWED, len(hot))):
            self._follow(auction)

    def _follow(self, auction: dict[str, Any]) -> None:
        reply = self.client.request(
            {"type": "subscribe", "channel": f"auction:{auction['id']}"}, name="subscribe"
        )
        if reply.get("ok"):
            self.following.append(auction["id"])
            self.minimum.setdefault(auction["id"], int(auction["starting_price"]))

    def on_stop(self) -> None:
        self.client.close()

    def _on_event(self, frame: dict[str, Any], received_ms: float) -> None:
        auction = frame["channel"].removeprefix("auction:")
        data = frame["data"]
        if frame["event"] == "bid.placed":
            self.minimum[auction] = max(
                self.minimum.get(auction, 0), data["amount"] + self.increment[auction]
            )
            if data["bidder"] != self.user:
                self.environment.events.request.fire(
                    request_type="EVENT",
                    name="bid.placed delay",
                    response_time=max(0.0, received_ms - data["placed_at"]),
                    response_length=0,
                    exception=None,
                    context={},
                )
        elif frame["event"] == "auction.closed":
            RUN.closed.add(auction)

    @task
    def place(self) -> None:
        if not RUN.in_flight.admit():
            return  # the run is stopping: send nothing the check would not wait for
        try:
            self._place()
        except gevent.GreenletExit:
            # Locust stopped this bidder mid-request: the bid may be committed all the same.
            self._unanswered()
            raise
        finally:
            RUN.in_flight.done()

    def _unanswered(self) -> None:
        """Count a request that ended without a verdict: its bid, if committed, is no loss."""
        with RUN.lock:
            RUN.unanswered += 1

    def _place(self) -> None:
        open_ones = [a for a in self.following if a not in RUN.closed]
        if not open_ones:
            others = [a for a in RUN.config["auctions"] if a["id"] not in RUN.closed]
            if others and len(self.following) < len(RUN.config["auctions"]):
                self._follow(random.choice(others))
            return
        auction = random.choice(open_ones)
        amount = self.minimum[auction] + self.increment[auction] * random.choice((0, 0, 1, 2))
        message = {
            "type": "bids.place",
            "auction": auction,
            "amount": amount,
            "key": uuid.uuid4().hex,
        }
        try:
            reply = self.client.request(message, name="bids.place")
            self._judge(message, reply)
            if random.random() < RETRY_SHARE:
                again = self.client.request(message, name="bids.place (retry)")
                if again.get("data") != reply.get("data") or again.get("error") != reply.get(
                    "error"
                ):
                    with RUN.lock:
                        RUN.retry_mismatches.append(f"{message}: {reply} then {again}")
        except ReplyError:
            self._unanswered()  # and already a locust failure

    def _judge(self, message: dict[str, Any], reply: dict[str, Any]) -> None:
        auction = message["auction"]
        if reply.get("ok"):
            data = reply["data"]
            bid = Accepted(auction, data["seq"], message["amount"], self.user, message["key"])
            with RUN.lock:
                RUN.accepted.append(bid)
                RUN.verdicts["accepted"] += 1
            self.minimum[auction] = max(
                self.minimum[auction], message["amount"] + self.increment[auction]
            )
            return
        error = reply.get("error") or {}
        code = str(error.get("code"))
        with RUN.lock:
            RUN.verdicts[code] += 1
        if code == "bid_too_low":
            self.minimum[auction] = max(self.minimum[auction], int(error["minimum"]))
        elif code == "auction_closed":
            RUN.closed.add(auction)
        else:
            # Anything else is a fault of the system under load: report it as a failure.
            self.environment.events.request.fire(
                request_type="WS",
                name=f"bids.place refused: {code}",
                response_time=0,
                response_length=0,
                exception=ReplyError(str(error)),
                context={},
            )


@events.quitting.add_listener  # type: ignore[untyped-decorator]
def _check(environment: Environment, **kwargs: Any) -> None:
    if not RUN.config:
        return
    elapsed = max(1e-9, time.monotonic() - RUN.started)
    settle = float(RUN.config.get("settle_seconds", SETTLE_SECONDS))
    deadline = time.monotonic() + settle
    # Ctrl-C and SIGTERM fire this before locust stops the bidders: they may still be bidding.
    unsettled = RUN.in_flight.close_and_wait(deadline)
    with RUN.lock:
        # Frozen before Redis is read: a verdict arriving later may be for a bid committed after
        # its auction was read, and would look lost.
        accepted = list(RUN.accepted)
        mismatches = list(RUN.retry_mismatches)
        verdicts = Counter(RUN.verdicts)
        unanswered = RUN.unanswered
    redis_url, cluster = RUN.config["redis_url"], bool(RUN.config.get("redis_cluster"))
    drained = wait_for_stream(redis_url, "bids", deadline, cluster=cluster)
    auctions = [a["id"] for a in RUN.config["auctions"]]
    partitions = int(RUN.config.get("bids_partitions", 1))
    report = check_invariants(redis_url, auctions, accepted, partitions=partitions, cluster=cluster)
    for mismatch in mismatches:
        report.violations.append(f"a retry got another verdict: {mismatch}")
    counts = ", ".join(f"{name} {count}" for name, count in sorted(verdicts.items()))
    print(f"\nbids.place verdicts: {counts}; without a verdict: {unanswered}")
    print(f"accepted bids: {verdicts['accepted'] / elapsed:.0f}/s over {elapsed:.1f} s")
    if unsettled:
        print(
            f"{unsettled} requests still had no verdict {settle:g} s after the stop: their bids "
            "are not checked (not counted as lost)"
        )
    if not drained:
        print(f"the bids request stream had not drained {settle:g} s after the stop")
    print(report.summary())
    results = RUN.config.get("results")
    if results:
        Path(results).write_text(
            json.dumps(
                {
                    "verdicts": dict(verdicts),
                    "unanswered": unanswered,
                    "unsettled": unsettled,
                    "drained": drained,
                    "elapsed": elapsed,
                    "invariants_ok": report.ok,
                    "violations": report.violations[:20],
                }
            )
        )
    if not report.ok:
        environment.process_exit_code = 1
