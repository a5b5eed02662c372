"""Workflow runs: binding a DAG's inputs, then turning each step into jobs once its inputs exist.

A step becomes jobs only when every step it reads from is DONE, so a job's inputs are always
files already registered in the archive (outputs travel through the archive, never through an
executor). A scattered step becomes one job per element. The manager calls ``advance`` for
workflows flagged ``needs_advance`` (set whenever one of their jobs finishes), in the same
transaction that creates the jobs, so a killed manager never creates a step's jobs twice.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

from sqlalchemy import Table, select, update
from sqlalchemy.orm import Session

from dpps.bdms import resolve
from dpps.catalog.models_wms import JobFileRow, JobRow, TransformationRow, WorkflowRow
from dpps.core.clock import utcnow
from dpps.core.config import Config
from dpps.core.errors import InvalidInput
from dpps.wms import jobs as job_repo
from dpps.wms.binding import bind_inputs, bind_value, file_value
from dpps.wms.spec import Step, WorkflowSpec
from dpps.wms.states import FINAL_JOB_STATES, JobState, WorkflowState
from dpps.wms.types import SubmitOptions

PENDING, RUNNING, DONE, FAILED = "PENDING", "RUNNING", "DONE", "FAILED"


@lru_cache(maxsize=64)
def _spec_from_json(document: str) -> WorkflowSpec:
    return WorkflowSpec.model_validate_json(document)


def spec_of(session: Session, row: WorkflowRow) -> WorkflowSpec:
    """A transformation's tasks share its document instead of storing thousands of copies."""
    document = row.document
    if not document and row.transformation_id is not None:
        parent = session.get(TransformationRow, row.transformation_id)
        document = parent.document if parent is not None else {}
    return _spec_from_json(json.dumps(document, sort_keys=True))


def workflow_values(
    session: Session,
    config: Config,
    spec: WorkflowSpec,
    given: Mapping[str, Any],
    *,
    opts: SubmitOptions,
    account: str,
    transformation_id: int | None = None,
) -> dict[str, Any]:
    """Check and bind the inputs: the column values of a new RUNNING workflow."""
    values = bind_inputs(
        session, spec.inputs, given, config.default_scope, f"workflow {spec.name}"
    )
    now = utcnow()
    return {
        "name": (opts.name or spec.name)[:256],
        "state": WorkflowState.RUNNING.value,
        "account": account,
        "document": spec.model_dump(mode="json") if transformation_id is None else {},
        "inputs": values,
        "outputs": {},
        "steps": {s.name: {"state": PENDING, "jobs": 0} for s in spec.steps},
        "priority": opts.priority,
        "activity": opts.activity,
        "activity_rank": job_repo.activity_rank(config, opts.activity),
        "site": opts.site,
        "executor": opts.executor or config.wms.executor,
        "max_attempts": opts.max_attempts or config.wms.max_attempts,
        "needs_advance": True,
        "transformation_id": transformation_id,
        "created_at": now,
        "updated_at": now,
    }


def new_workflow(
    session: Session,
    config: Config,
    spec: WorkflowSpec,
    given: Mapping[str, Any],
    *,
    opts: SubmitOptions,
    account: str,
    transformation_id: int | None = None,
) -> WorkflowRow:
    """A RUNNING workflow in the session (its jobs come with ``advance``)."""
    row = WorkflowRow(
        **workflow_values(
            session,
            config,
            spec,
            given,
            opts=opts,
            account=account,
            transformation_id=transformation_id,
        )
    )
    session.add(row)
    return row


def insert_workflows(session: Session, values: Sequence[Mapping[str, Any]]) -> list[WorkflowRow]:
    """Many new workflows in one statement (a transformation's tasks), loaded back as rows."""
    if not values:
        return []
    table: Table = WorkflowRow.__table__  # type: ignore[assignment]
    stmt = table.insert().returning(table.c.id, sort_by_parameter_order=True)
    ids = list(session.scalars(stmt, list(values)))
    rows = {r.id: r for r in session.scalars(select(WorkflowRow).where(WorkflowRow.id.in_(ids)))}
    return [rows[i] for i in ids]


