"""Jobs: list, inspect, submit, kill and retry, as thin handlers over ``dpps.wms.api.WMS``.

Submitting and retrying need ``wms.write`` (data-processing managers), killing ``wms.kill``
(also operators, who stop runaway jobs on shift). The WMS acts as the token's account, so the
job history names it; each write also leaves an event in the archive's event log.
Workflows and transformations are in ``wms_flows.py``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, status

from dpps.bdms.types import PageRequest
from dpps.core.authz import Action, Principal
from dpps.core.identifiers import MAX_ACTIVITY_ID
from dpps.oms.api.deps import ArchiveView, Reader, allowed, producing
from dpps.oms.api.problems import PROBLEM_RESPONSES
from dpps.oms.api.schemas import Page
from dpps.oms.api.schemas_wms import (
    AffectedOut,
    JobSubmitIn,
    KillIn,
    LogOut,
    SubmitOptionsIn,
    SubmittedOut,
)
from dpps.oms.wms_submit import record
from dpps.wms.api import WMS, JobInfo
from dpps.wms.listings import JobFilter
from dpps.wms.types import AccountingRow, SubmitOptions


async def wms_view(archive: ArchiveView) -> WMS:
    """The workload manager acting as the request's account."""
    return WMS(archive)


Workload = Annotated[WMS, Depends(wms_view)]
Submitter = Annotated[Principal, producing(Action.WMS_WRITE)]
Killer = Annotated[Principal, allowed(Action.WMS_KILL)]
Id = Annotated[int, Path(ge=1, le=MAX_ACTIVITY_ID)]  # jobs.id, 64-bit (migration 0008)


def options(body: SubmitOptionsIn) -> SubmitOptions:
    return SubmitOptions(
        body.name, body.priority, body.activity, body.site, body.executor, body.max_attempts
    )


jobs = APIRouter(prefix="/api/v1/jobs", tags=["jobs"], responses=PROBLEM_RESPONSES)
accounting = APIRouter(prefix="/api/v1/accounting", tags=["jobs"], responses=PROBLEM_RESPONSES)


@accounting.get("", response_model=list[AccountingRow], summary="Resource use of jobs that ran")
def job_accounting(
    wms: Workload,
    _who: Reader,
    by: Annotated[
        str,
        Query(
            max_length=200,
            description="Group by, comma-separated: site, activity, "
            "software_version, executor, tool",
        ),
    ] = "site,activity,software_version",
) -> list[AccountingRow]:
    """What ``dpps wms accounting`` prints: CPU, wall time, peak memory, bytes, per group."""
    return wms.accounting([k.strip() for k in by.split(",") if k.strip()])


@jobs.get("", response_model=Page[JobInfo], summary="Jobs, newest first")
def list_jobs(
    wms: Workload,
    _who: Reader,
    state: Annotated[str | None, Query(max_length=16)] = None,
    workflow_id: Annotated[int | None, Query(ge=1, le=MAX_ACTIVITY_ID)] = None,
    site: Annotated[str | None, Query(max_length=64)] = None,
    activity: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> Page[JobInfo]:
    where = JobFilter(state=state, workflow_id=workflow_id, site=site, activity=activity)
    page = wms.jobs_page(where, PageRequest(offset, limit))
    return Page[JobInfo](items=page.items, total=page.total, limit=limit, offset=offset)


@jobs.get("/{job_id}", response_model=JobInfo, summary="One job: history, inputs, outputs")
def get_job(job_id: Id, wms: Workload, _who: Reader) -> JobInfo:
    return wms.job(job_id)


@jobs.get("/{job_id}/log", response_model=LogOut, summary="Output of the last attempt")
def job_log(job_id: Id, wms: Workload, _who: Reader) -> LogOut:
    return LogOut(job=job_id, log=wms.logs(job_id))


@jobs.post(
    "", response_model=SubmittedOut, status_code=status.HTTP_201_CREATED, summary="Submit a job"
)
def submit_job(body: JobSubmitIn, wms: Workload, _who: Submitter) -> SubmittedOut:
    sub = wms.submit_document(body.job, opts=options(body))
    record(wms, "job.submit", job_id=sub.id, name=sub.name)
    return SubmittedOut(kind=sub.kind, id=sub.id, name=sub.name)


@jobs.post("/{job_id}/kill", response_model=AffectedOut, summary="Kill a job")
def kill_job(job_id: Id, wms: Workload, _who: Killer, body: KillIn | None = None) -> AffectedOut:
    wms.kill(job_id, body.reason if body else None)
    record(wms, "job.kill", job_id=job_id, reason=body.reason if body else None)
    return AffectedOut(id=job_id, count=1)


@jobs.post("/{job_id}/retry", response_model=AffectedOut, summary="Retry a FAILED/KILLED job")
def retry_job(job_id: Id, wms: Workload, _who: Submitter) -> AffectedOut:
    wms.retry(job_id)
    record(wms, "job.retry", job_id=job_id)
    return AffectedOut(id=job_id, count=1)
