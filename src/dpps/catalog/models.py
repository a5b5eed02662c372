"""ORM models: the archive's tables.

Queried metadata keys are real, indexed columns; everything else lives in the ``meta`` JSON
column. Nothing is hard-deleted: a removed DID keeps its row with ``deleted_at`` set, and every
state change appends a row to ``events`` in the same transaction.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from dpps.core.clock import utcnow

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


#: The id of a table whose rows come with activity rather than with the archive's files
#: (events, transfers, rule locks, stage requests, jobs and their history): 64-bit on
#: PostgreSQL, where 32 bits run out within the archive's 30 years (migration 0008 says at
#: what rates). On SQLite it stays INTEGER: that is already 64-bit, and only a column
#: declared exactly INTEGER PRIMARY KEY is the rowid that numbers new rows (a BIGINT one
#: would be a plain column, and every insert without an id would fail).
ActivityId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON}  # noqa: RUF012 (SQLAlchemy reads it)


class DIDRow(Base):
    """A file, dataset or container. Files carry size, checksums and metadata."""

    __tablename__ = "dids"
    __table_args__ = (
        UniqueConstraint("scope", "name", "version"),
        Index("ix_dids_obs_tel", "obs_id", "tel_id"),
        Index("ix_dids_name", "name"),
        # Listings are ordered by name: (keys, name) reads the first page of those keys'
        # files in order, where the keys' own index sorted all of them or the name index
        # walked every name before them (migration 0007).
        Index("ix_dids_night_name", "observing_night", "name"),
        Index("ix_dids_level_tel_name", "data_level", "tel_id", "name"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scope: Mapped[str] = mapped_column(String(30))
    name: Mapped[str] = mapped_column(String(1024))
    version: Mapped[int] = mapped_column(Integer, default=1)
    is_latest: Mapped[bool] = mapped_column(Boolean, default=True)
    #: A closed dataset or container takes no more attachments or detachments (as in Rucio):
    #: what a closed dataset holds is fixed. Files keep it True and never look at it.
    is_open: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # No index of its own: three values, and SQLite would pick it over the name range.
    did_type: Mapped[str] = mapped_column(String(10))
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    adler32: Mapped[str | None] = mapped_column(String(8))
    blake3: Mapped[str | None] = mapped_column(String(64))
    checksums: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    data_level: Mapped[str | None] = mapped_column(String(16), index=True)
    category: Mapped[str | None] = mapped_column(String(8), index=True)
    obs_id: Mapped[int | None] = mapped_column(BigInteger)
    tel_id: Mapped[int | None] = mapped_column(Integer, index=True)
    observing_night: Mapped[dt.date | None] = mapped_column(Date)
    time_start: Mapped[dt.datetime | None] = mapped_column(DateTime, index=True)
    time_end: Mapped[dt.datetime | None] = mapped_column(DateTime)
    product_type: Mapped[str | None] = mapped_column(String(64), index=True)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime, index=True)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class AttachmentRow(Base):
    """Membership of a DID in a dataset or container."""

    __tablename__ = "attachments"
    __table_args__ = (UniqueConstraint("parent_id", "child_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    parent_id: Mapped[int] = mapped_column(ForeignKey("dids.id"), index=True)
    child_id: Mapped[int] = mapped_column(ForeignKey("dids.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class RSERow(Base):
    """A storage element as the catalog knows it; synchronised from the configuration."""

    __tablename__ = "rses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    site: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(8))
    onsite: Mapped[bool] = mapped_column(Boolean, default=False)
    url: Mapped[str] = mapped_column(Text)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    available: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class ReplicaRow(Base):
    """One copy of one file on one RSE."""

    __tablename__ = "replicas"
    __table_args__ = (
        UniqueConstraint("did_id", "rse_id"),
        Index("ix_replicas_rse_state", "rse_id", "state"),
        Index("ix_replicas_last_verified", "last_verified_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    did_id: Mapped[int] = mapped_column(ForeignKey("dids.id"), index=True)
    rse_id: Mapped[int] = mapped_column(ForeignKey("rses.id"))
    state: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(Text)
    bytes: Mapped[int] = mapped_column(BigInteger)
    lock_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    last_verified_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    tombstone_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class RuleRow(Base):
    """A replication rule: keep ``copies`` replicas of a DID on RSEs matching an expression."""

    __tablename__ = "rules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    did_id: Mapped[int] = mapped_column(ForeignKey("dids.id"), index=True)
    account: Mapped[str] = mapped_column(String(64))
    rse_expression: Mapped[str] = mapped_column(Text)
    source_expression: Mapped[str | None] = mapped_column(Text)
    copies: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), index=True)
    error: Mapped[str | None] = mapped_column(Text)
    priority: Mapped[int] = mapped_column(Integer, default=3)
    activity: Mapped[str] = mapped_column(String(64), default="default")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime, index=True)
    policy: Mapped[str | None] = mapped_column(String(64))
    comment: Mapped[str | None] = mapped_column(Text)
    locked: Mapped[bool] = mapped_column(Boolean, default=False)
    purge_replicas: Mapped[bool] = mapped_column(Boolean, default=False)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    next_evaluation_at: Mapped[dt.datetime | None] = mapped_column(DateTime, index=True)
    #: Requests for evaluation: every ``bump_rules`` (an attach, a replica lost) adds one.
    #: A counter, not a time, so that a request cannot be mistaken for an older one whatever
    #: the clocks of the hosts and however the transactions interleave.
    generation: Mapped[int] = mapped_column(Integer, default=1, server_default="0")
    #: The ``generation`` the last finished evaluation started from; lower than
    #: ``generation`` while a request is outstanding (the rule must not be settled OK then).
    evaluated_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class AccountRow(Base):
    """Who acts on the archive; roles and tokens come with the operations subsystem."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str | None] = mapped_column(String(256))
    roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    disabled_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class EventRow(Base):
    """Append-only preservation record: who did what, when and why."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(ActivityId, primary_key=True)
    ts: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    account: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64), index=True)
    did_id: Mapped[int | None] = mapped_column(ForeignKey("dids.id"), index=True)
    rse_id: Mapped[int | None] = mapped_column(ForeignKey("rses.id"))
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class RuleLockRow(Base):
    """A rule's claim on one file's replica at one RSE: locked replicas are never deleted."""

    __tablename__ = "rule_locks"
    __table_args__ = (
        UniqueConstraint("rule_id", "did_id", "rse_id"),
        Index("ix_rule_locks_did_rse", "did_id", "rse_id"),
    )

    id: Mapped[int] = mapped_column(ActivityId, primary_key=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("rules.id"), index=True)
    did_id: Mapped[int] = mapped_column(ForeignKey("dids.id"))
    rse_id: Mapped[int] = mapped_column(ForeignKey("rses.id"))
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class TransferRow(Base):
    """A copy of one file to one RSE that a rule still needs; claimed by transfer daemons."""

    __tablename__ = "transfers"
    __table_args__ = (
        Index("ix_transfers_state_next", "state", "next_attempt_at"),
        Index(
            "ix_transfers_open_unique",
            "did_id",
            "dest_rse_id",
            unique=True,
            sqlite_where=text("state IN ('QUEUED', 'ACTIVE')"),
            postgresql_where=text("state IN ('QUEUED', 'ACTIVE')"),
        ),
    )

    id: Mapped[int] = mapped_column(ActivityId, primary_key=True)
    did_id: Mapped[int] = mapped_column(ForeignKey("dids.id"), index=True)
    dest_rse_id: Mapped[int] = mapped_column(ForeignKey("rses.id"))
    source_rse_id: Mapped[int | None] = mapped_column(ForeignKey("rses.id"))
    rule_id: Mapped[int | None] = mapped_column(ForeignKey("rules.id"), index=True)
    state: Mapped[str] = mapped_column(String(16))
    activity: Mapped[str] = mapped_column(String(64), default="default")
    priority: Mapped[int] = mapped_column(Integer, default=3)
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=5)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class StageRequestRow(Base):
    """A request to bring a tape replica to the disk buffer; the buffer copy expires."""

    __tablename__ = "stage_requests"
    __table_args__ = (Index("ix_stage_requests_state_ready", "state", "ready_at"),)

    id: Mapped[int] = mapped_column(ActivityId, primary_key=True)
    did_id: Mapped[int] = mapped_column(ForeignKey("dids.id"), index=True)
    rse_id: Mapped[int] = mapped_column(ForeignKey("rses.id"))
    state: Mapped[str] = mapped_column(String(16))
    account: Mapped[str] = mapped_column(String(64))
    buffer_path: Mapped[str | None] = mapped_column(Text)
    requested_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    ready_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime, index=True)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    error: Mapped[str | None] = mapped_column(Text)


class HeartbeatRow(Base):
    """One live daemon instance; instances of a daemon split work by their rank."""

    __tablename__ = "heartbeats"
    __table_args__ = (UniqueConstraint("daemon", "instance"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    daemon: Mapped[str] = mapped_column(String(64), index=True)
    instance: Mapped[str] = mapped_column(String(128))
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_seen: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class TokenRow(Base):
    """A bearer token, stored only as a hash; expires and can be revoked."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


__all__ = [
    "AccountRow",
    "ActivityId",
    "AttachmentRow",
    "Base",
    "DIDRow",
    "EventRow",
    "HeartbeatRow",
    "RSERow",
    "ReplicaRow",
    "RuleLockRow",
    "RuleRow",
    "StageRequestRow",
    "TokenRow",
    "TransferRow",
    "utcnow",
]

from dpps.catalog import models_wms as models_wms  # noqa: E402  (WMS tables, same metadata)
