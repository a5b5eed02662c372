"""Dashboard pages of the workload manager: jobs (``/ui/jobs``) and workflows (``/ui/workflows``).

The lists are the WMS's own listings (``WMS.jobs_page``/``WMS.workflows_page``: newest first,
filtered, paged, the same query as the REST API's), the detail pages read
``WMS.job``/``WMS.workflow``/``WMS.logs``, the same views ``dpps wms`` and the REST API show,
so a person in a browser sees what the catalog records. Pages only read.

Filters are query parameters checked here: an unknown state is the 400 page, never an empty
list that looks like "nothing failed".
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from dpps.bdms.types import PageRequest
from dpps.core.errors import DppsError, InvalidInput, NotFound
from dpps.core.identifiers import MAX_ACTIVITY_ID
from dpps.oms import svg
from dpps.oms.dashboard.common import ctx, error_page, html, login_redirect, viewer
from dpps.wms import stats
from dpps.wms.api import WMS
from dpps.wms.listings import JobFilter, WorkflowFilter, job_state, workflow_state
from dpps.wms.states import JobState, WorkflowState
from dpps.wms.types import JobInfo

router = APIRouter()

#: Rows per page of the job and workflow lists.
PAGE = 50
#: The end of a job's log shown on its page (the whole log: ``dpps wms logs ID``).
LOG_TAIL_CHARS = 20_000
JOB_STATES = tuple(s.value for s in JobState)
WORKFLOW_STATES = tuple(s.value for s in WorkflowState)
#: Largest id of a job or workflow (64-bit, migration 0008): bigger is "no such job", not a
#: database error.
MAX_ID = MAX_ACTIVITY_ID
MAX_ACTIVITY = 64


@dataclass(frozen=True, slots=True)
class JobLine:
    """One row of the job list: what the ``jobs`` table says, nothing computed elsewhere."""

    id: int
    name: str
    state: str
    activity: str
    software_version: str | None
    account: str
    site: str | None
    executor: str
    attempts: int
    max_attempts: int
    workflow_id: int | None
    step: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True, slots=True)
class WorkflowLine:
    id: int
    name: str
    state: str
    steps_done: int
    steps_total: int
    account: str
    activity: str
    created_at: dt.datetime
    finished_at: dt.datetime | None


def _state(value: str, what: str) -> str:
    """The state filter as typed ('' for none), checked by the WMS's own listing rules."""
    if not value.strip():
        return ""
    return (job_state(value) if what == "job" else workflow_state(value)).value


def _offset(value: int) -> int:
    return max(0, min(value, 10**9))


def parse_id(text: str, what: str) -> int:
    """A page's id from the URL: anything but a catalog-sized integer is "no such ..."."""
    if not text.isdigit() or int(text) > MAX_ID:
        raise NotFound(f"no {what} {text[:40]!r}")
    return int(text)


