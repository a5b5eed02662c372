"""The write endpoints beyond the archive's own: rule updates, transfer retries, and the
workload manager's jobs, workflows and transformations - what they change, what they refuse
(cleanly, changing nothing) and that the event log names who did it."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from dpps.catalog.models import EventRow, RuleLockRow, TransferRow
from tests.oms.conftest import DL1_FILE, Seeded, account_for
from tests.oms.write_cases import JOB, TEMPLATE_JOB, failed_transfer, spec_json


def _events(s: Seeded, action: str, account: str) -> int:
    with s.archive.sessions() as session:
        stmt = select(func.count()).where(EventRow.action == action, EventRow.account == account)
        return int(session.scalar(stmt) or 0)


def _count(s: Seeded, model: type) -> int:
    with s.archive.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_rule_update_suspend_resume_and_refusals(seeded: Seeded, client: TestClient) -> None:
    h = seeded.headers("archive-manager")
    rule_id = seeded.archive.add_rule(DL1_FILE, copies=1, rses="PIC", priority=2)
    url = f"/api/v1/rules/{rule_id}"
    suspended = client.patch(url, json={"suspended": True, "priority": 4}, headers=h)
    assert suspended.status_code == 200, suspended.text
    assert suspended.json()["state"] == "SUSPENDED"
    assert suspended.json()["priority"] == 4
    resumed = client.patch(url, json={"suspended": False}, headers=h)
    assert resumed.json()["state"] == "REPLICATING"
    again = client.patch(url, json={"suspended": False}, headers=h)
    assert again.status_code == 409
    assert "not SUSPENDED" in again.json()["detail"]
    lifetime = client.patch(url, json={"lifetime_days": 2}, headers=h).json()
    assert lifetime["expires_at"] is not None
    cleared = client.patch(url, json={"clear_lifetime": True}, headers=h).json()
    assert cleared["expires_at"] is None
    for body, status in (
        ({}, 400),
        ({"priority": 11}, 400),  # one scale for rules and jobs: 0 .. 10
        ({"bogus": 1}, 400),
        ({"lifetime_days": 1, "clear_lifetime": True}, 400),
    ):
        refused = client.patch(url, json=body, headers=h)
        assert refused.status_code == status, (body, refused.text)
        assert refused.headers["content-type"] == "application/problem+json"
    assert client.patch("/api/v1/rules/999999", json={"priority": 1}, headers=h).status_code == 404
    final = client.get(url, headers=h).json()
    assert (final["priority"], final["state"], final["expires_at"]) == (4, "REPLICATING", None)
    assert _events(seeded, "rule.update", account_for("archive-manager")) == 4


def test_transfer_retry_requeues_a_failed_transfer_once(
    seeded: Seeded, client: TestClient
) -> None:
    h = seeded.headers("operator")
    transfer_id = failed_transfer(seeded)
    retried = client.post(f"/api/v1/transfers/{transfer_id}/retry", headers=h)
    assert retried.status_code == 200, retried.text
    body = retried.json()
    assert (body["state"], body["attempts"], body["error"]) == ("QUEUED", 0, None)
    with seeded.archive.sessions() as session:
        row = session.get(TransferRow, transfer_id)
        assert row is not None
        locks = session.scalars(
            select(RuleLockRow.state).where(RuleLockRow.rule_id == row.rule_id)
        ).all()
    assert "STUCK" not in locks
    twice = client.post(f"/api/v1/transfers/{transfer_id}/retry", headers=h)
    assert twice.status_code == 409
    assert "only FAILED" in twice.json()["detail"]
    assert client.post("/api/v1/transfers/999999/retry", headers=h).status_code == 404
    assert _events(seeded, "transfer.retry", account_for("operator")) == 1


@pytest.mark.verifies_usecase("UC-100-2")
def test_jobs_over_rest_submit_list_kill_retry(seeded: Seeded, client: TestClient) -> None:
    h = seeded.headers("data-processing-manager")
    before = _count(seeded, EventRow)
    for bad, words in (
        ({"job": {**JOB, "colour": "red"}}, "colour"),
        ({"job": {"cwlVersion": "v1.2", "class": "Workflow"}}, "CWL"),
        ({"job": JOB, "priority": 11}, "priority"),
        ({"job": JOB, "site": "NOWHERE"}, "NOWHERE"),
    ):
        refused = client.post("/api/v1/jobs", json=bad, headers=h)
        assert refused.status_code == 400, (bad, refused.text)
        assert words in refused.text
    assert client.get("/api/v1/jobs", headers=h).json()["total"] == 0
    assert _count(seeded, EventRow) == before
    made = client.post("/api/v1/jobs", json={"job": JOB, "priority": 7}, headers=h)
    assert made.status_code == 201, made.text
    job_id = made.json()["id"]
    job = client.get(f"/api/v1/jobs/{job_id}", headers=h).json()
    assert (job["state"], job["priority"], job["name"]) == ("SUBMITTED", 7, "noop")
    assert job["events"][0]["account"] == account_for("data-processing-manager")
    listed = client.get("/api/v1/jobs", params={"state": "submitted"}, headers=h).json()
    assert [j["id"] for j in listed["items"]] == [job_id]
    assert client.get("/api/v1/jobs", params={"state": "nonsense"}, headers=h).status_code == 400
    op = seeded.headers("operator")
    killed = client.post(f"/api/v1/jobs/{job_id}/kill", json={"reason": "runaway"}, headers=op)
    assert killed.status_code == 200, killed.text
    assert client.get(f"/api/v1/jobs/{job_id}", headers=h).json()["state"] == "KILLED"
    assert client.post(f"/api/v1/jobs/{job_id}/kill", headers=op).status_code == 409
    assert client.post(f"/api/v1/jobs/{job_id}/retry", headers=h).status_code == 200
    assert client.get(f"/api/v1/jobs/{job_id}", headers=h).json()["state"] == "SUBMITTED"
    assert client.post("/api/v1/jobs/999999/kill", headers=op).status_code == 404
    assert _events(seeded, "job.kill", account_for("operator")) == 1
    assert _events(seeded, "job.retry", account_for("data-processing-manager")) == 1


@pytest.mark.verifies_usecase("UC-100-1.2")
def test_workflows_and_transformations_over_rest(seeded: Seeded, client: TestClient) -> None:
    h = seeded.headers("data-processing-manager")
    bad = client.post("/api/v1/workflows", json={"spec": {"name": "x", "steps": []}}, headers=h)
    assert bad.status_code == 400
    assert "no steps" in bad.json()["detail"]
    made = client.post("/api/v1/workflows", json={"spec": spec_json(), "inputs": {}}, headers=h)
    assert made.status_code == 201, made.text
    wf_id = made.json()["id"]
    wf = client.get(f"/api/v1/workflows/{wf_id}", headers=h).json()
    assert wf["state"] == "RUNNING"
    assert len(wf["jobs"]) == 1
    assert client.post(f"/api/v1/workflows/{wf_id}/kill", headers=h).json()["count"] == 1
    assert client.post(f"/api/v1/workflows/{wf_id}/retry", headers=h).json()["count"] == 1
    body = {"name": "calib", "spec": spec_json(TEMPLATE_JOB), "filter": "data_level=DL1"}
    added = client.post("/api/v1/transformations", json=body, headers=h)
    assert added.status_code == 201, added.text
    assert added.json()["state"] == "ACTIVE"
    dup = client.post("/api/v1/transformations", json=body, headers=h)
    assert dup.status_code == 409, dup.text
    nofilter = client.post(
        "/api/v1/transformations", json={**body, "name": "x", "filter": ""}, headers=h
    )
    assert nofilter.status_code == 400
    paused = client.post("/api/v1/transformations/calib/pause", headers=h).json()
    assert paused["state"] == "PAUSED"
    assert client.get("/api/v1/transformations/calib", headers=h).json()["state"] == "PAUSED"
    listed = client.get("/api/v1/transformations", headers=h).json()
    assert [t["name"] for t in listed["items"]] == ["calib"]
    resumed = client.post("/api/v1/transformations/calib/resume", headers=h).json()
    assert resumed["state"] == "ACTIVE"
    assert client.post("/api/v1/transformations/calib/retry", headers=h).json()["count"] == 0
    assert client.post("/api/v1/transformations/none/pause", headers=h).status_code == 404
    who = account_for("data-processing-manager")
    assert _events(seeded, "transformation.add", who) == 1
    assert _events(seeded, "transformation.pause", who) == 1
