"""Read-only views of the WMS: job and workflow status, logs, accounting, transformations.

A mixin of ``WMS`` (it needs ``self.sessions`` and ``self.config``); reads use plain sessions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from dpps.bdms import resolve
from dpps.bdms.types import FileRef, Page, PageRequest
from dpps.catalog.models_wms import (
    JobEventRow,
    JobFileRow,
    JobRow,
    TransformationFileRow,
    TransformationRow,
    WorkflowRow,
)
from dpps.core.config import Config
from dpps.core.errors import InvalidInput, NotFound
from dpps.core.identifiers import DID
from dpps.wms import listings, transformations
from dpps.wms.listings import JobFilter, WorkflowFilter, WorkflowRecord
from dpps.wms.states import FileStatus, JobState
from dpps.wms.types import (
    AccountingRow,
    JobEventInfo,
    JobInfo,
    ProblematicFile,
    TransformationInfo,
    WorkflowInfo,
)

ACCOUNTING_KEYS = {
    "site": JobRow.run_site,
    "activity": JobRow.activity,
    "software_version": JobRow.software_version,
    "executor": JobRow.executor,
    "tool": JobRow.tool,
}


def job_info(
    row: JobRow,
    *,
    inputs: Sequence[str] = (),
    outputs: Sequence[str] = (),
    events: Sequence[JobEventInfo] = (),
) -> JobInfo:
    return JobInfo(
        id=row.id,
        name=row.name,
        state=row.state,
        tool=row.tool,
        activity=row.activity,
        priority=row.priority,
        site=row.site,
        run_site=row.run_site,
        host=row.host,
        executor=row.executor,
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        reason=row.reason,
        exit_code=row.exit_code,
        workflow_id=row.workflow_id,
        step=row.step,
        software_version=row.software_version,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        cpu_s=row.cpu_s,
        wall_s=row.wall_s,
        max_rss_mb=row.max_rss_mb,
        bytes_read=row.bytes_read,
        bytes_written=row.bytes_written,
        inputs=list(inputs),
        outputs=list(outputs),
        events=list(events),
        account=row.account,
    )


class Reports:
    sessions: sessionmaker[Session]
    config: Config

    # -- rows ------------------------------------------------------------------------------
    @staticmethod
    def _job_row(s: Session, job_id: int) -> JobRow:
        row = s.get(JobRow, job_id)
        if row is None:
            raise NotFound(f"no job {job_id}")
        return row

    @staticmethod
    def _workflow_row(s: Session, workflow_id: int) -> WorkflowRow:
        row = s.get(WorkflowRow, workflow_id)
        if row is None:
            raise NotFound(f"no workflow {workflow_id}")
        return row

    @staticmethod
    def _transformation_row(s: Session, name: str) -> TransformationRow:
        row = s.scalars(select(TransformationRow).where(TransformationRow.name == name)).first()
        if row is None:
            raise NotFound(f"no transformation named {name!r}")
        return row

    # -- jobs and workflows ----------------------------------------------------------------
    def job(self, job_id: int) -> JobInfo:
        with self.sessions() as s:
            row = self._job_row(s, job_id)
            files: dict[str, list[str]] = defaultdict(list)
            for (role,), ref in resolve.with_files(
                s,
                select(JobFileRow.role)
                .where(JobFileRow.job_id == job_id)
                .order_by(JobFileRow.port, JobFileRow.position),
                JobFileRow.did_id,
            ):
                files[role].append(ref.label)
            evs = [
                JobEventInfo(e.ts, e.state, e.attempt, e.account, e.reason, dict(e.details))
                for e in s.scalars(
                    select(JobEventRow)
                    .where(JobEventRow.job_id == job_id)
                    .order_by(JobEventRow.id)
                )
            ]
            return job_info(row, inputs=files["input"], outputs=files["output"], events=evs)

    def workflow(self, workflow_id: int) -> WorkflowInfo:
        with self.sessions() as s:
            row = self._workflow_row(s, workflow_id)
            jobs = [
                job_info(j)
                for j in s.scalars(
                    select(JobRow).where(JobRow.workflow_id == workflow_id).order_by(JobRow.id)
                )
            ]
            outputs = {k: _labels(v) for k, v in (row.outputs or {}).items()}
            return WorkflowInfo(
                id=row.id,
                name=row.name,
                state=row.state,
                reason=row.reason,
                activity=row.activity,
                priority=row.priority,
                executor=row.executor,
                transformation_id=row.transformation_id,
                steps=dict(row.steps or {}),
                outputs=outputs,
                created_at=row.created_at,
                finished_at=row.finished_at,
                jobs=jobs,
                account=row.account,
            )

    def list_jobs(
        self,
        *,
        state: str | None = None,
        workflow_id: int | None = None,
        site: str | None = None,
        activity: str | None = None,
        limit: int = 100,
    ) -> list[JobInfo]:
        """Jobs newest first (``dpps wms list``): the first page of ``jobs_page``."""
        return self.job_listing(
            state=state, workflow_id=workflow_id, site=site, activity=activity, limit=limit
        ).items

    def job_listing(
        self,
        *,
        state: str | None = None,
        workflow_id: int | None = None,
        site: str | None = None,
        activity: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Page[JobInfo]:
        """``list_jobs`` from ``offset``, with how many match in all (``dpps wms list``'s
        total and paging)."""
        where = JobFilter(state=state, workflow_id=workflow_id, site=site, activity=activity)
        return self.jobs_page(where, PageRequest(offset, limit))

    def jobs_page(
        self,
        where: JobFilter = JobFilter(),
        page: PageRequest = PageRequest(),
    ) -> Page[JobInfo]:
        """A page of jobs newest first and how many match (REST, dashboard)."""
        with self.sessions() as s:
            return listings.list_jobs(s, where, page)

    def workflows_page(
        self,
        where: WorkflowFilter = WorkflowFilter(),
        page: PageRequest = PageRequest(),
    ) -> Page[WorkflowRecord]:
        """A page of workflows newest first and how many match (REST, dashboard, scenarios)."""
        with self.sessions() as s:
            return listings.list_workflows(s, where, page)

    def output_siblings(self, did: DID) -> list[FileRef]:
        """The other outputs of the job(s) that wrote ``did``, by name (a QualPipe report's
        page and plots, for the dashboard)."""
        with self.sessions() as s:
            return listings.sibling_outputs(s, did)

    def logs(self, job_id: int) -> str:
        """The job's last attempt's output: the sandbox files if still there, else the tail
        kept in the catalog."""
        with self.sessions() as s:
            row = self._job_row(s, job_id)
            sandbox, tail = row.sandbox, row.log_tail
        if sandbox:
            parts = []
            for name in ("stdout.log", "stderr.log"):
                path = Path(sandbox) / name
                if path.is_file():
                    parts.append(
                        f"--- {name.split('.')[0]} ---\n"
                        + path.read_text(encoding="utf-8", errors="replace")
                    )
            if parts:
                return "".join(parts)
        return tail or ""

    # -- accounting ------------------------------------------------------------------------
    def accounting(
        self,
        by: Sequence[str] = ("site", "activity", "software_version"),
    ) -> list[AccountingRow]:
        """CPU, wall time, peak memory and bytes of jobs that ran, per group (all attempts)."""
        unknown = [k for k in by if k not in ACCOUNTING_KEYS]
        if unknown or not by:
            raise InvalidInput(
                f"cannot group by {unknown or 'nothing'}; use {', '.join(ACCOUNTING_KEYS)}"
            )
        cols = [ACCOUNTING_KEYS[k] for k in by]
        stmt = (
            select(
                *cols,
                func.count(),
                func.sum(_is(JobState.DONE)),
                func.sum(_is(JobState.FAILED)),
                func.sum(JobRow.cpu_s),
                func.sum(JobRow.wall_s),
                func.max(JobRow.max_rss_mb),
                func.sum(JobRow.bytes_read),
                func.sum(JobRow.bytes_written),
            )
            .where(JobRow.started_at.is_not(None))
            .group_by(*cols)
            .order_by(*cols)
        )
        with self.sessions() as s:
            rows = s.execute(stmt).all()
        n = len(cols)
        return [
            AccountingRow(
                key=dict(zip(by, r[:n], strict=True)),
                jobs=int(cast(int, r[n])),
                done=int(r[n + 1] or 0),
                failed=int(r[n + 2] or 0),
                cpu_hours=float(r[n + 3] or 0) / 3600,
                wall_hours=float(r[n + 4] or 0) / 3600,
                max_rss_mb=float(r[n + 5] or 0),
                bytes_read=int(r[n + 6] or 0),
                bytes_written=int(r[n + 7] or 0),
            )
            for r in rows
        ]

    # -- transformations -------------------------------------------------------------------
    def transformation(self, name: str) -> TransformationInfo:
        with self.sessions() as s:
            return _transformation_info(s, self._transformation_row(s, name), details=True)

    def transformations(self) -> list[TransformationInfo]:
        with self.sessions() as s:
            rows = s.scalars(select(TransformationRow).order_by(TransformationRow.id))
            return [_transformation_info(s, t, details=False) for t in rows]


def _is(state: JobState) -> Any:
    from sqlalchemy import case

    return case((JobRow.state == state.value, 1), else_=0)


def _labels(value: Any) -> Any:
    if isinstance(value, dict) and value.get("class") == "File":
        return value.get("did")
    if isinstance(value, list):
        return [_labels(v) for v in value]
    return value


def _transformation_info(s: Session, t: TransformationRow, *, details: bool) -> TransformationInfo:
    tasks = {
        state: int(n)
        for state, n in s.execute(
            select(WorkflowRow.state, func.count())
            .where(WorkflowRow.transformation_id == t.id)
            .group_by(WorkflowRow.state)
        )
    }
    problematic = []
    if details:
        stmt = select(TransformationFileRow.reason).where(
            TransformationFileRow.transformation_id == t.id,
            TransformationFileRow.status == FileStatus.PROBLEMATIC.value,
        )
        for (reason,), ref in resolve.with_files(
            s, stmt, TransformationFileRow.did_id, order_by_name=True
        ):
            problematic.append(ProblematicFile(ref.label, reason))
    return TransformationInfo(
        id=t.id,
        name=t.name,
        state=t.state,
        filter=t.filter,
        grouping=t.grouping,
        input_port=t.input_port,
        activity=t.activity,
        priority=t.priority,
        executor=t.executor,
        max_task_attempts=t.max_task_attempts,
        output_query=transformations.output_query(t.name),
        created_at=t.created_at,
        files=transformations.counts(s, t.id),
        tasks=tasks,
        problematic=problematic,
    )