def duration(seconds: float | None) -> str:
    """``75.0`` -> ``1 min 15 s``: how long a job or workflow took, for people."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def job_line(j: JobInfo) -> JobLine:
    return JobLine(
        j.id,
        j.name,
        j.state,
        j.activity,
        j.software_version,
        j.account,
        j.run_site or j.site,
        j.executor,
        j.attempts,
        j.max_attempts,
        j.workflow_id,
        j.step,
        j.created_at,
        j.started_at,
        j.finished_at,
    )


def job_lines(
    wms: WMS, *, state: str, activity: str, limit: int, offset: int
) -> tuple[list[JobLine], int]:
    """The page of jobs newest first and how many match the filters in all."""
    where = JobFilter(state=state or None, activity=activity or None)
    page = wms.jobs_page(where, PageRequest(offset, limit))
    return [job_line(j) for j in page.items], page.total


def steps_done(steps: dict[str, Any]) -> int:
    return sum(1 for v in steps.values() if isinstance(v, dict) and v.get("state") == "DONE")


def workflow_lines(
    wms: WMS, *, state: str, limit: int, offset: int
) -> tuple[list[WorkflowLine], int]:
    page = wms.workflows_page(WorkflowFilter(state=state or None), PageRequest(offset, limit))
    lines = [
        WorkflowLine(
            r.id,
            r.name,
            r.state,
            steps_done(r.steps),
            len(r.steps),
            r.account,
            r.activity,
            r.created_at,
            r.finished_at,
        )
        for r in page.items
    ]
    return lines, page.total


@router.get("/jobs")
def jobs_page(request: Request, state: str = "", activity: str = "", offset: int = 0) -> Response:
    who = viewer(request)
    if who is None:
        return login_redirect(request)
    try:
        wanted = _state(state, "job")
        if len(activity) > MAX_ACTIVITY:
            raise InvalidInput(f"an activity has at most {MAX_ACTIVITY} characters")
    except InvalidInput as exc:
        return error_page(who, exc)
    offset = _offset(offset)
    wms = WMS(ctx(request).archive)
    rows, total = job_lines(wms, state=wanted, activity=activity, limit=PAGE, offset=offset)
    with wms.sessions() as s:
        by_state = stats.jobs_by_state(s)
        activities = stats.job_activities(s)
    return html(
        "dash/jobs.html",
        title="Jobs",
        active="jobs",
        who=who,
        rows=rows,
        total=total,
        by_state=by_state,
        state=wanted,
        states=JOB_STATES,
        activity=activity,
        activities=activities,
        offset=offset,
        limit=PAGE,
        duration=duration,
    )


@router.get("/jobs/{job_id}")
def job_page(request: Request, job_id: str) -> Response:
    who = viewer(request)
    if who is None:
        return login_redirect(request)
    wms = WMS(ctx(request).archive)
    try:
        number = parse_id(job_id, "job")
        info = wms.job(number)
        log = wms.logs(number)
    except DppsError as exc:
        return error_page(who, exc)
    account = info.account
    took = duration(
        (info.finished_at - info.started_at).total_seconds()
        if info.finished_at and info.started_at
        else None
    )
    return html(
        "dash/job.html",
        title=f"Job {info.id}",
        active="jobs",
        who=who,
        j=info,
        account=account,
        took=took,
        log=log[-LOG_TAIL_CHARS:],
        log_cut=len(log) > LOG_TAIL_CHARS,
    )


@router.get("/workflows")
def workflows_page(request: Request, state: str = "", offset: int = 0) -> Response:
    who = viewer(request)
    if who is None:
        return login_redirect(request)
    try:
        wanted = _state(state, "workflow")
    except InvalidInput as exc:
        return error_page(who, exc)
    offset = _offset(offset)
    wms = WMS(ctx(request).archive)
    rows, total = workflow_lines(wms, state=wanted, limit=PAGE, offset=offset)
    with wms.sessions() as s:
        by_state = stats.workflows_by_state(s)
    return html(
        "dash/workflows.html",
        title="Workflows",
        active="workflows",
        who=who,
        rows=rows,
        total=total,
        by_state=by_state,
        state=wanted,
        states=WORKFLOW_STATES,
        offset=offset,
        limit=PAGE,
    )


def steps_chart(steps: dict[str, Any]) -> Any:
    """A row per step, its bar as long as its job count, coloured by the step's state."""
    rows, colours = [], {}
    for i, (name, value) in enumerate(steps.items()):
        step = value if isinstance(value, dict) else {}
        jobs = step.get("jobs")
        rows.append((name, float(jobs) if isinstance(jobs, int | float) else 0.0))
        colours[name] = svg.colour(str(step.get("state", "")), i)
    return svg.hbar_chart(rows, title="steps: jobs per step, coloured by state", colours=colours)


@router.get("/workflows/{workflow_id}")
def workflow_page(request: Request, workflow_id: str) -> Response:
    who = viewer(request)
    if who is None:
        return login_redirect(request)
    wms = WMS(ctx(request).archive)
    try:
        number = parse_id(workflow_id, "workflow")
        info = wms.workflow(number)
    except DppsError as exc:
        return error_page(who, exc)
    account = info.account
    steps = {
        name: (value if isinstance(value, dict) else {}) for name, value in info.steps.items()
    }
    jobs_by_step: dict[str, list[Any]] = {}
    for job in info.jobs:
        jobs_by_step.setdefault(job.step or "", []).append(job)
    return html(
        "dash/workflow.html",
        title=f"Workflow {info.id}",
        active="workflows",
        who=who,
        w=info,
        account=account,
        steps=steps,
        done=steps_done(steps),
        jobs_by_step=jobs_by_step,
        chart=steps_chart(steps),
        duration=duration,
    )
