"""The dashboard and the alert rules against the real processes.

``promtool`` (Debian's ``prometheus`` package; ``scripts/test`` installs it) checks the alert
rules and lints every process's ``/metrics``; every metric that a query of the dashboard or of
an alert names must be exported by one of the processes. The processes are the real gateway
and services on the session's Redis.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from devtools.redis_server import RedisServer
from tests.support.client import call, connect_user
from tests.support.launcher import ModuleProcesses, module_processes
from tests.support.processes import REPO_ROOT, ManagedProcess, wait_all_ready
from tests.support.waiting import MS, wait_until


DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "realtime.json"
ALERTS = REPO_ROOT / "deploy" / "prometheus" / "alerts.yml"
#: promtool's unit tests of the alerts: the series that fire each one, and a healthy set.
ALERT_CASES = Path(__file__).with_name("alerts_test.yml")
OPERATIONS = REPO_ROOT / "docs" / "operations.md"
SWEEP_INTERVAL = 0.2
#: The alerts docs/operations.md gives a runbook for, as the issue names them.
REQUIRED_ALERTS = {
    "RealtimeServiceNoConsumer",
    "RealtimeStreamLagGrowing",
    "RealtimeReadinessFailing",
    "RealtimeSlowConsumerClosesSpiking",
}


def promtool() -> str:
    """The path of promtool; fails (never skips) with the way to install it."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not on PATH: scripts/test installs it (scripts/_prometheus.sh), "
            "or run `apt-get install prometheus`"
        )
    return path


class Observed(ModuleProcesses):
    """One gateway and one instance of each service, as a deployment runs them."""

    def start(self) -> dict[str, ManagedProcess]:
        timings = {"RT_CLAIM_INTERVAL": "0.2"}
        started = {
            "gateway": self.gateway(wait=False),
            "chat": self.service("chat_service", "chat", timings, wait=False),
            "bids": self.service("bids_service", "bids", timings, wait=False),
            "presence": self.service(
                "presence_service",
                "presence",
                {**timings, "RT_PRESENCE_SWEEP_INTERVAL": str(SWEEP_INTERVAL)},
                wait=False,
            ),
        }
        wait_all_ready(list(started.values()))
        return started


@pytest.fixture(scope="module")
def processes(
    request: pytest.FixtureRequest, bus_url: str, log_dir: Path
) -> Iterator[dict[str, ManagedProcess]]:
    """The four processes, by kind, stopped at the end of the module."""
    with module_processes(Observed, request, bus_url, log_dir) as observed:
        yield observed.start()


async def _scrape(process: ManagedProcess) -> str:
    status, body = await process.get_async("/metrics")
    assert status == 200, body[:200]
    return body


def exported_names(text: str) -> set[str]:
    """Every series name a scrape offers, whether or not a sample has been taken yet.

    A labelled metric has no sample before its first label set, but its family is declared
    (``# TYPE``): a counter's series end in ``_total``, a histogram's in ``_bucket``,
    ``_sum`` and ``_count``.
    """
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}_{suffix}" for suffix in ("bucket", "sum", "count"))
    return names


