"""Job rows: creation in bulk, state transitions with their history, lease-guarded updates.

Functions take the caller's session and never commit. Every state change goes through
``set_state`` or ``guarded_update`` so that it appends a ``job_events`` row in the same
transaction. Updates made by workers are *guarded*: they only apply while the worker's lease
token is still the job's ``lease_owner`` and the job is in the expected state, which is what
makes a stalled-and-rescheduled or killed attempt unable to change anything afterwards.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, tuple_, update
from sqlalchemy.orm import Session

from dpps.catalog.models_wms import JobEventRow, JobFileRow, JobRow
from dpps.core.clock import utcnow
from dpps.core.config import Config
from dpps.core.errors import InvalidInput
from dpps.wms.spec import Tool, command_line, iter_files
from dpps.wms.states import JobState

_JOBS: Table = JobRow.__table__  # type: ignore[assignment]
_EVENTS: Table = JobEventRow.__table__  # type: ignore[assignment]
_FILES: Table = JobFileRow.__table__  # type: ignore[assignment]


@dataclass(slots=True)
class JobDraft:
    """A job about to be inserted (see ``draft``)."""

    name: str
    tool: str
    spec: dict[str, Any]
    parameters: dict[str, Any]
    software_version: str | None
    config_hash: str
    priority: int
    activity: str
    activity_rank: int
    site: str | None
    cores: int
    memory_mb: int
    executor: str
    max_attempts: int
    account: str
    inputs: list[tuple[str, int, int]] = field(default_factory=list)  # (port, position, did_id)
    workflow_id: int | None = None
    step: str | None = None
    scatter_index: int | None = None


def activity_rank(config: Config, activity: str) -> int:
    """Dispatch rank of an activity (configured in ``wms.activities``); unknown is an error."""
    ranks = config.wms.activities
    if activity not in ranks:
        raise InvalidInput(
            f"unknown activity {activity!r} (configured: {', '.join(sorted(ranks))})"
        )
    return ranks[activity]


def config_hash(
    spec: Mapping[str, Any], parameters: Mapping[str, Any], software_version: str | None
) -> str:
    """What makes two runs the same computation, inputs aside (for provenance)."""
    effective = {k: v for k, v in spec.items() if k != "inputs"}
    blob = json.dumps([effective, parameters, software_version], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def draft(
    tool: Tool,
    values: Mapping[str, Any],
    *,
    opts_name: str,
    priority: int,
    activity: str,
    activity_rank: int,
    site: str | None,
    executor: str,
    max_attempts: int,
    account: str,
    parameters: Mapping[str, Any] | None = None,
    workflow_id: int | None = None,
    step: str | None = None,
    scatter_index: int | None = None,
) -> JobDraft:
    """A job for one invocation of ``tool`` on bound ``values``."""
    spec: dict[str, Any] = {
        "argv": command_line(tool, values) if not tool.python else None,
        "python": tool.python,
        "inputs": dict(values),
        "outputs": [o.model_dump() for o in tool.outputs],
        "stdout": tool.stdout,
        "stderr": tool.stderr,
        "env": dict(tool.env),
    }
    scalars = {
        k: v for k, v in values.items() if not any(True for _ in iter_files(v)) and v is not None
    }
    params = {**scalars, **dict(parameters or {})}
    inputs = [
        (port, pos, int(f["did_id"]))
        for port, value in values.items()
        for pos, f in enumerate(iter_files(value))
    ]
    return JobDraft(
        name=opts_name,
        tool=tool.python or tool.name,
        spec=spec,
        parameters=params,
        software_version=tool.software_version,
        config_hash=config_hash(spec, params, tool.software_version),
        priority=priority,
        activity=activity,
        activity_rank=activity_rank,
        site=site,
        cores=tool.cores,
        memory_mb=tool.memory_mb,
        executor=executor,
        max_attempts=max_attempts,
        account=account,
        inputs=inputs,
        workflow_id=workflow_id,
        step=step,
        scatter_index=scatter_index,
    )


def create_jobs(session: Session, drafts: Sequence[JobDraft]) -> list[int]:
    """Insert jobs, their input files and their SUBMITTED events in a few statements."""
    if not drafts:
        return []
    now = utcnow()
    rows = [
        {
            "name": d.name,
            "state": JobState.SUBMITTED.value,
            "account": d.account,
            "tool": d.tool[:256],
            "spec": d.spec,
            "parameters": d.parameters,
            "software_version": d.software_version,
            "config_hash": d.config_hash,
            "priority": d.priority,
            "activity": d.activity,
            "activity_rank": d.activity_rank,
            "site": d.site,
            "cores": d.cores,
            "memory_mb": d.memory_mb,
            "executor": d.executor,
            "attempts": 0,
            "max_attempts": d.max_attempts,
            "workflow_id": d.workflow_id,
            "step": d.step,
            "scatter_index": d.scatter_index,
            "cpu_s": 0.0,
            "wall_s": 0.0,
            "max_rss_mb": 0.0,
            "bytes_read": 0,
            "bytes_written": 0,
            "created_at": now,
            "updated_at": now,
        }
        for d in drafts
    ]
    # Core statements: for thousands of rows the ORM's bulk path costs more than the database.
    ids = list(
        session.scalars(_JOBS.insert().returning(_JOBS.c.id, sort_by_parameter_order=True), rows)
    )
    files = [
        {"job_id": jid, "did_id": did_id, "role": "input", "port": port, "position": pos}
        for jid, d in zip(ids, drafts, strict=True)
        for port, pos, did_id in d.inputs
    ]
    if files:
        session.execute(_FILES.insert(), files)
    add_events(
        session,
        (
            {"job_id": jid, "state": JobState.SUBMITTED.value, "attempt": 0, "account": d.account}
            for jid, d in zip(ids, drafts, strict=True)
        ),
    )
    return ids


def add_events(session: Session, events: Iterable[Mapping[str, Any]]) -> None:
    now = utcnow()
    rows = [
        {
            "job_id": e["job_id"],
            "ts": now,
            "state": e["state"],
            "attempt": e.get("attempt", 0),
            "account": e["account"],
            "reason": e.get("reason"),
            "details": dict(e.get("details") or {}),
        }
        for e in events
    ]
    if rows:
        session.execute(_EVENTS.insert(), rows)  # Core: the ORM adds nothing to a log append


def set_state(
    session: Session,
    job: JobRow,
    state: JobState,
    *,
    account: str,
    reason: str | None = None,
    details: Mapping[str, Any] | None = None,
    batch: list[dict[str, Any]] | None = None,
    **values: Any,
) -> None:
    """Change a loaded job's state (and other columns) and record why; with ``batch`` the
    event is collected there for one ``add_events`` call by the caller."""
    job.state = state.value
    job.reason = reason
    for key, value in values.items():
        setattr(job, key, value)
    if state in (JobState.DONE, JobState.FAILED, JobState.KILLED):
        job.finished_at = utcnow()
    event = {
        "job_id": job.id,
        "state": state.value,
        "attempt": job.attempts,
        "account": account,
        "reason": reason,
        "details": details,
    }
    if batch is not None:
        batch.append(event)
    else:
        add_events(session, [event])


def guarded_update(
    session: Session,
    job_id: int,
    token: str,
    from_states: Iterable[JobState],
    values: Mapping[str, Any],
    *,
    event: Mapping[str, Any] | None = None,
) -> bool:
    """Apply ``values`` only while ``token`` holds the job in one of ``from_states``.

    The check and the write are one UPDATE statement, so two processes can never both win
    (PostgreSQL re-checks the WHERE clause after waiting for a concurrent writer's row lock;
    SQLite has one writer at a time).
    """
    result = session.execute(
        update(_JOBS)
        .where(
            _JOBS.c.id == job_id,
            _JOBS.c.lease_owner == token,
            _JOBS.c.state.in_([s.value for s in from_states]),
        )
        .values(updated_at=utcnow(), **values)
    )
    won = bool(getattr(result, "rowcount", 0) == 1)
    if won and event is not None:
        add_events(session, [{"job_id": job_id, **event}])
    return won


def guarded_take(
    session: Session,
    owned: Sequence[tuple[int, str]],
    values: Mapping[str, Any],
    returning: Sequence[Any],
    events: Mapping[int, Mapping[str, Any]],
) -> dict[int, Any]:
    """``guarded_update`` from MATCHED for many ``(job id, token)`` pairs at once, returning
    columns of the jobs each token still owns (one UPDATE ... RETURNING, one event INSERT:
    a bundle of short jobs is taken for the cost of one)."""
    if not owned:
        return {}
    rows = session.execute(
        update(_JOBS)
        .where(
            tuple_(_JOBS.c.id, _JOBS.c.lease_owner).in_(list(owned)),
            _JOBS.c.state == JobState.MATCHED.value,
        )
        .values(updated_at=utcnow(), **values)
        .returning(_JOBS.c.id, *returning)
    ).all()
    taken = {row[0]: row for row in rows}
    add_events(session, [{"job_id": jid, **events[jid]} for jid in taken])
    return taken
