"""What the archive's Python API returns: plain, frozen records, separate from the ORM rows.

The CLI renders them, the REST API converts them to its schemas; neither sees SQLAlchemy.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal


def to_jsonable(value: Any) -> Any:
    """Dataclasses, dates and tuples to JSON-ready structures (for --json output)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


@dataclass(frozen=True, slots=True)
class FileInfo:
    did: str
    scope: str
    name: str
    version: int
    bytes: int | None
    adler32: str | None
    blake3: str | None
    data_level: str | None
    category: str | None
    obs_id: int | None
    tel_id: int | None
    observing_night: dt.date | None
    time_start: dt.datetime | None
    time_end: dt.datetime | None
    product_type: str | None
    created_at: dt.datetime
    meta: dict[str, Any] = field(default_factory=dict)
    checksums: dict[str, str] = field(default_factory=dict)
    did_type: str = "FILE"
    is_latest: bool = True
    #: Datasets and containers: whether they take attachments; None for files.
    is_open: bool | None = None


@dataclass(frozen=True, slots=True)
class ReplicaInfo:
    rse: str
    site: str
    kind: str
    state: str
    path: str
    bytes: int
    last_verified_at: dt.datetime | None
    estimated_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class EventInfo:
    ts: dt.datetime
    account: str
    action: str
    rse: str | None
    reason: str | None
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class FileDetails:
    file: FileInfo
    replicas: list[ReplicaInfo]
    events: list[EventInfo]
    versions: list[int]
    parents: list[str]
    children: list[str]


@dataclass(frozen=True, slots=True)
class Location:
    """Where a file can be read from now, best first, with the time it would take."""

    did: str
    available: bool
    bytes: int | None
    replicas: list[ReplicaInfo]
    best_rse: str | None
    estimated_seconds: float | None


@dataclass(frozen=True, slots=True)
class FileResult:
    """The outcome of one file in a bulk operation (ingest, get)."""

    source: str
    did: str | None
    status: Literal["registered", "present", "retrieved", "staging", "failed"]
    version: int | None = None
    bytes: int | None = None
    rse: str | None = None
    path: str | None = None
    error: str | None = None
    error_type: str | None = None
    exit_code: int = 0


@dataclass(frozen=True, slots=True)
class BulkReport:
    """Per-file results of a bulk operation and its totals."""

    results: list[FileResult]
    seconds: float

    def count(self, status: str) -> int:
        return sum(1 for r in self.results if r.status == status)

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def bytes(self) -> int:
        return sum(r.bytes or 0 for r in self.results if r.status != "failed")


@dataclass(frozen=True, slots=True)
class MetaChange:
    did: str
    key: str
    old: Any
    new: Any


@dataclass(frozen=True, slots=True)
class RefreshReport:
    examined: int
    changed: int
    failed: list[FileResult]
    changes: list[MetaChange]
    seconds: float


@dataclass(frozen=True, slots=True)
class RSEInfo:
    name: str
    site: str
    kind: str
    onsite: bool
    url: str
    available: bool
    attributes: dict[str, Any]
    files: int = 0
    bytes: int = 0


@dataclass(frozen=True, slots=True)
class RuleInfo:
    """A replication rule as users see it; ``locks`` counts its file locks by state."""

    id: int
    did: str
    did_type: str
    copies: int
    rses: str
    source: str | None
    state: str
    error: str | None
    priority: int
    activity: str
    account: str
    policy: str | None
    comment: str | None
    locked: bool
    created_at: dt.datetime
    updated_at: dt.datetime
    expires_at: dt.datetime | None
    next_evaluation_at: dt.datetime | None
    locks: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TransferInfo:
    id: int
    did: str
    source: str | None
    dest: str
    state: str
    attempts: int
    max_attempts: int
    bytes: int | None
    error: str | None
    next_attempt_at: dt.datetime
    finished_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class RuleDetails:
    """One rule with its lock and transfer counts, and the transfers that went wrong;
    ``placement``: where its copies are, its locks per RSE by state (Rucio's per-RSE view)."""

    rule: RuleInfo
    rse_names: list[str]
    files: int
    transfers: dict[str, int]
    problems: list[TransferInfo]
    placement: dict[str, dict[str, int]] = field(default_factory=dict)


# -- listings: one page of a filtered, ordered list and its total ---------------------------


@dataclass(frozen=True, slots=True)
class PageRequest:
    """Which slice of a list a caller wants; impossible values are refused here, once, so
    the REST API, the dashboard and the CLI give the same answer to the same mistake."""

    offset: int = 0
    limit: int = 100

    def __post_init__(self) -> None:
        from dpps.core.errors import InvalidInput

        if self.offset < 0:
            raise InvalidInput(f"offset must be 0 or more, not {self.offset}")
        if self.limit < 1:
            raise InvalidInput(f"limit must be 1 or more, not {self.limit}")


@dataclass(frozen=True, slots=True)
class Page[T]:
    """One page of a listing and how many items match its filter in all."""

    items: list[T]
    total: int
    offset: int
    limit: int


@dataclass(frozen=True, slots=True)
class TransferRecord:
    """A transfer as operators' lists show it: ``TransferInfo`` and the rule, activity,
    priority and times that the REST API and the dashboard show besides."""

    id: int
    did: str
    source: str | None
    dest: str
    rule_id: int | None
    state: str
    activity: str
    priority: int
    attempts: int
    max_attempts: int
    bytes: int | None
    error: str | None
    next_attempt_at: dt.datetime
    created_at: dt.datetime
    updated_at: dt.datetime
    finished_at: dt.datetime | None

    def info(self) -> TransferInfo:
        """The part ``dpps transfer list`` prints (the same both ways, local and remote)."""
        return TransferInfo(
            id=self.id,
            did=self.did,
            source=self.source,
            dest=self.dest,
            state=self.state,
            attempts=self.attempts,
            max_attempts=self.max_attempts,
            bytes=self.bytes,
            error=self.error,
            next_attempt_at=self.next_attempt_at,
            finished_at=self.finished_at,
        )


@dataclass(frozen=True, slots=True)
class ReplicaRecord:
    """One replica in a listing by RSE and state (``did`` always carries its version)."""

    did: str
    rse: str
    state: str
    path: str
    bytes: int
    lock_count: int
    last_verified_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One entry of the preservation record as the event listing shows it."""

    id: int
    ts: dt.datetime
    account: str
    action: str
    did: str | None
    rse: str | None
    reason: str | None
    details: dict[str, Any]


# -- archive files as other subsystems refer to them (``dpps.bdms.resolve``) ---------------


@dataclass(frozen=True, slots=True)
class FileRef:
    """An archive file as a job refers to it: its catalog id and its identity.

    What the WMS binds a job's File input to and hands from step to step: enough to name the
    file (``label``) and to find it again by id, nothing that can go stale but its size.
    """

    id: int
    scope: str
    name: str
    version: int
    is_latest: bool
    bytes: int | None

    @property
    def label(self) -> str:
        """``scope:name``, with ``@vN`` when this is not the latest version."""
        return f"{self.scope}:{self.name}" + ("" if self.is_latest else f"@v{self.version}")


@dataclass(frozen=True, slots=True)
class FileMatch:
    """A file a filter selected, with the values of the fields the caller asked for (in the
    order asked; a ``meta.KEY`` field is None when the file has no such key)."""

    id: int
    values: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class ReplicaSite:
    """Where a readable replica is: its RSE, the RSE's site and kind (disk or tape)."""

    rse: str
    site: str
    kind: str