#: PromQL words that are not metric names.
_KEYWORDS = {
    *("by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless"),
    *("offset", "bool", "inf", "nan"),
}
#: Prometheus's own series, which it makes for every scrape target.
_PROMETHEUS_SERIES = {"up"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads.

    What is not a name is cut away first: strings (label values), label matchers ``{...}``,
    ranges ``[...]``, the label lists of ``by``/``on``/... and function names (a word
    followed by ``(``); what remains are names, keywords and numbers.
    """
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\b[A-Za-z_][A-Za-z0-9_]*\s*\(", "(", expr)
    words = set(re.findall(r"\b[A-Za-z_:][A-Za-z0-9_:]*\b", expr))
    return {word for word in words if word.lower() not in _KEYWORDS}


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def alert_rules() -> list[dict[str, Any]]:
    rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in rules["groups"] for rule in group["rules"]]


def test_promtool_accepts_the_alert_rules() -> None:
    """``promtool check rules`` finds the alert rules valid."""
    result = subprocess.run(
        [promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_alert_fires_on_its_cause_and_not_on_a_healthy_deployment() -> None:
    """``promtool test rules``: every alert fires when it should, after its ``for``, only then."""
    result = subprocess.run(
        [promtool(), "test", "rules", str(ALERT_CASES)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    cases = yaml.safe_load(ALERT_CASES.read_text(encoding="utf-8"))
    tested = {
        case["alertname"]
        for test in cases["tests"]
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert tested == {rule["alert"] for rule in alert_rules()}


def test_every_alert_has_severity_for_and_a_runbook_in_operations_md() -> None:
    """Each alert waits (``for``), has a severity, a summary and a runbook section that exists."""
    rules = alert_rules()
    assert {rule["alert"] for rule in rules} >= REQUIRED_ALERTS
    headings = re.findall(r"^### (\S+)$", OPERATIONS.read_text(encoding="utf-8"), re.M)
    for rule in rules:
        assert rule["for"], rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"], rule["alert"]
        assert annotations["description"], rule["alert"]
        # GitHub's anchor of a heading that is one word: the word in lower case.
        assert annotations["runbook_url"] == f"docs/operations.md#{rule['alert'].lower()}"
        assert rule["alert"] in headings, f"docs/operations.md has no ### {rule['alert']}"


async def test_promtool_lints_every_process_metrics_clean(
    processes: dict[str, ManagedProcess],
) -> None:
    """After some traffic (so that labelled series have samples), ``promtool check metrics``
    finds no problem in the /metrics of any process.

    It exits non-zero on any lint problem, warnings included (a counter without ``_total``,
    a unit not in the name...): none is tolerated, so there is no list of accepted ones.
    """
    async with await connect_user(processes["gateway"].ws_url, "obs-alice") as ws:
        assert (await call(ws, {"type": "chat.join", "room": "obs", "ref": 1}))["ok"]
        sent = {"type": "chat.send", "room": "obs", "text": "hi", "client_id": "o-1", "ref": 2}
        assert (await call(ws, sent))["ok"]
        count = {"type": "presence.count", "channel": "chat:obs", "ref": 3}
        assert (await call(ws, count))["ok"]
        bid = {"type": "bids.place", "auction": "obs-none", "amount": 1, "key": "o-1", "ref": 4}
        assert (await call(ws, bid))["error"]["code"] == "auction_not_found"
        # The connection's join made one subscription (chat:obs).
        assert await processes["gateway"].metric("rt_gateway_subscriptions") == 1
        await _lint_every_scrape(processes)


async def _lint_every_scrape(processes: dict[str, ManagedProcess]) -> None:
    for kind, process in processes.items():
        body = await _scrape(process)
        result = await asyncio.to_thread(
            subprocess.run,
            [promtool(), "check", "metrics"],
            input=body,
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, f"{kind}: {result.stdout}{result.stderr}"


async def test_dashboard_and_alerts_query_only_exported_metrics(
    processes: dict[str, ManagedProcess],
) -> None:
    """Every metric a dashboard panel or an alert reads is exported by some process."""
    exported = set(_PROMETHEUS_SERIES)
    for process in processes.values():
        exported |= exported_names(await _scrape(process))
    exprs = dashboard_exprs() + [rule["expr"] for rule in alert_rules()]
    assert len(exprs) > 40
    used: set[str] = set()
    for expr in exprs:
        names = metric_names(expr)
        assert names, f"no metric found in {expr!r}"
        assert names <= exported, f"{expr!r} reads {sorted(names - exported)}, not exported"
        used |= names
    # The metrics an operator needs at a glance are all on the dashboard.
    for name in (
        "rt_service_stream_length",
        "rt_service_stream_consumers",
        "rt_gateway_subscriptions",
        "rt_gateway_outbox_dropped_frames_total",
        "rt_gateway_bus_reconnects_total",
        "rt_presence_sweep_lag_seconds",
        "rt_bids_close_lag_seconds_bucket",
        "rt_ready",
    ):
        assert name in used, name


def test_metric_names_reads_names_and_nothing_else() -> None:
    """The expression reader keeps metric names and drops labels, functions and keywords."""
    expr = (
        'histogram_quantile(0.99, sum by (service, le) (rate(rt_x_bucket{a="b c"}[5m])))'
        ' / on(job) group_left up or absent(rt_y{service="chat"}) > bool 1e3'
    )
    assert metric_names(expr) == {"rt_x_bucket", "up", "rt_y"}


def test_dashboard_has_a_row_per_process_kind_and_one_data_source() -> None:
    """The dashboard: an overview, the gateway and a row per service, every panel on the
    ``datasource`` variable, none overlapping another."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["schemaVersion"] >= 39
    (variable,) = dashboard["templating"]["list"]
    assert (variable["name"], variable["type"], variable["query"]) == (
        "datasource",
        "datasource",
        "prometheus",
    )
    rows: dict[str, list[str]] = {}
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        covered = {
            (grid["x"] + dx, grid["y"] + dy) for dx in range(grid["w"]) for dy in range(grid["h"])
        }
        assert not covered & cells, f"{panel['title']} overlaps another panel"
        cells |= covered
        if panel["type"] == "row":
            rows[panel["title"]] = []
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        list(rows.values())[-1].extend(target["expr"] for target in panel["targets"])
    assert list(rows) == [
        "Overview",
        "Gateway",
        "Service: chat",
        "Service: bids",
        "Service: presence",
    ]
    for service in ("chat", "bids", "presence"):
        exprs = "\n".join(rows[f"Service: {service}"])
        for needed in (
            "rate(rt_service_requests_total",
            "histogram_quantile(0.99, sum by (le) (rate(rt_service_request_seconds_bucket",
            'result!="ok"',
            "rt_service_stream_length",
            "rt_service_stream_lag",
            "rt_service_stream_pending",
            "rt_service_stream_consumers",
        ):
            assert needed in exprs, f"{service}: {needed}"


async def test_sweep_lag_and_readiness_follow_a_redis_outage(
    processes: dict[str, ManagedProcess], redis_server: RedisServer
) -> None:
    """With Redis down every process reports rt_ready 0 and presence's sweep lag grows;
    both recover once Redis is back. (Last in the module: Redis comes back empty.)"""
    presence = processes["presence"]
    assert await presence.metric("rt_presence_sweep_lag_seconds") < 5 * SWEEP_INTERVAL
    redis_server.stop()
    try:

        async def all_unready() -> bool:
            values = [await process.metric("rt_ready") for process in processes.values()]
            return values == [0.0] * len(values)

        await wait_until(all_unready, "rt_ready 0 everywhere with Redis down")
        await presence.metric_reaches("rt_presence_sweep_lag_seconds", 5 * SWEEP_INTERVAL)
    finally:
        redis_server.start()

    async def recovered() -> bool:
        lag = await presence.metric("rt_presence_sweep_lag_seconds")
        ready = [await process.metric("rt_ready") for process in processes.values()]
        return lag < 5 * SWEEP_INTERVAL and ready == [1.0] * len(ready)

    await wait_until(recovered, "sweeps and readiness back", within=20_000 * MS)
