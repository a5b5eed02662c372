"""The worker side of a job: take it, stage inputs, run the tool in a sandbox, report.

``run_task`` runs wherever an executor puts it (a local pool process, a Dask worker thread). It
talks to the catalog itself: it takes the job (MATCHED -> RUNNING) only if its lease token
still owns it, renews the lease with heartbeats while the tool runs, and ends the attempt with
one guarded transaction. If the token stops owning the job (killed, or the manager declared the
worker stalled and rescheduled the job), the tool is stopped and nothing is registered.

Inputs are read in place when the worker's site holds an AVAILABLE disk replica on a local
filesystem (no copy), otherwise downloaded and verified through the archive's retrieval.

A worker of a remote site has a workspace of its own: its ``dpps.yaml`` names its own storage
as local paths and the other sites' as URLs, and the manager's workspace path may not exist
there. Started with ``DPPS_WORKER_WORKSPACE`` set, it uses that workspace for every job
instead of the one the task names (the manager's).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from dpps.bdms import availability, registration
from dpps.bdms.archive import Archive
from dpps.catalog.engine import transaction
from dpps.catalog.models_wms import JobRow, TransformationRow, WorkflowRow
from dpps.core.clock import utcnow
from dpps.core.errors import DppsError, Unavailable
from dpps.core.identifiers import parse_did
from dpps.core.states import RSEKind
from dpps.storage.rse import StorageElement
from dpps.wms import jobs as job_repo
from dpps.wms import outputs, process, renewer, settlement
from dpps.wms.executors.base import Task
from dpps.wms.expressions import evaluate, expand_argv
from dpps.wms.spec import iter_files
from dpps.wms.states import JobState
from dpps.wms.worker_context import WORKER_WORKSPACE_ENV, WorkerContext, context

log = logging.getLogger("dpps.wms.runner")


@dataclass(frozen=True)
class JobView:
    """The job as the worker took it."""

    id: int
    account: str
    tool: str
    spec: dict[str, Any]
    parameters: dict[str, Any]
    software_version: str | None
    config_hash: str
    workflow_id: int | None
    step: str | None
    scatter_index: int | None
    cores: int
    memory_mb: int
    transformation: str | None


def _take(ctx: WorkerContext, tasks: Sequence[Task]) -> dict[int, JobView]:
    """Take the jobs the tasks' tokens still own (MATCHED -> RUNNING), all in one transaction;
    a job another attempt owns now is left out."""
    now = utcnow()
    lease = dt.timedelta(seconds=ctx.config.wms.lease_s)
    host = socket.gethostname()
    c = JobRow.__table__.c
    cols = (
        c.account,
        c.tool,
        c.spec,
        c.parameters,
        c.software_version,
        c.config_hash,
        c.workflow_id,
        c.step,
        c.scatter_index,
        c.cores,
        c.memory_mb,
    )
    events = {
        task.job_id: {
            "state": JobState.RUNNING.value,
            "attempt": task.attempt,
            "account": "wms",
            "details": {
                "host": host,
                "site": task.site,
                "executor": task.executor,
                "pid": os.getpid(),
            },
        }
        for task in tasks
    }
    with transaction(ctx.sessions, serialise_on_sqlite=True) as s:
        taken = job_repo.guarded_take(
            s,
            [(task.job_id, task.token) for task in tasks],
            {
                "state": JobState.RUNNING.value,
                "started_at": now,
                "heartbeat_at": now,
                "lease_expires_at": now + lease,
                "host": host,
                "run_site": tasks[0].site,  # a bundle is one site's
                "reason": None,
            },
            cols,
            events,
        )
        workflow_ids = {job.workflow_id for job in taken.values()} - {None}
        names: dict[int, str] = {}
        if workflow_ids:
            rows = s.execute(
                select(WorkflowRow.id, TransformationRow.name)
                .join(TransformationRow, WorkflowRow.transformation_id == TransformationRow.id)
                .where(WorkflowRow.id.in_(workflow_ids))
            ).all()
            names = {workflow_id: name for workflow_id, name in rows}
        return {
            job_id: JobView(
                job_id,
                job.account,
                job.tool,
                dict(job.spec),
                dict(job.parameters),
                job.software_version,
                job.config_hash,
                job.workflow_id,
                job.step,
                job.scatter_index,
                job.cores,
                job.memory_mb,
                names.get(job.workflow_id) if job.workflow_id is not None else None,
            )
            for job_id, job in taken.items()
        }


def _stage(
    ctx: WorkerContext, view: JobView, task: Task, indir: Path
) -> tuple[dict[str, Any], int]:
    """Local paths for every File input: in place at the worker's site, else downloaded."""
    config = ctx.config
    archive: Archive | None = None  # the front door, opened for the first download only
    staged: dict[str, Any] = {}
    total = 0
    for port, value in view.spec["inputs"].items():
        files = list(iter_files(value))
        if not files:
            staged[port] = value
            continue
        done = []
        for pos, f in enumerate(files):
            path = _direct(ctx, f, task.site)
            if path is None:
                dest = indir / port / str(pos)
                dest.mkdir(parents=True, exist_ok=True)
                did = parse_did(f["did"], config.default_scope)
                if archive is None:
                    archive = Archive(config, account=view.account, engine=ctx.engine)
                report = archive.get([did], dest)
                if report.failed:
                    raise Unavailable(f"input {f['did']}: {report.failed[0].error}")
                path = Path(report.results[0].path or "")
            total += int(f.get("size") or path.stat().st_size)
            done.append({**f, "path": str(path), "dirname": str(path.parent)})
        staged[port] = done if isinstance(value, list) else done[0]
    return staged, total