def _outputs_of(session: Session, job_ids: Sequence[int]) -> dict[int, dict[str, list[Any]]]:
    """job id -> output port -> File objects in position order."""
    found: dict[int, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    if not job_ids:
        return found
    stmt = (
        select(JobFileRow.job_id, JobFileRow.port)
        .where(JobFileRow.job_id.in_(job_ids), JobFileRow.role == "output")
        .order_by(JobFileRow.job_id, JobFileRow.port, JobFileRow.position)
    )
    for (job_id, port), ref in resolve.with_files(session, stmt, JobFileRow.did_id):
        found[job_id][port].append(file_value(ref))
    return found


class _Run:
    """One workflow's state while advancing it: its steps' jobs and their outputs."""

    def __init__(
        self, session: Session, row: WorkflowRow, jobs: Sequence[JobRow], spec: WorkflowSpec
    ) -> None:
        self.session = session
        self.row = row
        self.spec = spec
        self.jobs: dict[str, list[JobRow]] = defaultdict(list)
        for job in jobs:
            self.jobs[job.step or ""].append(job)
        self._outputs: dict[int, dict[str, list[Any]]] | None = None

    def step_output(self, step: Step, port: str) -> Any:
        if self._outputs is None:
            done = [j.id for js in self.jobs.values() for j in js if j.state == JobState.DONE]
            self._outputs = _outputs_of(self.session, done)
        array = next(o.array for o in step.tool.outputs if o.name == port)
        per_job = []
        for job in sorted(self.jobs[step.name], key=lambda j: j.scatter_index or 0):
            files = self._outputs.get(job.id, {}).get(port, [])
            per_job.append(files if array else (files[0] if files else None))
        if step.scatter:
            return per_job
        if not per_job:
            return [] if step.scatter or array else None
        return per_job[0]

    def source(self, src: str) -> Any:
        if "/" not in src:
            return self.row.inputs.get(src)
        step_name, port = src.split("/", 1)
        return self.step_output(self.spec.step(step_name), port)


def _step_values(run: _Run, step: Step, config: Config) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for port in step.tool.inputs:
        binding = step.inputs.get(port.name)
        value = None
        if binding is not None and binding.source:
            found = [run.source(s) for s in binding.source]
            if len(found) == 1:
                value = found[0]
            else:
                value = [x for v in found for x in (v if isinstance(v, list) else [v])]
        if value is None and binding is not None:
            value = binding.default
        values[port.name] = value
    return values


def _scatter(step: Step, values: Mapping[str, Any]) -> list[dict[str, Any]]:
    if not step.scatter:
        return [dict(values)]
    lists = []
    for port in step.scatter:
        value = values.get(port)
        if not isinstance(value, list):
            raise InvalidInput(f"step {step.name}: scatter input {port!r} is not a list")
        lists.append(value)
    if step.scatter_method == "dotproduct":
        if len({len(v) for v in lists}) > 1:
            raise InvalidInput(
                f"step {step.name}: dotproduct scatter over lists of "
                f"different lengths {[len(v) for v in lists]}"
            )
        combos: list[tuple[Any, ...]] = list(zip(*lists, strict=True))
    else:
        combos = list(itertools.product(*lists))
    return [{**values, **dict(zip(step.scatter, combo, strict=True))} for combo in combos]


def _drafts(run: _Run, step: Step, config: Config) -> list[job_repo.JobDraft]:
    """The step's jobs; they belong to the workflow's account (accounting, the outputs' owner),
    whoever advances the workflow (the manager, as ``wms``)."""
    row = run.row
    values = _step_values(run, step, config)
    drafts = []
    for index, element in enumerate(_scatter(step, values)):
        bound = {
            p.name: bind_value(
                run.session, p, element.get(p.name), config.default_scope, f"step {step.name}"
            )
            for p in step.tool.inputs
        }
        drafts.append(
            job_repo.draft(
                step.tool,
                bound,
                opts_name=f"{row.name}.{step.name}" + (f"[{index}]" if step.scatter else ""),
                priority=row.priority,
                activity=row.activity,
                activity_rank=row.activity_rank,
                site=row.site,
                executor=row.executor,
                max_attempts=row.max_attempts,
                account=row.account,
                workflow_id=row.id,
                step=step.name,
                scatter_index=index if step.scatter else None,
            )
        )
    return drafts


def advance(session: Session, config: Config, rows: Sequence[WorkflowRow], account: str) -> int:
    """Create the jobs of every step that became ready; settle steps and workflows.

    Returns the number of jobs created. A workflow fails as soon as one of its jobs is FAILED
    or KILLED for good; its jobs that did not start yet are then KILLED too.
    """
    running = [r for r in rows if r.state == WorkflowState.RUNNING]
    if not running:
        return 0
    by_wf: dict[int, list[JobRow]] = defaultdict(list)
    for job in session.scalars(
        select(JobRow).where(JobRow.workflow_id.in_([r.id for r in running]))
    ):
        by_wf[job.workflow_id or 0].append(job)
    created = 0
    pending_drafts: list[job_repo.JobDraft] = []
    specs: dict[int, WorkflowSpec] = {}  # a transformation's tasks share one document
    for row in running:
        row.needs_advance = False
        shared = row.transformation_id if not row.document else None
        if shared is None or shared not in specs:
            spec = spec_of(session, row)
            if shared is not None:
                specs[shared] = spec
        run = _Run(session, row, by_wf.get(row.id, []), specs.get(shared or -1) or spec)
        steps = {k: dict(v) for k, v in (row.steps or {}).items()}
        failure = None
        for step in run.spec.order():
            state = steps.get(step.name, {}).get("state", PENDING)
            jobs = run.jobs.get(step.name, [])
            if state == RUNNING:
                bad = [j for j in jobs if j.state in (JobState.FAILED, JobState.KILLED)]
                if bad:
                    steps[step.name]["state"] = FAILED
                    failure = f"step {step.name}: job {bad[0].id} {bad[0].state}: {bad[0].reason}"
                elif all(j.state == JobState.DONE for j in jobs):
                    steps[step.name]["state"] = DONE
            if steps[step.name]["state"] == PENDING and failure is None:
                upstream = step.upstream()
                if all(steps[u]["state"] == DONE for u in upstream):
                    try:
                        drafts = _drafts(run, step, config)
                    except InvalidInput as exc:
                        failure = f"step {step.name}: {exc}"
                        steps[step.name]["state"] = FAILED
                        continue
                    steps[step.name] = {"state": RUNNING if drafts else DONE, "jobs": len(drafts)}
                    pending_drafts.extend(drafts)
                    created += len(drafts)
        row.steps = steps
        if failure is not None:
            _finish(session, row, WorkflowState.FAILED, failure, account)
        elif all(s["state"] == DONE for s in steps.values()):
            row.outputs = {name: run.source(src) for name, src in run.spec.outputs.items()}
            _finish(session, row, WorkflowState.DONE, None, account)
    job_repo.create_jobs(session, pending_drafts)
    return created


def _finish(
    session: Session, row: WorkflowRow, state: WorkflowState, reason: str | None, account: str
) -> None:
    row.state = state.value
    row.reason = reason
    row.finished_at = utcnow()
    if state != WorkflowState.DONE:
        kill_jobs(session, row.id, f"workflow {row.id} {state.value.lower()}: {reason}", account)


def kill_jobs(session: Session, workflow_id: int, reason: str, account: str) -> int:
    """KILL the workflow's jobs that are not final; running workers notice at their next
    heartbeat and stop, registering nothing."""
    victims = list(
        session.scalars(
            select(JobRow).where(
                JobRow.workflow_id == workflow_id,
                JobRow.state.not_in([s.value for s in FINAL_JOB_STATES]),
            )
        )
    )
    for job in victims:
        job_repo.set_state(session, job, JobState.KILLED, account=account, reason=reason)
    return len(victims)


def flag(session: Session, workflow_ids: Sequence[int | None]) -> None:
    """Ask the manager to look at these workflows again (one of their jobs finished)."""
    ids = sorted({w for w in workflow_ids if w is not None})
    if ids:
        session.execute(
            update(WorkflowRow)
            .where(WorkflowRow.id.in_(ids), WorkflowRow.state == WorkflowState.RUNNING.value)
            .values(needs_advance=True)
            .execution_options(synchronize_session=False)
        )
