"""What the WMS's Python API returns: plain, frozen records, separate from the ORM rows."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from dpps.core.priority import check_priority


@dataclass(frozen=True, slots=True)
class JobEventInfo:
    ts: dt.datetime
    state: str
    attempt: int
    account: str
    reason: str | None
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class JobInfo:
    id: int
    name: str
    state: str
    tool: str
    activity: str
    priority: int
    site: str | None
    run_site: str | None
    host: str | None
    executor: str
    attempts: int
    max_attempts: int
    reason: str | None
    exit_code: int | None
    workflow_id: int | None
    step: str | None
    software_version: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    cpu_s: float
    wall_s: float
    max_rss_mb: float
    bytes_read: int
    bytes_written: int
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    events: list[JobEventInfo] = field(default_factory=list)
    #: Who submitted it (the dashboard shows it; a record from an older server has none).
    account: str = ""


@dataclass(frozen=True, slots=True)
class WorkflowInfo:
    id: int
    name: str
    state: str
    reason: str | None
    activity: str
    priority: int
    executor: str
    transformation_id: int | None
    steps: dict[str, Any]
    outputs: dict[str, Any]
    created_at: dt.datetime
    finished_at: dt.datetime | None
    jobs: list[JobInfo] = field(default_factory=list)
    #: Who submitted it (the dashboard shows it; a record from an older server has none).
    account: str = ""


@dataclass(frozen=True, slots=True)
class Submitted:
    """What ``submit`` created: a job or a workflow (and its id)."""

    kind: str  # "job" | "workflow"
    id: int
    name: str


@dataclass(frozen=True, slots=True)
class ProblematicFile:
    did: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class TransformationInfo:
    id: int
    name: str
    state: str
    filter: str
    grouping: str
    input_port: str
    activity: str
    priority: int
    executor: str
    max_task_attempts: int
    output_query: str
    created_at: dt.datetime
    files: dict[str, int] = field(default_factory=dict)
    tasks: dict[str, int] = field(default_factory=dict)
    problematic: list[ProblematicFile] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class AccountingRow:
    """Resource use of finished jobs, for one combination of the grouping keys."""

    key: dict[str, Any]
    jobs: int
    done: int
    failed: int
    cpu_hours: float
    wall_hours: float
    max_rss_mb: float
    bytes_read: int
    bytes_written: int


@dataclass(frozen=True, slots=True)
class CampaignInfo:
    """A campaign's record: what it is (``spec``), where it is, and its report once finished."""

    name: str
    kind: str
    state: str
    account: str
    spec: dict[str, Any]
    phase: str
    done: int
    total: int
    attempts: int
    owner: str | None
    lease_expires_at: dt.datetime | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    updated_at: dt.datetime
    error: str | None = None
    report: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class SubmitOptions:
    """How to run what is submitted: name, priority, activity, site, executor, attempts."""

    name: str | None = None
    priority: int = 3
    activity: str = "default"
    site: str | None = None
    executor: str | None = None
    max_attempts: int | None = None

    def __post_init__(self) -> None:
        check_priority(self.priority)
