"""``dpps report``, the API's health and report, and Prometheus metrics: numbers from the
catalog, in every format."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from sqlalchemy import insert
from typer.testing import CliRunner

from dpps.catalog import dids
from dpps.catalog import rses as rse_repo
from dpps.catalog.engine import transaction
from dpps.catalog.models import TransferRow
from dpps.cli.main import app
from dpps.core.clock import utcnow
from dpps.core.daemon import DaemonContext, run_daemon
from dpps.core.errors import InvalidInput, Unavailable
from dpps.oms import metrics
from dpps.oms.report import build_report, parse_since, render_html, render_markdown
from tests.bdms.test_auditor import beat_required
from tests.oms.conftest import Seeded

runner = CliRunner()


def _transfers(seeded: Seeded) -> None:
    """Three transfers to PIC, as the transfer daemon writes them: DONE, FAILED, QUEUED."""
    archive = seeded.archive
    now = utcnow()
    with transaction(archive.sessions) as session:
        pic = rse_repo.get_rse(session, "PIC").id
        rows = []
        for did, state in zip(seeded.dl0_files, ("DONE", "FAILED", "QUEUED"), strict=True):
            row = dids.get_did(session, archive.did(did))
            rows.append(
                {
                    "did_id": row.id,
                    "dest_rse_id": pic,
                    "state": state,
                    "bytes": row.bytes,
                    "next_attempt_at": now,
                    "created_at": now,
                    "updated_at": now,
                    "attempts": 1,
                    "max_attempts": 5,
                }
            )
        session.execute(insert(TransferRow), rows)


@pytest.mark.verifies_usecase("UC-160-1.3")
def test_report_counts_volumes_failures_and_states(seeded: Seeded) -> None:
    _transfers(seeded)
    since = utcnow() - dt.timedelta(hours=1)
    with seeded.archive.sessions() as session:
        rep = build_report(session, seeded.archive.config, since)
    sizes = {f: seeded.archive.show(f).file.bytes or 0 for f in seeded.dl0_files}
    assert {(v.key, v.files, v.bytes) for v in rep.ingested} == {
        ("CTAO-North", 3, sum(sizes.values())),
        ("CTAO-South", 1, seeded.archive.show("/ctao/dl1/obs_42/tel_001.h5").file.bytes),
    }
    pic_site = seeded.archive.config.rses["PIC"].site
    assert [(v.key, v.files, v.bytes) for v in rep.replicated] == [
        (pic_site, 1, sizes[seeded.dl0_files[0]])
    ]
    assert [(v.key, v.files) for v in rep.transfers_failed] == [(pic_site, 1)]
    assert rep.transfers_by_state == {"DONE": 1, "FAILED": 1, "QUEUED": 1}
    assert rep.events_by_action["file.register"] == 4
    md = render_markdown(rep)
    assert "| CTAO-North | 3 |" in md
    assert "transfers failed to" in md
    html = render_html(rep)
    assert "<svg" in html
    assert "CTAO-North" in html
    assert "<script" not in html
    with seeded.archive.sessions() as session:
        empty = build_report(
            session,
            seeded.archive.config,
            utcnow() - dt.timedelta(days=400),
            utcnow() - dt.timedelta(days=399),
        )
    assert empty.ingested == []
    assert empty.events_by_action == {}


def test_parse_since() -> None:
    now = dt.datetime(2026, 11, 22, 12)
    assert parse_since("24h", now) == dt.datetime(2026, 11, 21, 12)
    assert parse_since("2w", now) == dt.datetime(2026, 11, 8, 12)
    assert parse_since("2026-11-01") == dt.datetime(2026, 11, 1)
    assert parse_since("2026-11-01T10:00:00+02:00") == dt.datetime(2026, 11, 1, 8)
    with pytest.raises(InvalidInput, match="--since"):
        parse_since("yesterday")


@pytest.mark.verifies_usecase("UC-160-1.3")
def test_report_command_formats(seeded: Seeded) -> None:
    ws = ["-w", str(seeded.archive.config.workspace)]
    md = runner.invoke(app, [*ws, "report", "--since", "7d"], env={"DPPS_URL": ""})
    assert md.exit_code == 0, md.stderr
    assert md.stdout.startswith("# dpps operations report")
    assert "CTAO-South" in md.stdout
    js = runner.invoke(app, [*ws, "report", "--json"], env={"DPPS_URL": ""})
    data = json.loads(js.stdout)
    assert sum(v["files"] for v in data["ingested"]) == 4
    out = seeded.archive.config.workspace / "report.html"
    html = runner.invoke(
        app, [*ws, "report", "--format", "html", "-o", str(out)], env={"DPPS_URL": ""}
    )
    assert html.exit_code == 0
    assert out.read_text().startswith("<!doctype html>")
    bad = runner.invoke(app, [*ws, "report", "--format", "pdf"], env={"DPPS_URL": ""})
    assert bad.exit_code == InvalidInput.exit_code
    since = runner.invoke(app, [*ws, "report", "--since", "soon"], env={"DPPS_URL": ""})
    assert since.exit_code == InvalidInput.exit_code
    assert "--since" in since.stderr


def _metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(want) + r"\}" if want else "") + r" (\S+)"
    found = re.search(pattern, text)
    assert found, f"{name}{{{want}}} not in metrics"
    return float(found.group(1))


@pytest.mark.verifies_usecase("UC-160-1.1")
def test_metrics_match_the_catalog(seeded: Seeded, client: TestClient) -> None:
    _transfers(seeded)
    client.get("/api/v1/dids", headers=seeded.headers("reader"))
    client.get("/api/v1/dids/ctao:/nope.fits", headers=seeded.headers("reader"))
    text = client.get("/metrics").text
    assert _metric(text, "dpps_files", data_level="DL0") == 3
    assert _metric(text, "dpps_files", data_level="DL1") == 1
    assert _metric(text, "dpps_replicas", rse="CTAO-N", state="AVAILABLE") == 3
    assert _metric(text, "dpps_transfers", state="FAILED") == 1
    assert _metric(text, "dpps_events_total", action="file.register") == 4
    assert (
        _metric(text, "dpps_http_requests_total", method="GET", route="/api/v1/dids", status="200")
        >= 1
    )
    assert _metric(text, "dpps_api_errors_total", kind="NotFound") >= 1
    beat_required(seeded.archive)  # dpps health also wants its daemons running
    health = client.get("/api/v1/health", headers=seeded.headers("reader")).json()
    assert health["ok"] is True
    assert health["lost"] == 0
    assert health["alarms"] == []
    md = client.get(
        "/api/v1/report", params={"format": "markdown"}, headers=seeded.headers("reader")
    )
    assert md.headers["content-type"].startswith("text/markdown")
    assert "CTAO-North" in md.text


def test_daemon_metrics_count_items_and_errors() -> None:
    registry = CollectorRegistry()
    daemon = metrics.DaemonMetrics(registry)
    calls = iter([3, Unavailable("db locked"), 2])

    def run_once(ctx: DaemonContext) -> int:
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    wrapped = metrics.instrument(run_once, daemon)
    for _ in range(3):
        run_daemon("testd", wrapped, once=True)
    text = metrics.exposition(registry).decode()
    assert _metric(text, "dpps_daemon_items_total", daemon="testd") == 5
    assert _metric(text, "dpps_daemon_runs_total", daemon="testd") == 3
    assert _metric(text, "dpps_daemon_errors_total", daemon="testd", kind="Unavailable") == 1


def test_a_daemon_run_alone_serves_its_metrics_on_loopback() -> None:
    import httpx

    from dpps.oms.server import daemon_metrics, free_port

    port = free_port()
    with daemon_metrics(port) as wrap:
        assert wrap is not None
        run_daemon("alone", wrap(lambda ctx: 7), once=True)
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
    assert _metric(text, "dpps_daemon_items_total", daemon="alone") == 7
    with daemon_metrics(None) as nothing:
        assert nothing is None
