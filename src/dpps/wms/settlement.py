"""The end of a worker's attempt: a bundle's successful jobs settled DONE together, a failed
attempt ended alone.

Settling is the part of a short job's bookkeeping that is paid per job, so its statement is
built once per process with bound parameters (building the UPDATE with each job's accounting
as SQL expressions cost about as much as running it). Jobs without outputs are marked DONE by
one executemany of that statement; a job with outputs is marked and registered in a savepoint
of its own. Every UPDATE stays guarded by the job's lease token and RUNNING state, so a job
another attempt owns now is never settled by this one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, bindparam, case, select, tuple_, update
from sqlalchemy.orm import Session

from dpps.bdms import registration
from dpps.catalog.engine import transaction
from dpps.catalog.models_wms import JobRow
from dpps.core.clock import utcnow
from dpps.core.config import Config
from dpps.core.errors import Conflict, DppsError
from dpps.wms import jobs as job_repo
from dpps.wms import outputs, process, renewer, workflows
from dpps.wms.executors.base import Task
from dpps.wms.states import JobState

if TYPE_CHECKING:
    from dpps.wms.runner import JobView
    from dpps.wms.worker_context import WorkerContext

_JOBS: Table = JobRow.__table__  # type: ignore[assignment]
_C = _JOBS.c


def _done_statement() -> Any:
    """The guarded DONE of one job, every per-job value a bound parameter (names prefixed:
    SQLAlchemy reserves a column's own name in an UPDATE's SET clause)."""
    rss = bindparam("p_rss", type_=_C.max_rss_mb.type)
    now = bindparam("p_now", type_=_C.updated_at.type)
    return (
        update(_JOBS)
        .where(
            _C.id == bindparam("p_id", type_=_C.id.type),
            _C.lease_owner == bindparam("p_token", type_=_C.lease_owner.type),
            _C.state == JobState.RUNNING.value,
        )
        .values(
            state=JobState.DONE.value,
            reason=None,
            updated_at=now,
            finished_at=now,
            sandbox=bindparam("p_sandbox", type_=_C.sandbox.type),
            log_tail=bindparam("p_log_tail", type_=_C.log_tail.type),
            exit_code=bindparam("p_exit_code", type_=_C.exit_code.type),
            cpu_s=_C.cpu_s + bindparam("p_cpu_s", type_=_C.cpu_s.type),
            wall_s=_C.wall_s + bindparam("p_wall_s", type_=_C.wall_s.type),
            max_rss_mb=case((_C.max_rss_mb < rss, rss), else_=_C.max_rss_mb),
            bytes_read=_C.bytes_read + bindparam("p_read", type_=_C.bytes_read.type),
            bytes_written=_C.bytes_written + bindparam("p_written", type_=_C.bytes_written.type),
        )
    )


_DONE = _done_statement()


def accounting(result: process.ProcessResult | None, read: int, written: int) -> dict[str, Any]:
    """Column updates that add this attempt's use to the job's (accounting sums attempts)."""
    c = _C
    if result is None:
        return {"bytes_read": c.bytes_read + read}
    rss = result.max_rss_mb
    return {
        "cpu_s": c.cpu_s + result.cpu_s,
        "wall_s": c.wall_s + result.wall_s,
        "max_rss_mb": case((c.max_rss_mb < rss, rss), else_=c.max_rss_mb),
        "bytes_read": c.bytes_read + read,
        "bytes_written": c.bytes_written + written,
        "exit_code": result.exit_code,
    }


def end_attempt(
    ctx: WorkerContext,
    task: Task,
    reason: str,
    *,
    retry: bool,
    values: dict[str, Any],
) -> str:
    """Record a failed attempt: back to SUBMITTED (with backoff) or FAILED for good."""
    with transaction(ctx.sessions, serialise_on_sqlite=True) as s:
        job = s.get(JobRow, task.job_id)
        if job is None or job.lease_owner != task.token:
            return "lost"
        if job.state == JobState.KILLED:
            job_repo.guarded_update(s, job.id, task.token, [JobState.KILLED], values)
            return "killed"
        final = not retry or job.attempts >= job.max_attempts
        state = JobState.FAILED if final else JobState.SUBMITTED
        backoff = dt.timedelta(seconds=min(2 ** max(job.attempts - 1, 0) - 1, 60))
        extra: dict[str, Any] = {"state": state.value, "reason": reason}
        if final:
            extra["finished_at"] = utcnow()
        else:
            extra.update(lease_owner=None, lease_expires_at=None, not_before=utcnow() + backoff)
        won = job_repo.guarded_update(
            s,
            job.id,
            task.token,
            [JobState.RUNNING],
            {**values, **extra},
            event={
                "state": state.value,
                "attempt": task.attempt,
                "account": "wms",
                "reason": reason + ("" if final else "; will retry"),
            },
        )
        if won and final:
            workflows.flag(s, [job.workflow_id])
        return state.value if won else "lost"


def cleanup(config: Config, sandbox: Path, *, failed: bool) -> None:
    """Remove a sandbox in the background: the job is finished, nobody waits for this."""
    if failed and config.wms.keep_failed_sandboxes:
        return
    renewer.REMOVER.remove(sandbox)


@dataclass
class Done:
    """A job whose tool succeeded and whose outputs are uploaded: ready to be settled."""

    task: Task
    view: JobView
    sandbox: Path
    base: dict[str, Any]
    result: process.ProcessResult
    read: int
    written: int
    produced: list[outputs.Produced]
    files: list[registration.NewFile]
    prov: dict[str, Any]
    duplicates: list[outputs.Produced] = field(default_factory=list)

    def failed_values(self) -> dict[str, Any]:
        """What a failed settlement records: this attempt's use, nothing written."""
        return {**self.base, **accounting(self.result, self.read, 0)}

    def done_params(self, now: dt.datetime) -> dict[str, Any]:
        """The bound parameters of this job's guarded DONE."""
        r = self.result
        return {
            "p_id": self.view.id,
            "p_token": self.task.token,
            "p_now": now,
            "p_sandbox": self.base.get("sandbox"),
            "p_log_tail": self.base.get("log_tail"),
            "p_exit_code": r.exit_code,
            "p_cpu_s": r.cpu_s,
            "p_wall_s": r.wall_s,
            "p_rss": r.max_rss_mb,
            "p_read": self.read,
            "p_written": self.written,
        }


