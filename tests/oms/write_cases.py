"""Role-matrix cases of the workload, rule-update and transfer-retry endpoints.

Each call prepares what it acts on with the library (a fresh job to kill, a FAILED transfer
to retry...), so every role meets the same starting point.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from dpps.catalog.engine import transaction
from dpps.catalog.models import DIDRow, RSERow, RuleLockRow, TransferRow
from dpps.core.clock import utcnow
from dpps.core.states import RuleState, TransferState
from dpps.wms.api import WMS
from dpps.wms.builder import load_job, single_tool_workflow
from dpps.wms.spec import WorkflowSpec
from dpps.wms.types import SubmitOptions
from tests.oms.conftest import DL0, DL1_FILE, Seeded

Call = Callable[[TestClient, Seeded, str, dict[str, str]], httpx.Response]

DPM = {"admin", "data-processing-manager"}
KILLERS = DPM | {"operator"}
RETRIERS = {"admin", "archive-manager", "operator"}

JOB: dict[str, Any] = {"name": "noop", "command": ["true"]}
#: A one-tool template with one File input, as a transformation needs.
TEMPLATE_JOB: dict[str, Any] = {
    "name": "summarize",
    "command": ["true"],
    "inputs": {"infile": "lfn:/ctao/dl1/any.h5"},
}


def spec(job: dict[str, Any] = JOB) -> WorkflowSpec:
    return single_tool_workflow(load_job(job)[0])


def spec_json(job: dict[str, Any] = JOB) -> dict[str, Any]:
    return spec(job).model_dump(mode="json")


def _wms(s: Seeded) -> WMS:
    return WMS(s.archive.as_account("someone"))


def _new_job(s: Seeded) -> int:
    return _wms(s).submit_job(load_job(JOB)[0], {}, opts=SubmitOptions(name="noop")).id


def _killed_job(s: Seeded) -> int:
    job_id = _new_job(s)
    _wms(s).kill(job_id)
    return job_id


def _new_workflow(s: Seeded) -> int:
    return _wms(s).submit_workflow(spec(), {}).id


def _killed_workflow(s: Seeded) -> int:
    workflow_id = _new_workflow(s)
    _wms(s).kill_workflow(workflow_id)
    return workflow_id


def _new_transformation(s: Seeded, name: str) -> str:
    _wms(s).add_transformation(name, spec(TEMPLATE_JOB), filter_text="data_level=DL1")
    return name


def _rule_update(did: str) -> Call:
    def call(c: TestClient, s: Seeded, role: str, h: dict[str, str]) -> httpx.Response:
        # a rule of its own per role (one account may not ask for the same rule twice)
        rule_id = s.archive.as_account(f"owner-{role}").add_rule(did, copies=1, rses="PIC")
        return c.patch(f"/api/v1/rules/{rule_id}", json={"priority": 5}, headers=h)

    return call


def failed_transfer(
    s: Seeded, did: str = DL1_FILE, rse: str = "PIC", *, account: str = "root"
) -> int:
    """A transfer that failed for good (as the transfer daemon leaves it), on a real rule of
    ``account`` (one account may not ask for the same rule twice)."""
    rule_id = s.archive.as_account(account).add_rule(did, copies=1, rses=rse)
    parsed = s.archive.did(did)
    with transaction(s.archive.sessions) as session:
        did_id = session.scalar(
            select(DIDRow.id).where(DIDRow.scope == parsed.scope, DIDRow.name == parsed.name)
        )
        rse_id = session.scalar(select(RSERow.id).where(RSERow.name == rse))
        # the rule's own copy is queued: make it the one that failed (as the daemon would)
        session.execute(
            update(TransferRow)
            .where(TransferRow.did_id == did_id, TransferRow.dest_rse_id == rse_id)
            .values(state=TransferState.CANCELLED.value)
        )
        row = TransferRow(
            did_id=did_id,
            dest_rse_id=rse_id,
            rule_id=rule_id,
            state=TransferState.FAILED.value,
            attempts=5,
            max_attempts=5,
            error="destination unreachable",
            finished_at=utcnow(),
        )
        session.add(row)
        session.add(
            RuleLockRow(rule_id=rule_id, did_id=did_id, rse_id=rse_id, state=RuleState.STUCK.value)
        )
        session.flush()
        return row.id


CASES: dict[str, tuple[Call, set[str]]] = {
    "job-submit": (
        lambda c, s, r, h: c.post("/api/v1/jobs", json={"job": JOB, "name": r}, headers=h),
        DPM,
    ),
    "job-kill": (
        lambda c, s, r, h: c.post(f"/api/v1/jobs/{_new_job(s)}/kill", json={}, headers=h),
        KILLERS,
    ),
    "job-retry": (
        lambda c, s, r, h: c.post(f"/api/v1/jobs/{_killed_job(s)}/retry", headers=h),
        DPM,
    ),
    "workflow-submit": (
        lambda c, s, r, h: c.post(
            "/api/v1/workflows", json={"spec": spec_json(), "inputs": {}}, headers=h
        ),
        DPM,
    ),
    "workflow-kill": (
        lambda c, s, r, h: c.post(f"/api/v1/workflows/{_new_workflow(s)}/kill", headers=h),
        KILLERS,
    ),
    "workflow-retry": (
        lambda c, s, r, h: c.post(f"/api/v1/workflows/{_killed_workflow(s)}/retry", headers=h),
        DPM,
    ),
    "transformation-add": (
        lambda c, s, r, h: c.post(
            "/api/v1/transformations",
            json={"name": f"tr-{r}", "spec": spec_json(TEMPLATE_JOB), "filter": "data_level=DL1"},
            headers=h,
        ),
        DPM,
    ),
    "transformation-pause": (
        lambda c, s, r, h: c.post(
            f"/api/v1/transformations/{_new_transformation(s, f'p-{r}')}/pause", headers=h
        ),
        DPM,
    ),
    "rule-update-dl0": (_rule_update(DL0), {"admin", "archive-manager"}),
    "rule-update-dl1": (
        _rule_update(DL1_FILE),
        {"admin", "archive-manager", "data-processing-manager"},
    ),
    "campaign-submit": (
        lambda c, s, r, h: c.post(
            "/api/v1/campaigns",
            json={"query": "obs_id = 42", "software_version": "2.0", "name": f"c-{r}"},
            headers=h,
        ),
        DPM,
    ),
    "transfer-retry": (
        lambda c, s, r, h: c.post(
            f"/api/v1/transfers/{failed_transfer(s, account=f'owner-{r}')}/retry", headers=h
        ),
        RETRIERS,
    ),
}
