"""ORM models of the workload manager: jobs, their files and history, workflows, transformations.

Job state lives here and nowhere else (not in an executor): any manager or worker process can
die and the next one continues from these rows. Job history has its own table, indexed by job,
because a production writes millions of transitions that would swamp the archive's per-file
preservation record; what a job *produced* is still recorded there (``file.register`` and
``wms.output`` events on the output's DID).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from dpps.catalog.models import ActivityId, Base
from dpps.core.clock import utcnow


class TransformationRow(Base):
    """A standing production: a filter over the archive, a workflow template and a grouping."""

    __tablename__ = "transformations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    account: Mapped[str] = mapped_column(String(64))
    filter: Mapped[str] = mapped_column(Text)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    input_port: Mapped[str] = mapped_column(String(128))
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    grouping: Mapped[str] = mapped_column(String(128))
    group_size: Mapped[int] = mapped_column(Integer, default=1)
    settle_s: Mapped[float] = mapped_column(Float, default=0.0)
    priority: Mapped[int] = mapped_column(Integer, default=3)
    activity: Mapped[str] = mapped_column(String(64))
    activity_rank: Mapped[int] = mapped_column(Integer, default=0)
    site: Mapped[str | None] = mapped_column(String(64))
    executor: Mapped[str] = mapped_column(String(16))
    max_task_attempts: Mapped[int] = mapped_column(Integer, default=2)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class WorkflowRow(Base):
    """One run of a DAG of steps (a CWL Workflow, a single tool, or a transformation's task)."""

    __tablename__ = "workflows"
    __table_args__ = (Index("ix_workflows_state_advance", "state", "needs_advance"),)

    id: Mapped[int] = mapped_column(ActivityId, primary_key=True)
    name: Mapped[str] = mapped_column(String(256))
    state: Mapped[str] = mapped_column(String(16))
    account: Mapped[str] = mapped_column(String(64))
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    inputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    outputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    steps: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    priority: Mapped[int] = mapped_column(Integer, default=3)
    activity: Mapped[str] = mapped_column(String(64))
    activity_rank: Mapped[int] = mapped_column(Integer, default=0)
    site: Mapped[str | None] = mapped_column(String(64))
    executor: Mapped[str] = mapped_column(String(16))
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    needs_advance: Mapped[bool] = mapped_column(Boolean, default=True)
    transformation_id: Mapped[int | None] = mapped_column(
        ForeignKey("transformations.id"), index=True
    )
    reason: Mapped[str | None] = mapped_column(Text)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class JobRow(Base):
    """One tool invocation on named inputs, and the accounting of its attempts."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_dispatch", "state", "executor", "activity_rank", "priority"),
        Index("ix_jobs_workflow_step", "workflow_id", "step"),
    )

    id: Mapped[int] = mapped_column(ActivityId, primary_key=True)
    name: Mapped[str] = mapped_column(String(256))
    state: Mapped[str] = mapped_column(String(16), index=True)
    account: Mapped[str] = mapped_column(String(64))
    tool: Mapped[str] = mapped_column(String(256))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    software_version: Mapped[str | None] = mapped_column(String(64), index=True)
    config_hash: Mapped[str] = mapped_column(String(64))
    priority: Mapped[int] = mapped_column(Integer, default=3)
    activity: Mapped[str] = mapped_column(String(64), index=True)
    activity_rank: Mapped[int] = mapped_column(Integer, default=0)
    site: Mapped[str | None] = mapped_column(String(64))
    run_site: Mapped[str | None] = mapped_column(String(64), index=True)
    host: Mapped[str | None] = mapped_column(String(255))
    cores: Mapped[int] = mapped_column(Integer, default=1)
    memory_mb: Mapped[int] = mapped_column(Integer, default=1000)
    executor: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    workflow_id: Mapped[int | None] = mapped_column(ActivityId, ForeignKey("workflows.id"))
    step: Mapped[str | None] = mapped_column(String(128))
    scatter_index: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    not_before: Mapped[dt.datetime | None] = mapped_column(DateTime)
    sandbox: Mapped[str | None] = mapped_column(Text)
    log_tail: Mapped[str | None] = mapped_column(Text)
    cpu_s: Mapped[float] = mapped_column(Float, default=0.0)
    wall_s: Mapped[float] = mapped_column(Float, default=0.0)
    max_rss_mb: Mapped[float] = mapped_column(Float, default=0.0)
    bytes_read: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_written: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class JobFileRow(Base):
    """An input a job reads or an output it registered, by DID (``role`` input/output)."""

    __tablename__ = "job_files"
    __table_args__ = (UniqueConstraint("job_id", "role", "port", "position"),)

    id: Mapped[int] = mapped_column(ActivityId, primary_key=True)
    job_id: Mapped[int] = mapped_column(ActivityId, ForeignKey("jobs.id"), index=True)
    did_id: Mapped[int] = mapped_column(ForeignKey("dids.id"), index=True)
    role: Mapped[str] = mapped_column(String(8))
    port: Mapped[str] = mapped_column(String(128))
    position: Mapped[int] = mapped_column(Integer, default=0)


class JobEventRow(Base):
    """Append-only history of a job: every state transition with its attempt and reason."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(ActivityId, primary_key=True)
    job_id: Mapped[int] = mapped_column(ActivityId, ForeignKey("jobs.id"), index=True)
    ts: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    state: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    account: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class TransformationFileRow(Base):
    """Bookkeeping: each matching file once per transformation, with its task and status."""

    __tablename__ = "transformation_files"
    __table_args__ = (
        UniqueConstraint("transformation_id", "did_id"),
        Index("ix_transformation_files_status", "transformation_id", "status"),
    )

    id: Mapped[int] = mapped_column(ActivityId, primary_key=True)
    transformation_id: Mapped[int] = mapped_column(ForeignKey("transformations.id"))
    did_id: Mapped[int] = mapped_column(ForeignKey("dids.id"))
    status: Mapped[str] = mapped_column(String(16))
    group_key: Mapped[str] = mapped_column(String(256))
    workflow_id: Mapped[int | None] = mapped_column(
        ActivityId, ForeignKey("workflows.id"), index=True
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


__all__ = [
    "JobEventRow",
    "JobFileRow",
    "JobRow",
    "TransformationFileRow",
    "TransformationRow",
    "WorkflowRow",
]


class CampaignRow(Base):
    """A named batch of work over the archive (a reprocessing campaign): its definition, who
    asked for it, how far it got and its final report.

    The work itself is ordinary jobs and workflows; this row is what makes a campaign visible
    (dashboard, ``dpps campaign list``, the remote CLI polling it) and restartable: whoever runs
    it holds the lease and renews it, and a runner that died leaves an expired lease that the
    campaign daemon takes over (the campaign is idempotent by name, so it simply continues).
    """

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), index=True)
    account: Mapped[str] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    phase: Mapped[str] = mapped_column(String(256), default="")
    done: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