def _direct(ctx: WorkerContext, f: dict[str, Any], site: str | None) -> Path | None:
    if site is None:
        return None
    with ctx.sessions() as s:
        readable = availability.readable_replicas(s, ctx.config, int(f["did_id"]))
    for info in readable:
        if info.site != site or info.kind != RSEKind.DISK.value:
            continue
        storage = StorageElement.from_config(info.rse, ctx.config)
        if storage.is_local:
            path = Path(storage.resolve(info.path))
            if path.is_file():
                return path
    return None


def run_task(task: Task) -> dict[str, Any]:
    """Run one attempt of a job; returns a short summary (the catalog holds the truth)."""
    return run_tasks([task])[0]


def run_tasks(tasks: Sequence[Task]) -> list[dict[str, Any]]:
    """Run one attempt of each job of a bundle (one site's short jobs), one after the other.

    The bundle is taken in one transaction and its successful jobs are settled in one (with
    their outputs), so a short job costs a fraction of two transactions; each job keeps its own
    lease (renewed until it is settled), token, retries and failure handling. A worker that
    dies mid-bundle leaves its jobs RUNNING with leases that expire: the manager reschedules
    each, and a job whose tool ran but was not settled runs again (never registers twice).
    """
    if not tasks:
        return []
    ctx = context(os.environ.get(WORKER_WORKSPACE_ENV) or tasks[0].workspace)
    views = _take(ctx, tasks)
    held = {t.job_id: renewer.RENEWER.hold(ctx, t) for t in tasks if t.job_id in views}
    status = {t.job_id: "lost" for t in tasks if t.job_id not in views}
    done: list[settlement.Done] = []
    try:
        for task in tasks:
            if task.job_id in views:
                outcome = _execute(ctx, task, views[task.job_id], held[task.job_id])
                if isinstance(outcome, settlement.Done):
                    done.append(outcome)
                else:
                    status[task.job_id] = outcome
                    renewer.RENEWER.release(held.pop(task.job_id))
    finally:
        # What ran is settled even if a later job of the bundle raised.
        status.update(settlement.settle(ctx, done))
        for beat in held.values():
            renewer.RENEWER.release(beat)
    # The workflow tells the manager that a step may have become ready (no polling for it).
    return [
        {
            "job_id": t.job_id,
            "status": status[t.job_id],
            "workflow_id": views[t.job_id].workflow_id if t.job_id in views else None,
        }
        for t in tasks
    ]


