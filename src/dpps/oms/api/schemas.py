"""Request and response schemas of the REST API, separate from the library's records.

The library returns frozen dataclasses (``dpps.bdms.types``, ``dpps.oms.accounts``); the API
converts them here, at its boundary (``from_attributes``), so either side can evolve without
breaking the other. Every request schema forbids unknown fields: a misspelled field is an
error, never silently ignored.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dpps.core.priority import DEFAULT, HELP, HIGHEST, LOWEST


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


def _check_text(value: Any) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("text must not contain NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("text must be valid Unicode (no lone surrogates)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key)
            _check_text(item)
    elif isinstance(value, list):
        for item in value:
            _check_text(item)


class In(BaseModel):
    """Request bodies: unknown fields, NaN/infinity and text no database can store refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        _check_text(value)
        return value


MetaValue = str | int | float | bool | None


class Page[T](BaseModel):
    """One page of a list: ``items`` from ``offset``, ``total`` matches in all."""

    items: list[T]
    total: int
    limit: int
    offset: int


class CountOut(Out):
    count: int


# -- files, replicas, events ------------------------------------------------------------------


class FileOut(Out):
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
    meta: dict[str, Any]
    checksums: dict[str, str]
    did_type: str
    is_latest: bool
    is_open: bool | None = None


class ReplicaOut(Out):
    rse: str
    site: str
    kind: str
    state: str
    path: str
    bytes: int
    last_verified_at: dt.datetime | None
    estimated_seconds: float | None = None


class DIDEventOut(Out):
    ts: dt.datetime
    account: str
    action: str
    rse: str | None
    reason: str | None
    details: dict[str, Any]


class FileDetailsOut(Out):
    file: FileOut
    replicas: list[ReplicaOut]
    events: list[DIDEventOut]
    versions: list[int]
    parents: list[str]
    children: list[str]


class LocationOut(Out):
    did: str
    available: bool
    bytes: int | None
    replicas: list[ReplicaOut]
    best_rse: str | None
    estimated_seconds: float | None


class FileResultOut(Out):
    source: str
    did: str | None
    status: str
    version: int | None = None
    bytes: int | None = None
    rse: str | None = None
    path: str | None = None
    error: str | None = None
    error_type: str | None = None
    exit_code: int = 0


class BulkReportOut(Out):
    results: list[FileResultOut]
    seconds: float


class MetaChangeOut(Out):
    did: str
    key: str
    old: Any
    new: Any


class RefreshReportOut(Out):
    examined: int
    changed: int
    failed: list[FileResultOut]
    changes: list[MetaChangeOut]
    seconds: float


class MetaPatch(In):
    meta: Annotated[dict[str, MetaValue], Field(min_length=1, max_length=200)]
    reason: Annotated[str | None, Field(max_length=2000)] = None


class RefreshRequest(In):
    filter: Annotated[str, Field(max_length=10_000)] = ""
    dry_run: bool = False


Hex8 = Annotated[str, Field(pattern=r"^[0-9a-f]{8}$")]
Hex64 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class FileRegistration(In):
    """A file whose bytes are already on an RSE, to be registered in the catalog only."""

    name: Annotated[str, Field(min_length=2, max_length=1024, description="LFN, /...")]
    scope: Annotated[str | None, Field(max_length=30)] = None
    bytes: Annotated[int, Field(gt=0, lt=2**62)]
    adler32: Hex8
    blake3: Hex64 | None = None
    rse: Annotated[str, Field(min_length=1, max_length=64)]
    path: Annotated[
        str | None,
        Field(max_length=2048, description="Path under the RSE root (default: deterministic)"),
    ] = None
    meta: Annotated[dict[str, MetaValue], Field(max_length=200)] = {}
    new_version: bool = False


class RegisterRequest(In):
    files: Annotated[list[FileRegistration], Field(min_length=1, max_length=10_000)]
    dataset: Annotated[str | None, Field(max_length=1100)] = None


class RegisterOutcomeOut(Out):
    did: str
    status: str
    version: int | None
    message: str = ""


class RegisterReportOut(Out):
    registered: int
    present: int
    conflicts: int
    outcomes: list[RegisterOutcomeOut]


# -- storage elements, rules, transfers, events ---------------------------------------------


class RSEOut(Out):
    name: str
    site: str
    kind: str
    onsite: bool
    url: str
    available: bool
    attributes: dict[str, Any]
    files: int = 0
    bytes: int = 0


