"""The campaign pages of the dashboard (``/ui/campaigns``), in a real headless Chromium.

The campaign records are made through the real store (``WMS.campaigns``): a finished one whose
report is a real dry run's on the seeded archive (DL0 of block 43 on disk at CTAO-N and on
tape at PIC after a real replication), a failed one whose report carries per-step job counts
and failures, one RUNNING with progress and one QUEUED. The pages must show what the records
say; the numbers are read back from the store, not from constants.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from dpps.bdms.archive import Archive
from dpps.catalog.engine import transaction
from dpps.catalog.models_wms import CampaignRow
from dpps.core.clock import utcnow
from dpps.oms.api import create_app
from dpps.oms.server import BackgroundServer
from dpps.pipelines.campaign import selection
from dpps.pipelines.campaign.jobs import BlockRun, StepRun
from dpps.pipelines.campaign.run import CampaignReport, run_campaign
from dpps.pipelines.campaign.spec import CampaignSpec
from dpps.pipelines.campaign.verify import Verification
from dpps.wms.api import WMS
from dpps.wms.campaigns import CampaignStore
from dpps.wms.states import CampaignState
from tests.bdms.helpers import make_fits
from tests.bdms.preservation_helpers import replicate
from tests.oms.conftest import Dash, Seeded

BLOCK = 43
DONE, FAILED, RUNNING, QUEUED = (
    "reprocess-v2.0",
    "reprocess-v2.1",
    "reprocess-v3.0",
    "reprocess-v3.1",
)
RUNNER = "test-runner"


def _spec(name: str, query: str) -> CampaignSpec:
    return CampaignSpec(query=query, software_version=f"datapipe {name[-4:]}", name=name)


def _add_block(archive: Archive, tmp: Path) -> None:
    """Two telescopes' shower events of block 43 (what a campaign processes), on CTAO-N and
    replicated to PIC-TAPE, so the volume has a disk and a tape data centre."""
    src = tmp / "block43"
    for tel in (1, 2):
        make_fits(
            src,
            f"tel_{tel:03d}.fits",
            obs_id=BLOCK,
            tel_id=tel,
            seed=10 + tel,
            product_type="EVENTS",
        )
    prefix = f"/ctao/dl0/obs_{BLOCK}"
    report = archive.ingest([src], "CTAO-N", lfn_prefix=prefix, recursive=True, dataset=prefix)
    assert not report.failed, report.failed
    archive.add_rule(prefix, copies=1, rses="PIC-TAPE")
    replicate(archive)


def _failed_report(archive: Archive, spec: CampaignSpec) -> dict[str, Any]:
    """A report as a run with one failed job writes it, made with the run's own classes over
    the real selection (running DataPipe here would only repeat tests/pipelines/campaign)."""
    chosen = selection.select(archive, spec.query)
    steps = [
        StepRun("camera", BLOCK, "camera", {"inputs": []}, "submitted", 11, "DONE", None, ["c"]),
        StepRun("dl1", BLOCK, "dl1", {"inputs": []}, "existing", None, "DONE", None, ["d1"]),
        StepRun(
            "dl2",
            BLOCK,
            "dl2",
            {"inputs": ["d1"]},
            "submitted",
            13,
            "FAILED",
            "exit code 1: no events survive the cuts",
        ),
    ]
    block = BlockRun(
        BLOCK, f"{spec.name}-obs{BLOCK:06d}", {}, "submitted", 7, "FAILED", "a job failed", steps
    )
    report = CampaignReport(
        spec.name,
        spec.query,
        spec.software_version,
        spec.category,
        spec.activity,
        False,
        chosen.volume,
        models="ctao:/m@v1",
        blocks=[block],
        steps=steps,
        skipped=["dl3 skipped: no IRF in the archive (give --irf)"],
        failures=[
            {"step": "dl2", "obs_id": BLOCK, "job": 13, "inputs": ["d1"], "error": steps[2].reason}
        ],
        verification=Verification(products=2, checksums_verified=2),
        seconds=12.5,
    )
    return report.to_mapping()


def seed_campaigns(seeded: Seeded, tmp: Path) -> CampaignStore:
    archive = seeded.archive
    _add_block(archive, tmp)
    store = WMS(archive).campaigns
    done = _spec(DONE, f"obs_id in (42, {BLOCK})")
    failed = _spec(FAILED, f"obs_id = {BLOCK}")
    for spec in (done, failed, _spec(RUNNING, "obs_id = 42"), _spec(QUEUED, "obs_id = 42")):
        store.submit(spec.name, "reprocess", dataclasses.asdict(spec))
    for spec, state, report, error in (
        (done, CampaignState.DONE, run_campaign(archive, done, dry_run=True).to_mapping(), None),
        (failed, CampaignState.FAILED, _failed_report(archive, failed), "1 job failed (dl2)"),
    ):
        assert store.claim(RUNNER, spec.name) is not None
        store.finish(spec.name, RUNNER, state, report=report, error=error)
    assert store.claim(RUNNER, RUNNING) is not None
    assert store.progress(RUNNING, RUNNER, "processing 1 observation block(s)", 3, 7)
    return store


@pytest.fixture
def store(seeded: Seeded, tmp_path: Path) -> CampaignStore:
    return seed_campaigns(seeded, tmp_path)


def _counts(row: Any) -> dict[str, int]:
    return {
        c.get_attribute("data-count"): int(c.inner_text())
        for c in row.query_selector_all("td[data-count]")
    }


@pytest.mark.verifies_usecase("UC-160-1.1")
def test_campaign_pages_in_headless_chromium(
    seeded: Seeded, store: CampaignStore, live: BackgroundServer, dash: Dash
) -> None:
    page, shot = dash.page, dash.shot

    # A reader (the least role) signs in: the pages only read.
    page.goto(f"{live.url}/ui/campaigns")
    assert page.url.startswith(f"{live.url}/ui/login")
    page.fill("#token", seeded.tokens["reader"])
    page.click("button[type=submit]")
    page.wait_for_url(f"{live.url}/ui/campaigns")

    # The overview counts the work in progress and links to the page.
    page.goto(f"{live.url}/ui/")
    assert page.inner_text("[data-testid=campaigns-running]") == "1"
    assert page.inner_text("[data-testid=campaigns-queued]") == "1"
    page.click("[data-testid=campaigns-link]")
    page.wait_for_url(f"{live.url}/ui/campaigns")

    # The list: newest first, each with the state, progress and definition of its record.
    recent = store.recent()
    assert [c.name for c in recent] == [QUEUED, RUNNING, FAILED, DONE]
    rows = page.query_selector_all("[data-testid=campaigns] tbody tr[data-name]")
    assert [r.get_attribute("data-name") for r in rows] == [c.name for c in recent]
    for row, info in zip(rows, recent, strict=True):
        assert row.query_selector("[data-testid=state]").inner_text() == info.state
        cell = row.query_selector("[data-testid=progress]")
        assert (cell.get_attribute("data-done"), cell.get_attribute("data-total")) == (
            str(info.done),
            str(info.total),
        )
        assert info.spec["software_version"] in row.inner_text()
        assert info.spec["query"] in row.inner_text()
        assert bool(cell.query_selector(".progress")) == (info.state == "RUNNING")
    running = page.query_selector("tr[data-name='reprocess-v3.0']")
    assert "3 / 7" in running.query_selector("[data-testid=progress]").inner_text()
    assert "processing 1 observation block(s)" in running.inner_text()
    assert page.query_selector("[data-nav=campaigns].active")
    shot("campaigns")
    page.click("[data-state-link=FAILED]")
    page.wait_for_url(f"{live.url}/ui/campaigns?state=FAILED")
    shown = page.query_selector_all("[data-testid=campaigns] tbody tr[data-name]")
    assert [r.get_attribute("data-name") for r in shown] == [FAILED]

    # The finished dry run: its volume, per data centre and per block, as in the record.
    page.goto(f"{live.url}/ui/campaigns")
    page.click(f"a[href='/ui/campaigns/{DONE}']")
    page.wait_for_url(f"{live.url}/ui/campaigns/{DONE}")
    report = store.get(DONE).report
    assert report is not None
    volume = report["volume"]
    assert page.inner_text("[data-testid=campaign-state]") == "DONE"
    assert page.inner_text("[data-testid=volume-files]") == str(volume["total"]["files"]) == "5"
    assert page.get_attribute("[data-testid=volume-bytes]", "data-bytes") == str(
        volume["total"]["bytes"]
    )
    sites = {
        r.get_attribute("data-site"): int(r.query_selector("[data-testid=files]").inner_text())
        for r in page.query_selector_all("[data-testid=volume-sites] tbody tr[data-site]")
    }
    assert sites == {s: v["files"] for s, v in volume["sites"].items()}
    assert set(sites) == {"CTAO-North", "PIC"}
    blocks = {
        r.get_attribute("data-obs"): int(r.query_selector("[data-testid=files]").inner_text())
        for r in page.query_selector_all("[data-testid=volume-blocks] tbody tr[data-obs]")
    }
    assert blocks == {str(k): v["files"] for k, v in volume["blocks"].items()} == {"43": 2}
    assert "dry run" in page.inner_text("main")
    assert page.query_selector_all("svg.plot")
    shot("campaign-done")

    # The failed one: its error, per-step counts, skipped note, failures, verification.
    page.goto(f"{live.url}/ui/campaigns/{FAILED}")
    info = store.get(FAILED)
    assert info.report is not None
    assert page.inner_text("[data-testid=campaign-error]") == info.error
    counts = {
        r.get_attribute("data-step"): _counts(r)
        for r in page.query_selector_all("[data-testid=step-counts] tbody tr[data-step]")
    }
    expected = {
        step: {k: n.get(k, 0) for k in counts[step]} for step, n in info.report["counts"].items()
    }
    assert counts == expected
    assert counts["dl2"]["failed"] == 1
    assert counts["dl1"]["existing"] == 1
    assert "no IRF" in page.inner_text("[data-testid=skipped]")
    assert "no events survive the cuts" in page.inner_text("[data-testid=failures]")
    assert page.inner_text("[data-testid=verification-products]") == "2"
    assert page.inner_text("[data-testid=report-ok]") == "failures"
    shot("campaign-failed")

    # The running one: phase and progress, no report yet.
    page.goto(f"{live.url}/ui/campaigns/{RUNNING}")
    progress = page.query_selector("[data-testid=campaign-progress]")
    assert progress.get_attribute("data-done") == "3"
    assert progress.get_attribute("data-total") == "7"
    assert page.inner_text("[data-testid=campaign-phase]") == "processing 1 observation block(s)"
    assert page.query_selector("[data-testid=no-report]")
    shot("campaign-running")

    # An unknown campaign is the dashboard's 404 page; a bad state filter is explained.
    response = page.goto(f"{live.url}/ui/campaigns/no-such-campaign")
    assert response.status == 404
    assert "no campaign named 'no-such-campaign'" in page.inner_text("[data-testid=error]")
    response = page.goto(f"{live.url}/ui/campaigns?state=SLEEPING")
    assert response.status == 400
    assert "unknown campaign state" in page.inner_text("[data-testid=error]")
    assert dash.errors == []
    assert dash.blocked == [], f"the dashboard tried to load from elsewhere: {dash.blocked}"


@pytest.fixture
def signed_in(seeded: Seeded) -> Iterator[TestClient]:
    with TestClient(create_app(seeded.archive)) as client:
        signed = client.post(
            "/ui/login", data={"token": seeded.tokens["reader"]}, follow_redirects=False
        )
        assert signed.status_code == 303, signed.text  # the cookie holds a session of its own
        yield client


def test_campaign_pages_need_a_session(seeded: Seeded) -> None:
    with TestClient(create_app(seeded.archive)) as client:
        for path in ("/ui/campaigns", "/ui/campaigns/any"):
            answer = client.get(path, follow_redirects=False)
            assert answer.status_code == 303
            assert answer.headers["location"].startswith("/ui/login?next=")


def test_campaign_page_survives_a_partial_or_odd_report(
    seeded: Seeded, signed_in: TestClient
) -> None:
    """A report written by another version (missing parts, wrong types) shows what it has;
    a stored value that is not a mapping at all is said to be unreadable, not a 500."""
    store = WMS(seeded.archive).campaigns
    store.submit("odd", "reprocess", {"query": "obs_id=42", "software_version": "x"})
    assert store.claim(RUNNER, "odd") is not None
    odd = {
        "ok": "yes",
        "volume": {"total": {"files": 4, "bytes": "many"}, "sites": [1]},
        "counts": {"dl1": {"runs": 2, "ok": 2}},
        "steps": 5,
        "failures": ["boom"],
    }
    store.finish("odd", RUNNER, CampaignState.DONE, report=odd)
    page = signed_in.get("/ui/campaigns/odd")
    assert page.status_code == 200
    assert 'data-testid="volume-files">4<' in page.text
    assert 'data-step="dl1"' in page.text
    with transaction(seeded.archive.sessions) as s:
        s.execute(update(CampaignRow).where(CampaignRow.name == "odd").values(report=[1, 2]))
    page = signed_in.get("/ui/campaigns/odd")
    assert page.status_code == 200
    assert 'data-testid="report-unreadable"' in page.text


def test_campaign_list_escapes_what_users_wrote(seeded: Seeded, signed_in: TestClient) -> None:
    store = WMS(seeded.archive).campaigns
    store.submit(
        "x1", "reprocess", {"query": "<script>alert(1)</script>", "software_version": "<b>v</b>"}
    )
    text = signed_in.get("/ui/campaigns").text
    assert "<script>alert(1)</script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    text = signed_in.get("/ui/campaigns/x1").text
    assert "<b>v</b>" not in text


def test_a_running_campaign_whose_runner_died_is_flagged(
    seeded: Seeded, signed_in: TestClient
) -> None:
    """An expired lease means the runner stopped renewing it: both pages say so."""
    store = WMS(seeded.archive).campaigns
    store.submit("orphan", "reprocess", {"query": "obs_id=42", "software_version": "x"})
    assert store.claim(RUNNER, "orphan") is not None
    assert 'data-testid="silent"' not in signed_in.get("/ui/campaigns").text
    with transaction(seeded.archive.sessions) as s:
        s.execute(
            update(CampaignRow)
            .where(CampaignRow.name == "orphan")
            .values(lease_expires_at=utcnow() - dt.timedelta(minutes=5))
        )
    assert 'data-testid="silent"' in signed_in.get("/ui/campaigns").text
    assert "runner silent" in signed_in.get("/ui/campaigns/orphan").text
