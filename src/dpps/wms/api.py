"""``WMS``: the one Python entry point to workload management (the CLI and REST are thin on it).

It wraps an ``Archive`` (configuration, catalog, storage) and owns the transactions of what it
does. Queries, accounting and transformation reports live in ``dpps.wms.reports``; the daemons
(job manager, transformation daemon) in ``dpps.wms.manager`` and ``dpps.wms.transformations``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from dpps.bdms.archive import Archive
from dpps.catalog.engine import transaction
from dpps.catalog.models_wms import JobRow, TransformationFileRow, TransformationRow, WorkflowRow
from dpps.core.clock import utcnow
from dpps.core.daemon import DaemonContext, new_instance_id
from dpps.core.errors import Conflict, InvalidInput, NotFound, Unavailable
from dpps.wms import jobs as job_repo
from dpps.wms import reports, transformations, workflows
from dpps.wms.binding import bind_inputs
from dpps.wms.builder import load_job, read_yaml, single_tool_workflow
from dpps.wms.campaigns import CampaignStore
from dpps.wms.executors import make_executor
from dpps.wms.manager import JobManager
from dpps.wms.spec import Tool, WorkflowSpec
from dpps.wms.states import (
    FINAL_JOB_STATES,
    FINAL_WORKFLOW_STATES,
    FileStatus,
    JobState,
    TransformationState,
    WorkflowState,
)
from dpps.wms.types import (
    AccountingRow,
    JobInfo,
    SubmitOptions,
    Submitted,
    TransformationInfo,
    WorkflowInfo,
)

Progress = Callable[[int, int], None]


class WMS(reports.Reports):
    """Workload management on one archive."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.config = archive.config
        self.sessions = archive.sessions
        self.account = archive.account

    @property
    def campaigns(self) -> CampaignStore:
        """The campaign records (what ``dpps campaign list/show`` and the dashboard read)."""
        return CampaignStore(self.sessions, self.account)

    # -- submission ------------------------------------------------------------------------
    def submit(
        self,
        path: Path,
        inputs: Path | Mapping[str, Any] | None = None,
        *,
        opts: SubmitOptions | None = None,
    ) -> Submitted:
        """A ``JOB.yaml`` becomes a job; a ``.cwl`` document a workflow on ``inputs``."""
        opts = opts or SubmitOptions()
        if path.suffix == ".cwl":
            from dpps.wms import cwl  # the CWL parser is heavy: only when a CWL file is given

            given = read_yaml(inputs, "inputs") if isinstance(inputs, Path) else (inputs or {})
            if not isinstance(given, Mapping):
                raise InvalidInput(f"{inputs}: the inputs must be a mapping of name: value")
            return self.submit_workflow(cwl.load(path), given, opts=opts)
        if inputs is not None:
            raise InvalidInput("--inputs belongs to a CWL workflow; a JOB.yaml holds its inputs")
        data = read_yaml(path, "job")
        if isinstance(data, Mapping) and "cwlVersion" in data:
            raise InvalidInput(f"{path} is a CWL document: give it a .cwl name")
        return self.submit_document(data, opts=opts, what=str(path.name))

    def submit_document(
        self, data: Any, *, opts: SubmitOptions | None = None, what: str = "job"
    ) -> Submitted:
        """A JOB.yaml document already read (a server receives the mapping, not the file);
        options given here win over the document's own, defaults do not."""
        opts = opts or SubmitOptions()
        if isinstance(data, Mapping) and "cwlVersion" in data:
            raise InvalidInput(f"{what} is a CWL document: submit it as a workflow")
        tool, values, job = load_job(data, what)
        merged = SubmitOptions(
            name=opts.name or job.name,
            priority=job.priority if opts.priority == 3 else opts.priority,
            activity=job.activity if opts.activity == "default" else opts.activity,
            site=opts.site or job.site,
            executor=opts.executor,
            max_attempts=opts.max_attempts or job.max_attempts,
        )
        return self.submit_job(tool, values, opts=merged, parameters=job.parameters)

    def submit_job(
        self,
        tool: Tool,
        values: Mapping[str, Any],
        *,
        opts: SubmitOptions | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> Submitted:
        opts = opts or SubmitOptions()
        with transaction(self.sessions) as s:
            bound = bind_inputs(
                s, tool.inputs, values, self.config.default_scope, f"job {tool.name}"
            )
            draft = job_repo.draft(
                tool,
                bound,
                opts_name=opts.name or tool.name,
                priority=opts.priority,
                activity=opts.activity,
                activity_rank=job_repo.activity_rank(self.config, opts.activity),
                site=self._site(opts.site),
                executor=self._executor(opts.executor),
                max_attempts=opts.max_attempts or self.config.wms.max_attempts,
                account=self.account,
                parameters=parameters,
            )
            (job_id,) = job_repo.create_jobs(s, [draft])
        return Submitted("job", job_id, draft.name)

    def submit_workflow(
        self,
        spec: WorkflowSpec,
        inputs: Mapping[str, Any],
        *,
        opts: SubmitOptions | None = None,
    ) -> Submitted:
        opts = opts or SubmitOptions()
        opts = SubmitOptions(
            opts.name,
            opts.priority,
            opts.activity,
            self._site(opts.site),
            self._executor(opts.executor),
            opts.max_attempts,
        )
        with transaction(self.sessions) as s:
            row = workflows.new_workflow(
                s, self.config, spec, inputs, opts=opts, account=self.account
            )
            s.flush()
            workflows.advance(s, self.config, [row], self.account)
            return Submitted("workflow", row.id, row.name)

    def _site(self, site: str | None) -> str | None:
        if site is not None and site not in self.config.sites:
            raise InvalidInput(
                f"unknown site {site!r} (sites: {', '.join(sorted(self.config.sites))})"
            )
        return site

    def _executor(self, name: str | None) -> str:
        from dpps.wms.executors import EXECUTORS

        chosen = name or self.config.wms.executor
        if chosen not in EXECUTORS:
            raise InvalidInput(f"unknown executor {chosen!r} (use {', '.join(EXECUTORS)})")
        return chosen

    # -- control ---------------------------------------------------------------------------
    def kill(self, job_id: int, reason: str | None = None) -> str:
        """KILL a job that has not finished; a running one stops at its next heartbeat."""
        with transaction(self.sessions) as s:
            job = self._job_row(s, job_id)
            if job.state in FINAL_JOB_STATES:
                raise Conflict(f"job {job_id} is {job.state} already")
            job_repo.set_state(
                s,
                job,
                JobState.KILLED,
                account=self.account,
                reason=reason or f"killed by {self.account}",
            )
            workflows.flag(s, [job.workflow_id])
            return job.state

    def kill_workflow(self, workflow_id: int, reason: str | None = None) -> int:
        with transaction(self.sessions) as s:
            row = self._workflow_row(s, workflow_id)
            if row.state in FINAL_WORKFLOW_STATES:
                raise Conflict(f"workflow {workflow_id} is {row.state} already")
            row.state = WorkflowState.KILLED.value
            row.reason = reason or f"killed by {self.account}"
            row.finished_at = utcnow()
            return workflows.kill_jobs(s, row.id, row.reason, self.account)

    def retry(self, job_id: int) -> None:
        """Run a FAILED or KILLED job again (attempts start over); reopens its workflow."""
        with transaction(self.sessions) as s:
            job = self._job_row(s, job_id)
            if job.state not in (JobState.FAILED, JobState.KILLED):
                raise Conflict(f"job {job_id} is {job.state}: only FAILED or KILLED jobs retry")
            job_repo.set_state(
                s,
                job,
                JobState.SUBMITTED,
                account=self.account,
                reason=f"retried by {self.account}",
                attempts=0,
                lease_owner=None,
                lease_expires_at=None,
                finished_at=None,
                not_before=None,
            )
            if job.workflow_id is not None:
                wf = self._workflow_row(s, job.workflow_id)
                if wf.state in (WorkflowState.FAILED, WorkflowState.KILLED):
                    wf.state, wf.reason, wf.finished_at = WorkflowState.RUNNING.value, None, None
                    steps = {k: dict(v) for k, v in wf.steps.items()}
                    if job.step in steps:
                        steps[job.step]["state"] = workflows.RUNNING
                    wf.steps = steps

    def retry_workflow(self, workflow_id: int) -> int:
        """Retry every FAILED or KILLED job of a workflow; returns how many."""
        with self.sessions() as s:
            ids = list(
                s.scalars(
                    select(JobRow.id).where(
                        JobRow.workflow_id == workflow_id,
                        JobRow.state.in_([JobState.FAILED.value, JobState.KILLED.value]),
                    )
                )
            )
        if not ids:
            raise Conflict(f"workflow {workflow_id} has no FAILED or KILLED job")
        for job_id in ids:
            self.retry(job_id)
        return len(ids)

    # -- transformations -------------------------------------------------------------------
    def add_transformation(
        self,
        name: str,
        template: WorkflowSpec | Tool | Path,
        *,
        filter_text: str = "",
        input_from: str | None = None,
        input_port: str | None = None,
        grouping: str = "file",
        inputs: Mapping[str, Any] | None = None,
        opts: SubmitOptions | None = None,
        settle_s: float = 0.0,
        max_task_attempts: int = 2,
    ) -> TransformationInfo:
        """A standing production over ``filter_text`` (and/or another one's outputs)."""
        opts = opts or SubmitOptions()
        from dpps.wms import cwl

        if isinstance(template, Path):
            spec = cwl.load(template)
        elif isinstance(template, Tool):
            spec = single_tool_workflow(template)
        else:
            spec = template
        filters = [f for f in (filter_text.strip(),) if f]
        if input_from is not None:
            with self.sessions() as s:
                if (
                    s.scalar(
                        select(TransformationRow.id).where(TransformationRow.name == input_from)
                    )
                    is None
                ):
                    raise NotFound(f"no transformation named {input_from!r}")
            filters.insert(0, transformations.output_query(input_from))
        if not filters:
            raise InvalidInput("a transformation needs a filter or input_from")
        text = " and ".join(f"({f})" for f in filters)
        files = [p for p in spec.inputs if p.is_file]
        port = input_port or (files[0].name if len(files) == 1 else None)
        if port is None:
            raise InvalidInput(
                f"workflow {spec.name} has {len(files)} File inputs: name the "
                "one the files go to (input_port)"
            )
        with transaction(self.sessions) as s:
            transformations.add(
                s,
                self.config,
                name=name,
                spec=spec,
                filter_text=text,
                input_port=port,
                grouping=grouping,
                inputs=inputs or {},
                opts=SubmitOptions(
                    opts.name,
                    opts.priority,
                    opts.activity,
                    self._site(opts.site),
                    self._executor(opts.executor),
                ),
                settle_s=settle_s,
                max_task_attempts=max_task_attempts,
                account=self.account,
            )
        return self.transformation(name)

    def set_transformation_state(self, name: str, state: TransformationState) -> None:
        with transaction(self.sessions) as s:
            self._transformation_row(s, name).state = state.value

    def retry_problematic(self, name: str) -> int:
        """Give a transformation's PROBLEMATIC files another round of tasks (UC-100-1.4)."""
        with transaction(self.sessions) as s:
            t = self._transformation_row(s, name)
            rows = list(
                s.scalars(
                    select(TransformationFileRow).where(
                        TransformationFileRow.transformation_id == t.id,
                        TransformationFileRow.status == FileStatus.PROBLEMATIC.value,
                    )
                )
            )
            for tf in rows:
                tf.status, tf.attempts, tf.reason, tf.workflow_id = (
                    FileStatus.NEW.value,
                    0,
                    None,
                    None,
                )
            return len(rows)

    # -- running in this process -----------------------------------------------------------
    def manager(self, executor: str | None = None, *, scheduler: str | None = None) -> JobManager:
        name = self._executor(executor)
        return JobManager(
            self.config, self.sessions, make_executor(name, self.config, scheduler=scheduler)
        )

    def run_until(
        self,
        finished: Callable[[], bool],
        *,
        executor: str | None = None,
        scheduler: str | None = None,
        timeout_s: float = 3600.0,
        with_transformations: bool = False,
        tick: Callable[[], None] | None = None,
        manager: JobManager | None = None,
    ) -> None:
        """Drive a job manager (and the transformation daemon) here until ``finished()``."""
        own = manager is None
        mgr = manager or self.manager(executor, scheduler=scheduler)
        owner = new_instance_id()
        ctx = DaemonContext("wms-manager", instance=owner)
        deadline = time.monotonic() + timeout_s
        try:
            while not finished():
                done = mgr.run_once(ctx)
                if with_transformations:
                    done += transformations.one_pass(self.sessions, self.config, owner)
                if tick is not None:
                    tick()
                if time.monotonic() > deadline:
                    raise Unavailable(f"still running after {timeout_s:.0f} s")
                if not done:
                    time.sleep(0.05)
        finally:
            if own:
                mgr.close()

    def wait(
        self,
        submitted: Submitted,
        *,
        run: bool = True,
        executor: str | None = None,
        scheduler: str | None = None,
        timeout_s: float = 3600.0,
        progress: Progress | None = None,
    ) -> str:
        """Until the job or workflow is final; with ``run`` this process runs its jobs.

        Returns the final state. Without ``run`` a manager elsewhere must be running.
        """

        def state() -> tuple[str, int, int]:
            with self.sessions() as s:
                if submitted.kind == "job":
                    job = self._job_row(s, submitted.id)
                    return job.state, int(job.state in FINAL_JOB_STATES), 1
                wf = self._workflow_row(s, submitted.id)
                total = int(s.scalar(select(func.count()).where(JobRow.workflow_id == wf.id)) or 0)
                final = int(
                    s.scalar(
                        select(func.count()).where(
                            JobRow.workflow_id == wf.id,
                            JobRow.state.in_([x.value for x in FINAL_JOB_STATES]),
                        )
                    )
                    or 0
                )
                return wf.state, final, total

        def finished() -> bool:
            current, done, total = state()
            if progress is not None:
                progress(done, total)
            final = FINAL_JOB_STATES if submitted.kind == "job" else FINAL_WORKFLOW_STATES
            return current in final

        if run:
            self.run_until(finished, executor=executor, scheduler=scheduler, timeout_s=timeout_s)
        else:
            deadline = time.monotonic() + timeout_s
            while not finished():
                if time.monotonic() > deadline:
                    raise Unavailable(
                        f"{submitted.kind} {submitted.id} still running after {timeout_s:.0f} s"
                    )
                time.sleep(0.5)
        return state()[0]


__all__ = [
    "WMS",
    "AccountingRow",
    "JobInfo",
    "Submitted",
    "TransformationInfo",
    "WorkflowInfo",
    "WorkflowRow",
]
