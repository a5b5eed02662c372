"""The WMS's listings: jobs and workflows, filtered, newest first, paged, with their totals.

One query per listing for the REST API, the dashboard and ``dpps wms``, as
``dpps.bdms.listings`` is for the archive. Functions take the caller's session and only read;
``WMS.jobs_page``/``WMS.workflows_page`` open it. States a person typed are checked here (an
unknown one is an error naming the known ones, never an empty list that looks like "nothing
failed").
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from dpps.bdms import resolve
from dpps.bdms.types import FileRef, Page, PageRequest
from dpps.catalog.models_wms import JobFileRow, JobRow, WorkflowRow
from dpps.core.errors import InvalidInput, NotFound
from dpps.core.identifiers import DID
from dpps.wms.states import JobState, WorkflowState
from dpps.wms.types import JobInfo

#: A SELECT of any columns (the listings' statements before their window).
Rows = Select[*tuple[Any, ...]]


def job_state(text: str) -> JobState:
    """A job state given by a user (any case), or a clear error naming the known ones."""
    try:
        return JobState(text.strip().upper())
    except ValueError:
        known = ", ".join(s.value for s in JobState)
        raise InvalidInput(f"unknown job state {text[:40]!r} (use {known})") from None


def workflow_state(text: str) -> WorkflowState:
    """A workflow state given by a user (any case), or a clear error naming the known ones."""
    try:
        return WorkflowState(text.strip().upper())
    except ValueError:
        known = ", ".join(s.value for s in WorkflowState)
        raise InvalidInput(f"unknown workflow state {text[:40]!r} (use {known})") from None


def _page[T](session: Session, stmt: Rows, page: PageRequest, items: list[T]) -> Page[T]:
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))
    return Page(items=items, total=int(total or 0), offset=page.offset, limit=page.limit)


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Jobs in ``state``, of ``workflow_id``, that ran at ``site``, of ``activity``."""

    state: str | None = None
    workflow_id: int | None = None
    site: str | None = None
    activity: str | None = None


def list_jobs(
    session: Session,
    where: JobFilter = JobFilter(),
    page: PageRequest = PageRequest(),
) -> Page[JobInfo]:
    """Jobs newest first (their rows only: no inputs, outputs or history)."""
    from dpps.wms.reports import job_info  # reports is the WMS facade's mixin: imports this

    stmt = select(JobRow)
    if where.state is not None:
        stmt = stmt.where(JobRow.state == job_state(where.state).value)
    if where.workflow_id is not None:
        stmt = stmt.where(JobRow.workflow_id == where.workflow_id)
    if where.site is not None:
        stmt = stmt.where(JobRow.run_site == where.site)
    if where.activity is not None:
        stmt = stmt.where(JobRow.activity == where.activity)
    rows = session.scalars(
        stmt.order_by(JobRow.id.desc()).limit(page.limit).offset(page.offset)
    ).all()
    return _page(session, stmt, page, [job_info(r) for r in rows])


@dataclass(frozen=True, slots=True)
class WorkflowFilter:
    state: str | None = None
    transformation_id: int | None = None


@dataclass(frozen=True, slots=True)
class WorkflowRecord:
    """A workflow's row as lists show it (``WMS.workflow`` adds its jobs)."""

    id: int
    name: str
    state: str
    account: str
    document: dict[str, Any]
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    steps: dict[str, Any]
    priority: int
    activity: str
    activity_rank: int
    site: str | None
    executor: str
    max_attempts: int
    needs_advance: bool
    transformation_id: int | None
    reason: str | None
    lease_owner: str | None
    lease_expires_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime
    finished_at: dt.datetime | None


def _workflow(r: WorkflowRow) -> WorkflowRecord:
    return WorkflowRecord(
        id=r.id,
        name=r.name,
        state=r.state,
        account=r.account,
        document=dict(r.document or {}),
        inputs=dict(r.inputs or {}),
        outputs=dict(r.outputs or {}),
        steps=dict(r.steps or {}),
        priority=r.priority,
        activity=r.activity,
        activity_rank=r.activity_rank,
        site=r.site,
        executor=r.executor,
        max_attempts=r.max_attempts,
        needs_advance=r.needs_advance,
        transformation_id=r.transformation_id,
        reason=r.reason,
        lease_owner=r.lease_owner,
        lease_expires_at=r.lease_expires_at,
        created_at=r.created_at,
        updated_at=r.updated_at,
        finished_at=r.finished_at,
    )


def list_workflows(
    session: Session,
    where: WorkflowFilter = WorkflowFilter(),
    page: PageRequest = PageRequest(),
) -> Page[WorkflowRecord]:
    """Workflows newest first."""
    stmt = select(WorkflowRow)
    if where.state is not None:
        stmt = stmt.where(WorkflowRow.state == workflow_state(where.state).value)
    if where.transformation_id is not None:
        stmt = stmt.where(WorkflowRow.transformation_id == where.transformation_id)
    rows = session.scalars(
        stmt.order_by(WorkflowRow.id.desc()).limit(page.limit).offset(page.offset)
    ).all()
    return _page(session, stmt, page, [_workflow(r) for r in rows])


def sibling_outputs(session: Session, did: DID) -> list[FileRef]:
    """The other outputs of the job(s) that wrote ``did``, by name: a quality report's page
    and plots, say (none if ``did`` names no file or no job wrote it)."""
    try:
        own = resolve.file_ref(session, did)
    except NotFound:
        return []
    job_ids = select(JobFileRow.job_id).where(
        JobFileRow.did_id == own.id, JobFileRow.role == "output"
    )
    stmt = select(JobFileRow.did_id).where(
        JobFileRow.job_id.in_(job_ids),
        JobFileRow.role == "output",
        JobFileRow.did_id != own.id,
    )
    found = resolve.with_files(session, stmt, JobFileRow.did_id, order_by_name=True)
    seen: dict[int, FileRef] = {}
    for _row, ref in found:
        seen.setdefault(ref.id, ref)
    return list(seen.values())
