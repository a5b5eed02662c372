"""The job and workflow pages of the dashboard (``/ui/jobs``, ``/ui/workflows``) in a real
headless Chromium, on both catalog backends.

Real jobs and a real workflow are run by the WMS's own in-process runner on the seeded
archive: a Python tool that summarises a DL0 file and registers its output, a command that
fails, and a CWL workflow that scatters over two DL0 files and merges. The pages must show
what the catalog records; expected values are read back through ``WMS``, not constants.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dpps.oms.api import create_app
from dpps.oms.server import BackgroundServer
from dpps.wms.api import WMS
from dpps.wms.types import SubmitOptions
from tests.oms.conftest import Dash, Seeded
from tests.wms.conftest import MERGE_CWL, PY, SCATTER_CWL, SUMMARIZE_CWL, TIMEOUT_S, write


@dataclass(frozen=True)
class Work:
    wms: WMS
    summary_job: int
    failed_job: int
    workflow: int


def run_work(seeded: Seeded, tmp: Path) -> Work:
    wms = WMS(seeded.archive)
    first = seeded.dl0_files[0].split(":", 1)[1]
    summary = write(
        tmp / "summary.yaml",
        f"""\
        name: summary
        tool: dpps.wms.samples:summarize
        inputs: {{infile: "lfn:{first}"}}
        software_version: "samples 2.0"
        activity: cat-b
        outputs:
          - name: summary
            glob: "*.summary.json"
            lfn: /ctao/dl1/obs_42/$(inputs.infile.nameroot).summary.json
            data_level: DL1
    """,
    )
    failing = {
        "name": "broken-step",
        "command": [PY, "-c", "import sys; print('calibration table missing'); sys.exit(3)"],
    }
    failing_path = write(tmp / "failing.yaml", json.dumps(failing))
    job = wms.submit(summary)
    assert wms.wait(job, timeout_s=TIMEOUT_S) == "DONE", wms.job(job.id)
    bad = wms.submit(failing_path, opts=SubmitOptions(activity="calibration", max_attempts=1))
    assert wms.wait(bad, timeout_s=TIMEOUT_S) == "FAILED", wms.job(bad.id)
    write(tmp / "cwl" / "summarize.cwl", SUMMARIZE_CWL)
    write(tmp / "cwl" / "merge.cwl", MERGE_CWL)
    night = write(tmp / "cwl" / "night.cwl", SCATTER_CWL)
    files = [f"lfn:{d.split(':', 1)[1]}" for d in seeded.dl0_files[1:]]
    flow = wms.submit(night, {"files": files, "tag": "night42"})
    assert wms.wait(flow, timeout_s=TIMEOUT_S) == "DONE", wms.workflow(flow.id)
    return Work(wms, job.id, bad.id, flow.id)


@pytest.fixture
def work(seeded: Seeded, tmp_path: Path) -> Work:
    return run_work(seeded, tmp_path)


def _ids(page: object, selector: str) -> list[int]:
    rows = page.query_selector_all(selector)  # type: ignore[attr-defined]
    return [int(r.get_attribute("data-id")) for r in rows]


@pytest.mark.verifies_usecase("UC-160-1.1")
def test_job_and_workflow_pages_in_headless_chromium(
    seeded: Seeded, work: Work, live: BackgroundServer, dash: Dash
) -> None:
    page, shot, wms = dash.page, dash.shot, work.wms
    page.goto(f"{live.url}/ui/jobs")
    page.fill("#token", seeded.tokens["reader"])
    page.click("button[type=submit]")
    page.wait_for_url(f"{live.url}/ui/jobs")

    # The list: every job newest first, with the state, activity and attempts the WMS records.
    jobs = wms.list_jobs(limit=1000)
    assert len(jobs) == 2 + 3  # two single jobs, the workflow's two summaries and its merge
    assert _ids(page, "[data-testid=jobs] tbody tr[data-id]") == [j.id for j in jobs]
    assert page.inner_text("[data-testid=jobs-total]") == str(len(jobs))
    for job in jobs:
        row = page.query_selector(f"[data-testid=jobs] tr[data-id='{job.id}']")
        assert row.query_selector("[data-testid=state]").inner_text() == job.state
        assert row.query_selector("[data-testid=activity]").inner_text() == job.activity
        assert (
            row.query_selector("[data-testid=attempts]")
            .inner_text()
            .startswith(f"{job.attempts} /")
        )
        assert row.query_selector("[data-testid=account]").inner_text() == "root"
    assert page.query_selector("[data-nav=jobs].active")
    bars = page.query_selector_all("svg.plot rect")
    assert len(bars) == len({j.state for j in jobs})  # one bar per state
    shot("wms-jobs")

    # Filters: by state (a link), by activity (a link), both kept while paging.
    page.click("[data-state-link=FAILED]")
    page.wait_for_url(f"{live.url}/ui/jobs?state=FAILED")
    failed = [j.id for j in wms.list_jobs(state="FAILED")]
    assert _ids(page, "[data-testid=jobs] tbody tr[data-id]") == failed == [work.failed_job]
    page.goto(f"{live.url}/ui/jobs")
    page.click("[data-activity-link=cat-b]")
    assert (
        _ids(page, "[data-testid=jobs] tbody tr[data-id]")
        == [j.id for j in wms.list_jobs(activity="cat-b")]
        == [work.summary_job]
    )

    # A job page: details, outputs linked to their product page, its history and its log.
    page.goto(f"{live.url}/ui/jobs")
    page.click(f"[data-testid=jobs] tr[data-id='{work.summary_job}'] a[data-testid=job-link]")
    page.wait_for_url(f"{live.url}/ui/jobs/{work.summary_job}")
    info = wms.job(work.summary_job)
    assert page.inner_text("[data-testid=job-state]") == "DONE"
    history = [
        r.get_attribute("data-state")
        for r in page.query_selector_all("[data-testid=job-events] tbody tr")
    ]
    assert history == [e.state for e in info.events]
    assert history[-1] == "DONE"
    outputs = [
        a.get_attribute("data-did") for a in page.query_selector_all("[data-testid=job-outputs] a")
    ]
    assert outputs == info.outputs == ["ctao:/ctao/dl1/obs_42/tel_001.summary.json"]
    assert page.inner_text("[data-testid=job-inputs]").strip() == info.inputs[0]
    shot("wms-job")
    page.click("[data-testid=job-outputs] a")
    page.wait_for_url(f"{live.url}/ui/products/{outputs[0]}")
    assert "tel_001.summary.json" in page.inner_text("h1")

    page.goto(f"{live.url}/ui/jobs/{work.failed_job}")
    bad = wms.job(work.failed_job)
    assert page.inner_text("[data-testid=job-state]") == "FAILED"
    assert page.inner_text("[data-testid=job-reason]") == bad.reason
    assert page.inner_text("[data-testid=job-exit-code]") == "3"
    assert "calibration table missing" in page.inner_text("[data-testid=job-log]")
    assert wms.logs(work.failed_job).strip() in page.inner_text("[data-testid=job-log]")
    shot("wms-job-failed")

    # Workflows: the list, then one workflow's steps with their jobs (linked) and the chart.
    page.goto(f"{live.url}/ui/workflows")
    assert _ids(page, "[data-testid=workflows] tbody tr[data-id]") == [work.workflow]
    flow = wms.workflow(work.workflow)
    cell = page.query_selector(f"tr[data-id='{work.workflow}'] [data-testid=steps]")
    assert (cell.get_attribute("data-done"), cell.get_attribute("data-total")) == ("2", "2")
    shot("wms-workflows")
    page.click("[data-testid=workflow-link]")
    page.wait_for_url(f"{live.url}/ui/workflows/{work.workflow}")
    assert page.inner_text("[data-testid=workflow-state]") == flow.state == "DONE"
    shown = {
        step: sorted(
            int(r.get_attribute("data-job"))
            for r in page.query_selector_all(f"tr[data-step='{step}'][data-job]")
        )
        for step in flow.steps
    }
    assert shown == {
        step: sorted(j.id for j in flow.jobs if j.step == step) for step in flow.steps
    }
    assert [len(v) for v in shown.values()] == [2, 1]
    states = [c.inner_text() for c in page.query_selector_all("[data-testid=step-state]")]
    assert states == [s["state"] for s in flow.steps.values()]
    chart = page.query_selector_all("svg.plot rect")
    assert len(chart) == len(flow.steps)
    assert "ctao:/ctao/dl2/night42/merged.json" in page.inner_text(
        "[data-testid=workflow-outputs]"
    )
    shot("wms-workflow")
    merge_job = shown["merge"][0]
    page.click(f"tr[data-job='{merge_job}'] a[data-testid=job-link]")
    page.wait_for_url(f"{live.url}/ui/jobs/{merge_job}")
    assert page.get_attribute("[data-testid=workflow-link]", "href") == (
        f"/ui/workflows/{work.workflow}"
    )

    # Unknown ids are the 404 page; bad filters are explained with a 400.
    for path in (
        "/ui/jobs/999999",
        "/ui/jobs/abc",
        "/ui/workflows/999999",
        "/ui/jobs/99999999999999999999",
    ):
        response = page.goto(f"{live.url}{path}")
        assert response.status == 404, path
        assert "no " in page.inner_text("[data-testid=error]")
    response = page.goto(f"{live.url}/ui/jobs?state=SLEEPING")
    assert response.status == 400
    assert "unknown job state 'SLEEPING'" in page.inner_text("[data-testid=error]")
    response = page.goto(f"{live.url}/ui/workflows?state=PAUSED")
    assert response.status == 400
    assert "unknown workflow state" in page.inner_text("[data-testid=error]")
    assert dash.errors == []
    assert dash.blocked == [], f"the dashboard tried to load from elsewhere: {dash.blocked}"


def test_workload_pages_need_a_session(seeded: Seeded) -> None:
    with TestClient(create_app(seeded.archive)) as client:
        for path in ("/ui/jobs", "/ui/jobs/1", "/ui/workflows", "/ui/workflows/1"):
            answer = client.get(path, follow_redirects=False)
            assert answer.status_code == 303, path
            assert answer.headers["location"].startswith("/ui/login?next=")


def test_empty_lists_and_paging(seeded: Seeded, signed_in: TestClient, tmp_path: Path) -> None:
    """No job yet: the pages say so. Past the first page: the next link keeps the filter."""
    text = signed_in.get("/ui/jobs").text
    assert "no job yet" in text
    assert "no workflow yet" in signed_in.get("/ui/workflows").text
    wms = WMS(seeded.archive)
    job = write(tmp_path / "j.yaml", json.dumps({"name": "noop", "command": [PY, "-c", "0"]}))
    from dpps.oms.dashboard import workload

    ids = [
        wms.submit(job, opts=SubmitOptions(activity="simulation")).id
        for _ in range(workload.PAGE + 2)
    ]
    first = signed_in.get("/ui/jobs?activity=simulation&state=submitted")
    assert first.status_code == 200
    assert f'data-id="{ids[-1]}"' in first.text
    assert f'data-id="{ids[0]}"' not in first.text
    assert f"?offset={workload.PAGE}&amp;state=SUBMITTED&amp;activity=simulation" in first.text
    second = signed_in.get(f"/ui/jobs?activity=simulation&state=SUBMITTED&offset={workload.PAGE}")
    assert f'data-id="{ids[0]}"' in second.text
    assert f'data-id="{ids[1]}"' in second.text
    assert f'data-id="{ids[2]}"' not in second.text
    assert signed_in.get("/ui/jobs?activity=" + "x" * 65).status_code == 400


def test_job_names_are_escaped(seeded: Seeded, signed_in: TestClient, tmp_path: Path) -> None:
    wms = WMS(seeded.archive)
    job = write(
        tmp_path / "j.yaml",
        json.dumps({"name": "<script>alert(1)</script>", "command": [PY, "-c", "0"]}),
    )
    sub = wms.submit(job)
    for path in ("/ui/jobs", f"/ui/jobs/{sub.id}"):
        text = signed_in.get(path).text
        assert "<script>alert(1)</script>" not in text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
