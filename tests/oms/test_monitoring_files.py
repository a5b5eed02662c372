"""The monitoring files shipped in deploy/monitoring/ against what dpps really exposes.

The alert rules and the Grafana dashboard name metrics in PromQL; a renamed metric or label
would leave an alert that can never fire and a panel that stays empty, silently. So:

- every metric (and every label matched or grouped on) that they use must be in what a real
  app's ``/metrics`` exposes after some activity (replication, a failed copy, a lost file,
  heartbeats, HTTP requests), or in what a daemon run alone and the ACADA ingestion queue
  serve: the same endpoints deploy/monitoring/prometheus/prometheus.yml scrapes;
- with Prometheus's own ``promtool`` (Debian's package, scripts/monitoring-deps.sh), the rule
  file and the scrape configuration are checked and the rules' unit tests run: each alert
  fires under the series meant to fire it and stays silent under healthy ones. Without
  promtool those tests skip, unless DPPS_REQUIRE_PROMTOOL is set (CI), where they fail.

The new metrics' values are checked here too, against the scenario that produced them.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from dpps.bdms.archive import Archive
from dpps.bdms.ingestion.metrics import QueueMetrics
from dpps.bdms.replication import evaluator
from dpps.bdms.transfer import daemon as transfers
from dpps.catalog.engine import transaction
from dpps.catalog.models import EventRow, HeartbeatRow, RuleRow
from dpps.core.clock import utcnow
from dpps.core.daemon import DaemonContext, run_daemon
from dpps.core.errors import Unavailable
from dpps.oms import metrics
from dpps.oms.api import create_app
from tests.bdms.preservation_helpers import replicate, storage_file
from tests.oms.conftest import DL0, DL1_FILE, Seeded

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
RULES = MONITORING / "prometheus" / "dpps-alerts.yml"
RULE_TESTS = MONITORING / "prometheus" / "dpps-alerts.test.yml"
CONFIG = MONITORING / "prometheus" / "prometheus.yml"
DASHBOARD = MONITORING / "grafana" / "dpps-overview.json"

#: Series Prometheus makes itself for every target, not exposed by anybody.
PROMETHEUS_SERIES = {"up": {"job", "instance"}}
#: Labels Prometheus attaches to every scraped series; an exposed label of the same name is
#: stored as ``exported_NAME``.
TARGET_LABELS = {"job", "instance"}

# --- PromQL: the metric and label names an expression uses -----------------------------------

KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
}
STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
GRAFANA_VARIABLE = re.compile(r"\$(?:\{[^}]*\}|\w+)")
MATCHERS = re.compile(r"\{([^{}]*)\}")
MATCHER_LABEL = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(
    r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)", re.IGNORECASE
)
RANGE = re.compile(r"\[[^\]]*\]")
IDENTIFIER = re.compile(r"(?<![\w.:])([A-Za-z_:][\w:]*)(?!\s*\()(?![\w:])")
SELECTOR = re.compile(r"(?<![\w.:])([A-Za-z_:][\w:]*)\s*\{([^{}]*)\}")


@dataclass
class Uses:
    """What one PromQL expression refers to."""

    metrics: set[str] = field(default_factory=set)
    #: label names matched on a given metric (``metric{label="..."}``)
    matched: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    #: label names grouped or joined on (``by (...)``, ``on (...)`` ...)
    grouped: set[str] = field(default_factory=set)


def promql_uses(expr: str) -> Uses:
    """The metrics and labels of a PromQL expression, by a tokenizer: strings and Grafana
    variables go first (they may hold anything), then label matchers, grouping clauses and
    ranges; what is left that looks like a name and is not a function call (a name followed
    by a parenthesis), a keyword or part of a number is a metric. No PromQL parser is packaged
    for Python; when promtool is there it parses the rules for real as well."""
    uses = Uses()
    text = GRAFANA_VARIABLE.sub("0", STRING.sub('""', expr))
    for metric, body in SELECTOR.findall(text):
        uses.matched[metric].update(MATCHER_LABEL.findall(body))
    text = MATCHERS.sub(" ", text)
    for _keyword, labels in GROUPING.findall(text):
        uses.grouped.update(name.strip() for name in labels.split(",") if name.strip())
    text = RANGE.sub(" ", GROUPING.sub(" ", text))
    text = re.sub(r"\b\d[\w.+-]*", " ", text)  # numbers and durations (5m, 1e3, 0x1f)
    uses.metrics = {name for name in IDENTIFIER.findall(text) if name.lower() not in KEYWORDS}
    return uses


def test_the_tokenizer_finds_metrics_not_functions_labels_or_keywords() -> None:
    uses = promql_uses(
        "histogram_quantile(0.95, sum by (le, route) (rate(dpps_http_request_duration_seconds_"
        'bucket{route=~"/api.*", status!="5xx"}[$__rate_interval]))) > 0.5 and on (job) '
        "sum without (instance) (increase(dpps_daemon_errors_total[30m] offset 1h)) or "
        "vector(0) unless time() - dpps_daemon_last_run_timestamp_seconds > 1e3"
    )
    assert uses.metrics == {
        "dpps_http_request_duration_seconds_bucket",
        "dpps_daemon_errors_total",
        "dpps_daemon_last_run_timestamp_seconds",
    }
    assert uses.matched == {"dpps_http_request_duration_seconds_bucket": {"route", "status"}}
    assert uses.grouped == {"le", "route", "job", "instance"}


# --- What the monitoring files use ----------------------------------------------------------


def rule_expressions() -> dict[str, str]:
    """Alert name (or recording rule name) -> expression, from the shipped rule file."""
    data = yaml.safe_load(RULES.read_text())
    return {
        str(rule.get("alert") or rule["record"]): str(rule["expr"])
        for group in data["groups"]
        for rule in group["rules"]
    }


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def dashboard_expressions() -> dict[str, str]:
    """``panel title / refId`` -> expression; template variables' ``label_values(metric,
    label)`` queries count as the selector ``metric`` grouped by ``label``."""
    data = dashboard()
    out = {
        f"{panel['title']} / {target['refId']}": str(target["expr"])
        for panel in _panels(data["panels"])
        for target in panel.get("targets", [])
    }
    for var in data["templating"]["list"]:
        if var["type"] != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        found = re.fullmatch(r"\s*label_values\(\s*(.+?)\s*,\s*(\w+)\s*\)\s*", query)
        assert found, f"variable {var['name']}: not a label_values() query: {query}"
        out[f"variable {var['name']}"] = f"sum by ({found.group(2)}) ({found.group(1)})"
    return out


# --- What dpps exposes ----------------------------------------------------------------------


@dataclass
class Exposed:
    """Sample names with their label names, and the text of each endpoint."""

    labels: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    texts: dict[str, str] = field(default_factory=dict)

    def add(self, endpoint: str, text: str) -> None:
        self.texts[endpoint] = text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.labels[sample.name].update(sample.labels)

    def value(self, endpoint: str, name: str, **labels: str) -> float:
        for family in text_string_to_metric_families(self.texts[endpoint]):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
        raise AssertionError(f"{name}{labels} not exposed by {endpoint}")


def _break_a_copy(seeded: Seeded) -> None:
    """The DL1 file's only copy rots on its disk, then a rule wants it at PIC: the transfer
    daemon's copy finds the source's checksum wrong (a failed attempt on link CTAO-S -> PIC),
    the replica is declared BAD, the file is lost, and the evaluator finds the rule STUCK."""
    archive = seeded.archive
    path = storage_file(archive, f"ctao:{DL1_FILE}", "CTAO-S")
    data = path.read_bytes()
    path.write_bytes(bytes([data[0] ^ 0xFF]) + data[1:])
    archive.add_rule(f"ctao:{DL1_FILE}", copies=1, rses="PIC")
    ctx = DaemonContext(name="test")
    for _ in range(3):
        evaluator.Evaluator(archive.context).run_once(ctx)
        with transfers.TransferDaemon(archive.context) as worker:
            worker.run_once(ctx)


def _beat(archive: Archive, names: list[str]) -> None:
    now = utcnow()
    with transaction(archive.sessions) as session:
        for name in names:
            session.add(
                HeartbeatRow(
                    daemon=name,
                    instance=f"test:1:{name}",
                    hostname="test",
                    pid=1,
                    started_at=now,
                    last_seen=now,
                    details={},
                )
            )


@pytest.fixture
def exposed(seeded: Seeded) -> Exposed:
    """A real app after replication (3 copies CTAO-N -> PIC), a failed copy and a lost file,
    heartbeats of every required daemon but the auditor, a daemon that ran and failed, a
    submitted job and a few requests; plus the ACADA queue's endpoint after one file, as its
    daemon serves it."""
    archive = seeded.archive
    archive.add_rule(f"ctao:{DL0}", copies=1, rses="PIC")
    replicate(archive)
    _break_a_copy(seeded)
    _beat(archive, [n for n in archive.config.health.required_daemons if n != "auditor"])
    calls = iter([2, Unavailable("catalog locked")])

    def run_once(ctx: DaemonContext) -> int:
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    for _ in range(2):
        run_daemon("monitoring-test", metrics.instrument(run_once, metrics.DAEMONS), once=True)
    out = Exposed()
    with TestClient(create_app(archive)) as client:
        assert client.get("/api/v1/dids", headers=seeded.headers("reader")).status_code == 200
        assert client.get("/api/v1/dids/ctao:/nope.fits").status_code == 401
        job = {"job": {"name": "nap", "command": ["true"]}}
        submitted = client.post("/api/v1/jobs", json=job, headers=seeded.headers("admin"))
        assert submitted.status_code == 201, submitted.text
        out.add("server", client.get("/metrics").text)
    queue = QueueMetrics()
    queue.count("succeeded")
    queue.bytes.inc(1000)
    queue.latency.observe(1.5)
    queue.queue_length.set(4)
    port = queue.serve(0)
    try:
        out.add("acada", httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text)
    finally:
        queue.close()
    return out


def _unknown(uses: Uses, exposed: Exposed) -> list[str]:
    """What an expression names that nobody exposes."""
    known = {**exposed.labels, **PROMETHEUS_SERIES}
    problems = [f"metric {m}" for m in sorted(uses.metrics) if m not in known]
    labels_here: set[str] = set(TARGET_LABELS)
    for metric in uses.metrics & known.keys():
        labels_here |= known[metric]
        labels_here |= {f"exported_{n}" for n in known[metric] & TARGET_LABELS}
    for metric, names in uses.matched.items():
        allowed = set(TARGET_LABELS) | known.get(metric, labels_here)
        allowed |= {f"exported_{n}" for n in allowed & TARGET_LABELS}
        problems += [f"label {n} on {metric or 'a selector'}" for n in sorted(names - allowed)]
    problems += [f"label {n} grouped on" for n in sorted(uses.grouped - labels_here)]
    return problems


@pytest.mark.verifies_usecase("UC-160-1.1")
def test_every_metric_and_label_the_monitoring_files_use_is_exposed(exposed: Exposed) -> None:
    expressions = {
        **{f"alert {k}": v for k, v in rule_expressions().items()},
        **{f"panel {k}": v for k, v in dashboard_expressions().items()},
    }
    used: set[str] = set()
    problems = []
    for where, expr in expressions.items():
        uses = promql_uses(expr)
        assert uses.metrics, f"{where}: no metric found in {expr!r}"
        used |= uses.metrics
        problems += [f"{where}: {p}" for p in _unknown(uses, exposed)]
    assert problems == [], "\n".join(problems)
    # and the five topics of the monitoring are all covered, by alerts and by panels
    for topic in (
        "dpps_acada_queue_length",
        "dpps_transfer_attempts_total",
        "dpps_rules_oldest_in_state_seconds",
        "dpps_files_lost",
        "dpps_daemon_up",
        "dpps_daemon_heartbeat_age_seconds",
        "dpps_replicas",
        "dpps_replica_bytes",
    ):
        assert topic in used, topic


@pytest.mark.verifies_usecase("UC-160-1.1")
def test_the_new_metrics_tell_what_happened(exposed: Exposed) -> None:
    """The series the alerts watch, against the scenario of the ``exposed`` fixture."""
    value = exposed.value
    done = {"source": "CTAO-N", "destination": "PIC", "outcome": "done"}
    assert value("server", "dpps_transfer_attempts_total", **done) == 3
    failed = {"source": "CTAO-S", "destination": "PIC", "outcome": "retry"}
    assert value("server", "dpps_transfer_attempts_total", **failed) == 1
    assert value("server", "dpps_files_lost") == 1
    assert value("server", "dpps_rules", state="STUCK") == 1
    assert 0 <= value("server", "dpps_rules_oldest_in_state_seconds", state="STUCK") < 600
    for daemon in ("evaluator", "transfer", "reaper"):
        assert value("server", "dpps_daemon_up", daemon=daemon, required="true") == 1
    assert value("server", "dpps_daemon_up", daemon="auditor", required="true") == 0
    # the daemons' registry is the process's: earlier tests' runs count too
    assert value("server", "dpps_daemon_errors_total", daemon="monitoring-test") >= 1
    assert value("acada", "dpps_acada_queue_length") == 4


@pytest.mark.verifies_usecase("UC-160-1.1")
def test_a_rule_stuck_for_hours_shows_its_age(seeded: Seeded) -> None:
    """The age counts from the rule's last change of state, not from its last evaluation or
    a change of its error text, so an alert on it means "stuck that long"."""
    archive = seeded.archive
    archive.add_rule(f"ctao:{DL1_FILE}", copies=1, rses="PIC")
    now = utcnow()
    hours = dt.timedelta(hours=1)
    with transaction(archive.sessions) as session:
        rule = session.scalars(select(RuleRow)).one()
        rule.state, rule.created_at = "STUCK", now - 10 * hours
        for ago, was, to in ((5, "REPLICATING", "STUCK"), (2, "STUCK", "STUCK")):
            session.add(
                EventRow(
                    ts=now - ago * hours,
                    account="root",
                    action="rule.state",
                    did_id=rule.did_id,
                    details={"rule_id": rule.id, "from": was, "to": to},
                )
            )
    registry = CollectorRegistry()
    registry.register(metrics.CatalogCollector(archive.sessions, min_interval_s=0))
    text = Exposed()
    text.add("server", metrics.exposition(registry).decode())
    age = text.value("server", "dpps_rules_oldest_in_state_seconds", state="STUCK")
    assert 5 * 3600 - 60 < age < 5 * 3600 + 60


# --- The dashboard's structure ---------------------------------------------------------------


@pytest.mark.verifies_usecase("UC-160-1.1")
def test_the_dashboard_is_a_grafana_model_with_a_datasource_variable() -> None:
    data = dashboard()
    assert data["schemaVersion"] >= 36
    assert data["uid"] == "dpps-overview"
    variables = {v["name"]: v for v in data["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    panels = list(_panels(data["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
    titles = {p["title"] for p in panels}
    for wanted in (
        "Ingestion backlog",
        "Copy attempts per link",
        "Failure ratio per link",
        "Rules by state",
        "Longest in state",
        "Lost files",
        "Heartbeat age per instance",
        "Replicas per RSE",
        "Bytes per RSE",
    ):
        assert wanted in titles, wanted


@pytest.mark.verifies_usecase("UC-160-1.1")
def test_every_alert_has_a_severity_a_runbook_and_a_unit_test() -> None:
    data = yaml.safe_load(RULES.read_text())
    tests = yaml.safe_load(RULE_TESTS.read_text())
    fired: dict[str, list[bool]] = defaultdict(list)
    for case in tests["tests"]:
        for check in case["alert_rule_test"]:
            fired[check["alertname"]].append(bool(check["exp_alerts"]))
    docs = (ROOT / "docs" / "operations.md").read_text()
    prose = re.sub(r"^```.*?^```", "", docs, flags=re.MULTILINE | re.DOTALL)
    anchors = {
        re.sub(r"[^\w\- ]", "", line.lstrip("#").strip()).lower().replace(" ", "-")
        for line in prose.splitlines()
        if line.startswith("#")
    }
    for group in data["groups"]:
        for rule in group["rules"]:
            name = rule["alert"]
            assert rule["labels"]["severity"] in {"critical", "warning"}, name
            assert "for" in rule, name
            assert {"summary", "description", "runbook"} <= rule["annotations"].keys(), name
            page, _, anchor = rule["annotations"]["runbook"].partition("#")
            assert page == "docs/operations.md", name
            assert anchor in anchors, f"{name}: no section #{anchor} in docs/operations.md"
            assert sorted(set(fired[name])) == [False, True], f"{name}: fire and not fire"


# --- promtool -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def promtool() -> str:
    """Prometheus's promtool (DPPS_PROMTOOL, else on PATH); skipped without it unless
    DPPS_REQUIRE_PROMTOOL is set."""
    found = os.environ.get("DPPS_PROMTOOL") or shutil.which("promtool")
    if not found:
        if os.environ.get("DPPS_REQUIRE_PROMTOOL"):
            pytest.fail("promtool not found but DPPS_REQUIRE_PROMTOOL is set")
        pytest.skip("promtool not found (bash scripts/monitoring-deps.sh as root)")
    return found


def _promtool(promtool: str, *args: str | Path) -> str:
    done = subprocess.run(
        [promtool, *map(str, args)],
        cwd=MONITORING / "prometheus",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


@pytest.mark.verifies_usecase("UC-160-1.1")
def test_promtool_accepts_the_rules_and_the_configuration(promtool: str) -> None:
    count = len(rule_expressions())
    assert f"SUCCESS: {count} rules found" in _promtool(promtool, "check", "rules", RULES)
    assert "is valid prometheus config" in _promtool(promtool, "check", "config", CONFIG)


@pytest.mark.verifies_usecase("UC-160-1.1")
def test_promtool_unit_tests_fire_each_alert_and_spare_the_healthy(promtool: str) -> None:
    assert "SUCCESS" in _promtool(promtool, "test", "rules", RULE_TESTS)
