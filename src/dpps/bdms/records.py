"""Records of the archive's operations beyond files and rules: what ingest and bulk
registration take, what a rule change asks for, what preservation, staging and export report.

They are plain frozen dataclasses with no catalog behind them, kept apart from the modules that
produce them (which import SQLAlchemy) so that the REST client (``dpps.client``) and the
Protocols both twins satisfy (``dpps.bdms.api_types``) can name them without loading the local
stack. Records of files, replicas, rules and transfers are in ``dpps.bdms.types``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# -- ingest and registration ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IngestOptions:
    rse: str
    scope: str
    lfn: str | None = None
    lfn_prefix: str | None = None
    dataset: str | None = None
    meta: Mapping[str, str] | None = None
    recursive: bool = False
    new_version: bool = False


@dataclass(frozen=True, slots=True)
class Registration:
    """One file to register (the library's view of the API's request item)."""

    name: str
    bytes: int
    adler32: str
    rse: str
    scope: str | None = None
    blake3: str | None = None
    path: str | None = None
    meta: Mapping[str, Any] | None = None
    new_version: bool = False


@dataclass(frozen=True, slots=True)
class RegisterOutcome:
    did: str
    status: str
    version: int | None
    message: str = ""


# -- replication ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RuleChange:
    """What to change on a rule; None leaves a field as it is."""

    priority: int | None = None
    lifetime: dt.timedelta | None = None  # from now
    clear_lifetime: bool = False  # the rule never expires
    suspended: bool | None = None  # True: SUSPENDED, False: resume
    comment: str | None = None
    locked: bool | None = None  # True: locked against deletion and expiry, False: unlocked


# -- preservation -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BadReplica:
    did: str
    rse: str
    path: str
    reason: str


@dataclass(frozen=True, slots=True)
class AuditReport:
    """What one audit found: ``bad`` replicas were marked BAD, ``lost`` files have no copy."""

    examined: int
    good: int
    bad: list[BadReplica]
    lost: list[str]
    skipped: int
    bytes: int
    seconds: float
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class DeletionReport:
    """What ``dpps delete`` did: ``pending`` replicas wait for their store to come back."""

    did: str
    reason: str
    files: int
    rules_removed: int
    replicas_deleted: int
    replicas_pending: int
    kept: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class DaemonHealth:
    name: str
    instances: int
    last_seen: dt.datetime | None
    stale: bool


@dataclass(frozen=True, slots=True)
class RuleProblem:
    rule_id: int
    did: str
    state: str
    error: str | None
    since: dt.datetime | None


@dataclass(frozen=True, slots=True)
class Shortfall:
    did: str
    rule_id: int
    wanted: int
    good: int


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """One alarm of ``dpps health``: ``ok``, or ``reason`` says what is wrong (``count``
    things, the first of them in ``items``)."""

    name: str
    ok: bool
    count: int = 0
    reason: str = ""
    items: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class HealthReport:
    checked_at: dt.datetime
    daemons: list[DaemonHealth]
    stuck_rules: list[RuleProblem]
    under_replicated: int
    under_replicated_files: list[Shortfall]
    lost: int
    lost_files: list[str]
    lost_events: int
    bad_replicas: int
    being_deleted: int
    stage_queued: int
    notes: list[str] = field(default_factory=list)
    checks: list[HealthCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every check passed: no lost file, no file short of its copies, no stuck rule,
        every needed daemon running (none stale), every RSE available."""
        if self.checks:
            return all(c.ok for c in self.checks)
        return not (self.lost or self.stuck_rules or any(d.stale for d in self.daemons))

    @property
    def alarms(self) -> list[str]:
        """The reason of every failed check, one line each (empty: all is well)."""
        return [c.reason for c in self.checks if not c.ok]


@dataclass(frozen=True, slots=True)
class ExportReport:
    did: str
    dest: str
    files: int
    bytes: int
    seconds: float


# -- tape staging -----------------------------------------------------------------------------


class StageState(StrEnum):
    QUEUED = "QUEUED"
    READY = "READY"
    EXPIRED = "EXPIRED"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class StageInfo:
    """One stage request as users see it."""

    id: int
    did: str
    rse: str
    state: str
    requested_at: dt.datetime
    ready_at: dt.datetime | None
    expires_at: dt.datetime | None
    buffer_path: str | None
    error: str | None
    #: Seconds until the copy should be ready (0 when READY, None when it never will be).
    eta_seconds: float | None