def settle(ctx: WorkerContext, done: Sequence[Done]) -> dict[int, str]:
    """Mark the jobs DONE and register their outputs, all in one transaction: each job only
    if its token still owns it, each job's registration in a savepoint of its own (one job's
    conflict does not undo the others). A job that could not be settled ends its attempt as
    before (retried, or failed for good on a conflict)."""
    if not done:
        return {}
    config = ctx.config
    status: dict[int, str] = {}
    failed: list[tuple[Done, str, bool, dict[str, Any]]] = []
    try:
        with transaction(ctx.sessions, serialise_on_sqlite=True) as s:
            now = utcnow()
            plain = [d for d in done if not d.produced]
            won = _mark_done(s, plain, now)
            for d in plain:
                if d.view.id not in won:
                    failed.append((d, "lost the job before registering", True, {}))
            events: list[dict[str, Any]] = []
            flagged: list[int | None] = []
            for d in done:
                if d.produced:
                    failure = _settle_with_outputs(s, config, d, now)
                    if failure is not None:
                        failed.append((d, *failure))
                        continue
                elif d.view.id not in won:
                    continue
                status[d.task.job_id] = JobState.DONE.value
                flagged.append(d.view.workflow_id)
                events.append(
                    {
                        "job_id": d.task.job_id,
                        "state": JobState.DONE.value,
                        "attempt": d.task.attempt,
                        "account": "wms",
                        "details": {"outputs": [p.lfn for p in d.produced]},
                    }
                )
            job_repo.add_events(s, events)
            workflows.flag(s, flagged)
    except DppsError as exc:
        status.clear()
        failed = [(d, f"registration failed: {exc}", True, d.failed_values()) for d in done]
    except BaseException:
        for d in done:
            outputs.discard(config, d.produced)  # a bug or a lost database: no stray bytes
        raise
    for d in done:
        if d.task.job_id in status:
            outputs.discard(config, d.duplicates)
            cleanup(config, d.sandbox, failed=False)
    for d, reason, retry, values in failed:
        outputs.discard(config, d.produced)
        status[d.task.job_id] = end_attempt(ctx, d.task, reason, retry=retry, values=values)
    return status


def _mark_done(s: Session, done: Sequence[Done], now: dt.datetime) -> set[int]:
    """The guarded DONE of jobs without outputs in one executemany; the ids it won. When the
    rows changed are fewer than the jobs (or the driver cannot count them), the jobs this
    attempt won are the ones now DONE under their own token (a token is one attempt's)."""
    if not done:
        return set()
    result = s.execute(_DONE, [d.done_params(now) for d in done])
    ids = {d.view.id for d in done}
    dialect = s.get_bind().dialect
    if dialect.supports_sane_multi_rowcount and getattr(result, "rowcount", -1) == len(done):
        return ids
    rows = s.execute(
        select(_C.id).where(
            tuple_(_C.id, _C.lease_owner).in_([(d.view.id, d.task.token) for d in done]),
            _C.state == JobState.DONE.value,
        )
    )
    return {row[0] for row in rows}


def _settle_with_outputs(
    s: Session, config: Config, d: Done, now: dt.datetime
) -> tuple[str, bool, dict[str, Any]] | None:
    """One job's DONE and registration in a savepoint of the caller's transaction; None when
    it won, else why not (the reason, whether to retry, the values to record)."""
    savepoint = s.begin_nested()
    try:
        result = s.execute(_DONE, d.done_params(now))
        if getattr(result, "rowcount", 0) != 1:
            raise _Lost
        d.duplicates = outputs.register(
            s, config, d.produced, d.files, d.prov, job_id=d.view.id, account=d.view.account
        )
    except (_Lost, DppsError) as exc:
        savepoint.rollback()
        if isinstance(exc, _Lost):
            return "lost the job before registering", True, {}
        if isinstance(exc, Conflict):
            return str(exc), False, d.failed_values()
        return f"registration failed: {exc}", True, d.failed_values()
    savepoint.commit()
    return None


class _Lost(Exception):
    """The attempt no longer owns its job."""