class RuleIn(In):
    """One rule per DID (``did``, or several in ``dids``), all created or none."""

    did: Annotated[str | None, Field(min_length=1, max_length=1100)] = None
    dids: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=1100)]] | None,
        Field(min_length=1, max_length=1000),
    ] = None
    copies: Annotated[int, Field(ge=1, le=100)]
    rses: Annotated[str, Field(min_length=1, max_length=1000, description="RSE expression")]
    source: Annotated[str | None, Field(max_length=1000)] = None
    lifetime_days: Annotated[float | None, Field(gt=0, le=36_500)] = None
    priority: Annotated[int, Field(ge=LOWEST, le=HIGHEST, description=HELP)] = DEFAULT
    activity: Annotated[str, Field(min_length=1, max_length=64)] = "default"
    comment: Annotated[str | None, Field(max_length=2000)] = None
    locked: Annotated[
        bool, Field(description="Refuse deletion and expiry until unlocked (PATCH locked)")
    ] = False
    skip_duplicate: Annotated[
        bool, Field(description="An identical rule of the account is returned, not refused")
    ] = False

    def all_dids(self) -> list[str]:
        """``did`` and ``dids`` together; at least one is needed (400 otherwise)."""
        from dpps.core.errors import InvalidInput

        every = ([self.did] if self.did else []) + list(self.dids or [])
        if not every:
            raise InvalidInput("give did or dids")
        return every


class PolicyIn(In):
    did: Annotated[str, Field(min_length=1, max_length=1100)]
    policy: Annotated[str, Field(min_length=1, max_length=64)]


class RuleUpdateIn(In):
    """Fields left out stay as they are; ``suspended`` false resumes a SUSPENDED rule."""

    priority: Annotated[int | None, Field(ge=LOWEST, le=HIGHEST, description=HELP)] = None
    lifetime_days: Annotated[
        float | None, Field(gt=0, le=36_500, description="Expire this long from now")
    ] = None
    clear_lifetime: Annotated[bool, Field(description="Never expire")] = False
    suspended: bool | None = None
    comment: Annotated[str | None, Field(max_length=2000)] = None
    locked: Annotated[bool | None, Field(description="Lock (true) or unlock (false)")] = None


class RuleIdsOut(Out):
    ids: list[int]


class RuleOut(Out):
    id: int
    did: str
    account: str
    rse_expression: str
    source_expression: str | None
    copies: int
    state: str
    error: str | None
    priority: int
    activity: str
    created_at: dt.datetime
    updated_at: dt.datetime
    expires_at: dt.datetime | None
    policy: str | None
    comment: str | None
    locked: bool
    did_type: str
    next_evaluation_at: dt.datetime | None
    locks: dict[str, int] = Field(
        default_factory=dict, description="The rule's file locks counted by state"
    )


class TransferOut(Out):
    id: int
    did: str
    dest_rse: str
    source_rse: str | None
    rule_id: int | None
    state: str
    activity: str
    priority: int
    bytes: int | None
    attempts: int
    max_attempts: int
    next_attempt_at: dt.datetime
    error: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    finished_at: dt.datetime | None


class EventOut(Out):
    id: int
    ts: dt.datetime
    account: str
    action: str
    did: str | None
    rse: str | None
    reason: str | None
    details: dict[str, Any]


# -- accounts and tokens ------------------------------------------------------------------------


class AccountIn(In):
    name: Annotated[str, Field(min_length=1, max_length=64)]
    roles: Annotated[list[str], Field(min_length=1, max_length=5)]
    scopes: Annotated[list[str], Field(max_length=100)] = []
    email: Annotated[str | None, Field(max_length=256)] = None


class AccountOut(Out):
    name: str
    roles: list[str]
    scopes: list[str]
    email: str | None
    created_at: dt.datetime
    disabled_at: dt.datetime | None


class RoleIn(In):
    role: Annotated[str, Field(min_length=1, max_length=64)]


class ScopeIn(In):
    scope: Annotated[str, Field(min_length=1, max_length=30)]


class TokenIn(In):
    expires_days: Annotated[float, Field(gt=0, le=3650)] = 30
    description: Annotated[str | None, Field(max_length=500)] = None


class TokenOut(Out):
    id: int
    account: str
    description: str | None
    created_at: dt.datetime
    expires_at: dt.datetime
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None


class NewTokenOut(Out):
    id: int
    account: str
    token: str
    expires_at: dt.datetime


class WhoAmIOut(Out):
    name: str
    default_scope: str
    roles: list[str]
    scopes: list[str]
    token_id: int | None
    allowed: list[str]


class MatrixOut(Out):
    roles: list[str]
    actions: dict[str, list[str]]


class ServiceHealthOut(Out):
    status: str
    version: str


DIDText = Annotated[str, Field(min_length=1, max_length=1100)]


class CollectionCreate(In):
    did: DIDText
    type: Literal["DATASET", "CONTAINER"] = "DATASET"
    meta: Annotated[dict[str, MetaValue], Field(max_length=200)] = {}


class AttachRequest(In):
    parent: DIDText
    dids: Annotated[list[DIDText], Field(min_length=1, max_length=10_000)]
    ignore_duplicates: bool = False


class DetachRequest(In):
    parent: DIDText
    dids: Annotated[list[DIDText], Field(min_length=1, max_length=10_000)]


class CollectionStatus(In):
    did: DIDText
    open: bool


class AttachOut(Out):
    dids: list[str]


class ContentOut(Out):
    """One page of a collection's content; ``total`` only when asked for (``count=true``: a
    count of a large tree costs as much as listing it; a page shorter than ``limit`` is the
    last)."""

    items: list[FileOut]
    limit: int
    offset: int
    total: int | None = None