def _execute(
    ctx: WorkerContext, task: Task, view: JobView, beat: renewer.Held
) -> str | settlement.Done:
    """Run the tool; a failed attempt is ended here, a successful one is returned to settle."""
    config = ctx.config
    root = Path(config.wms.sandbox)
    root = root if root.is_absolute() else config.workspace / root
    sandbox = root / f"job_{task.job_id}.a{task.attempt}.{uuid.uuid4().hex[:6]}"
    spec = view.spec
    # The sandbox itself is the tool's TMPDIR; a tool whose files nobody collects (no outputs,
    # no captured stdout or stderr) also runs in it: one directory less to make and remove.
    collects = spec.get("python") or spec["outputs"] or spec.get("stdout") or spec.get("stderr")
    outdir, tmpdir = (sandbox / "out" if collects else sandbox), sandbox
    try:
        sandbox.mkdir()
    except FileNotFoundError:  # the first job of a new workspace
        sandbox.mkdir(parents=True)
    if outdir != sandbox:
        outdir.mkdir()
    stdout_log, stderr_log = sandbox / "stdout.log", sandbox / "stderr.log"
    started = utcnow()
    base: dict[str, Any] = {"sandbox": str(sandbox)}
    try:
        inputs, read = _stage(ctx, view, task, sandbox / "in")
    except DppsError as exc:
        return settlement.end_attempt(
            ctx,
            task,
            f"input staging failed: {exc}",
            retry=True,
            values={**base, **settlement.accounting(None, 0, 0)},
        )
    runtime = {
        "outdir": str(outdir),
        "tmpdir": str(tmpdir),
        "cores": view.cores,
        "ram": view.memory_mb,
    }
    job_info = {
        "id": view.id,
        "attempt": task.attempt,
        "workflow": view.workflow_id,
        "step": view.step,
        "scatter_index": view.scatter_index,
    }
    tctx = {"inputs": inputs, "runtime": runtime, "parameters": view.parameters, "job": job_info}
    try:
        argv = _argv(spec, view, tctx, sandbox)
        out_target = outdir / str(evaluate(spec["stdout"], tctx)) if spec.get("stdout") else None
        err_target = outdir / str(evaluate(spec["stderr"], tctx)) if spec.get("stderr") else None
    except DppsError as exc:
        return settlement.end_attempt(
            ctx, task, f"cannot build the command line: {exc}", retry=False, values=base
        )
    env = {
        **os.environ,
        **spec.get("env", {}),
        "TMPDIR": str(tmpdir),
        "HOME": str(tmpdir),
        "DPPS_JOB_ID": str(view.id),
        "DPPS_JOB_ATTEMPT": str(task.attempt),
    }
    result = process.run(
        argv,
        cwd=outdir,
        env=env,
        stdout=out_target or stdout_log,
        stderr=err_target or stderr_log,
        stop=beat.lost,
    )
    log_tail = _logs(stdout_log, stderr_log)
    if beat.lost.is_set() or result.stopped or not result.ok:
        values = {**base, "log_tail": log_tail, **settlement.accounting(result, read, 0)}
    if beat.lost.is_set() or result.stopped:
        return settlement.end_attempt(ctx, task, "stopped", retry=True, values=values)
    if not result.ok:
        status = settlement.end_attempt(
            ctx, task, f"tool failed: {result.describe()}", retry=True, values=values
        )
        settlement.cleanup(config, sandbox, failed=True)
        return status
    return _outputs(ctx, task, view, tctx, argv, sandbox, result, read, log_tail, started)


def _argv(spec: dict[str, Any], view: JobView, tctx: dict[str, Any], sandbox: Path) -> list[str]:
    if spec.get("python"):
        import json

        ctx_file = sandbox / "tool.json"
        ctx_file.write_text(
            json.dumps(
                {
                    "tool": spec["python"],
                    "inputs": tctx["inputs"],
                    "parameters": view.parameters,
                    "outdir": tctx["runtime"]["outdir"],
                }
            )
        )
        return [sys.executable, "-m", "dpps.wms.pytool", str(ctx_file)]
    return expand_argv(spec["argv"], tctx)


def _logs(stdout_log: Path, stderr_log: Path) -> str:
    out, err = process.tail(stdout_log, 8192), process.tail(stderr_log, 8192)
    return f"--- stdout ---\n{out}--- stderr ---\n{err}"


def _outputs(
    ctx: WorkerContext,
    task: Task,
    view: JobView,
    tctx: dict[str, Any],
    argv: list[str],
    sandbox: Path,
    result: process.ProcessResult,
    read: int,
    log_tail: str,
    started: dt.datetime,
) -> str | settlement.Done:
    """Upload and prepare the outputs (outside any transaction: the heavy part)."""
    config = ctx.config
    base = {"sandbox": str(sandbox), "log_tail": log_tail}
    try:
        produced = outputs.collect(
            config, view.spec["outputs"], Path(tctx["runtime"]["outdir"]), tctx, view.id, task.site
        )
        outputs.upload(config, produced, view.id, task.attempt, task.token)
    except DppsError as exc:
        return settlement.end_attempt(
            ctx,
            task,
            f"outputs: {exc}",
            retry=True,
            values={**base, **settlement.accounting(result, read, 0)},
        )
    written = sum(p.size for p in produced)
    times = {"started_at": started.isoformat(), "finished_at": utcnow().isoformat()}
    prov: dict[str, Any] = {}
    if produced:  # the record goes with each output; without outputs nobody reads it
        prov = outputs.provenance(
            view,
            task,
            view.spec["inputs"],
            times,
            None if view.spec.get("python") else argv,
            outdir=Path(tctx["runtime"]["outdir"]),
        )
    try:
        files: list[registration.NewFile] = []
        if produced:  # a job without outputs has nothing to prepare: no catalog read
            # The heavy part (a full read of each output for its metadata) before the lock.
            with ctx.sessions() as s:
                rse_ids = registration.rse_ids(s)
            files = outputs.prepare(config, produced, prov, rse_ids)
    except DppsError as exc:
        outputs.discard(config, produced)
        return settlement.end_attempt(
            ctx,
            task,
            f"registration failed: {exc}",
            retry=True,
            values={**base, **settlement.accounting(result, read, 0)},
        )
    return settlement.Done(task, view, sandbox, base, result, read, written, produced, files, prov)
