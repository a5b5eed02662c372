"""Which replicas of a file can be read now, best first, and staging the ones only tape holds.

One definition of "readable" for everyone who reads: ``dpps get`` (``bdms.retrieve``), the
WMS deciding whether a job's inputs are there and at which site (``with_readable_replicas``),
and a worker reading an input in place. A replica is readable when it is AVAILABLE on an RSE
that is available and configured here; the best one is on disk before tape, then the one with
the lowest estimated time (latency + size / bandwidth + staging delay, from the configuration).

Every function takes the caller's session and never commits: the WMS checks and requests
staging inside its own job transactions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from dpps.bdms.records import StageState
from dpps.bdms.resolve import REF_COLUMNS, IdColumn, Rows, ref_from
from dpps.bdms.staging import stager
from dpps.bdms.types import FileRef, ReplicaInfo, ReplicaSite
from dpps.catalog.models import DIDRow, ReplicaRow, RSERow, StageRequestRow
from dpps.catalog.replicas import replicas_of
from dpps.catalog.sets import among
from dpps.core.clock import utcnow
from dpps.core.config import Config
from dpps.core.states import ReplicaState, RSEKind

#: A READY buffer copy that expires sooner than this is not counted on (a job would miss it).
STAGED_MARGIN = dt.timedelta(seconds=60)


class ReplicaFields(Protocol):
    """What ranking reads of a replica: its ORM row, or the columns of a joined read
    (``catalog.replicas.ReplicaCopy``, ``locate``'s path without ORM objects)."""

    @property
    def state(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def bytes(self) -> int: ...
    @property
    def last_verified_at(self) -> dt.datetime | None: ...


class RSEFields(Protocol):
    """What ranking reads of an RSE: its ORM row, or ``catalog.replicas.RSEPlace``."""

    @property
    def name(self) -> str: ...
    @property
    def site(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def available(self) -> bool: ...


def is_readable(config: Config, state: str | None, rse: str | None, rse_up: Any) -> bool:
    """The one rule: AVAILABLE, on an available RSE that this configuration knows."""
    return state == ReplicaState.AVAILABLE.value and bool(rse_up) and rse in config.rses


def estimate_seconds(config: Config, rse: RSEFields, size: int) -> float:
    """Expected time to have the file locally, from the RSE's configured figures."""
    cfg = config.rses.get(rse.name)
    if cfg is None:
        return float("inf")
    seconds = cfg.latency_ms / 1000.0 + size / (cfg.bandwidth_mb_s * 1e6)
    if cfg.kind == RSEKind.TAPE:
        seconds += cfg.staging_delay_s
    return seconds


def replica_info(config: Config, rep: ReplicaFields, rse: RSEFields) -> ReplicaInfo:
    return ReplicaInfo(
        rse=rse.name,
        site=rse.site,
        kind=rse.kind,
        state=rep.state,
        path=rep.path,
        bytes=rep.bytes,
        last_verified_at=rep.last_verified_at,
        estimated_seconds=round(estimate_seconds(config, rse, rep.bytes), 6),
    )


def ranked(config: Config, pairs: Sequence[tuple[ReplicaFields, RSEFields]]) -> list[ReplicaInfo]:
    """Readable replicas, best first: disk before tape, then by estimated time."""
    usable = [
        replica_info(config, rep, rse)
        for rep, rse in pairs
        if is_readable(config, rep.state, rse.name, rse.available)
    ]
    return sorted(usable, key=lambda r: (r.kind == RSEKind.TAPE.value, r.estimated_seconds, r.rse))


def readable_replicas(session: Session, config: Config, did_id: int) -> list[ReplicaInfo]:
    """The file's readable replicas, best first (none for an unknown id)."""
    return ranked(config, replicas_of(session, did_id))


def with_readable_replicas(
    session: Session, config: Config, stmt: Rows, did_id: IdColumn
) -> list[tuple[tuple[Any, ...], FileRef, ReplicaSite | None]]:
    """The caller's rows with the file each names and its replicas, in one statement.

    A row per (caller row, replica): the ``ReplicaSite`` when that replica is readable, else
    None, and one row with None for a file with no replica at all, so every file is seen.
    ``stmt`` selects from the caller's own tables; rows naming no DID are left out.
    """
    width = len(stmt.selected_columns)
    joined = (
        stmt.add_columns(
            *REF_COLUMNS, ReplicaRow.state, RSERow.name, RSERow.site, RSERow.kind, RSERow.available
        )
        .join(DIDRow, DIDRow.id == did_id)
        .outerjoin(ReplicaRow, ReplicaRow.did_id == DIDRow.id)
        .outerjoin(RSERow, RSERow.id == ReplicaRow.rse_id)
    )
    out: list[tuple[tuple[Any, ...], FileRef, ReplicaSite | None]] = []
    refs: dict[int, FileRef] = {}  # a file read by many jobs, or on many RSEs: one record
    sites: dict[str, ReplicaSite] = {}  # and one per RSE
    end = width + len(REF_COLUMNS)
    for row in session.execute(joined):
        ref = refs.get(row[width])
        if ref is None:
            ref = refs[row[width]] = ref_from(row[width:end])
        state, rse, site, kind, up = row[end:]
        where = None
        if is_readable(config, state, rse, up):
            where = sites.get(rse)
            if where is None:
                where = sites[rse] = ReplicaSite(rse, site, kind)
        out.append((tuple(row[:width]), ref, where))
    return out


# -- staging ------------------------------------------------------------------------------


def staged(session: Session, did_ids: Sequence[int]) -> set[int]:
    """Files with a READY copy in the staging buffer that is not about to expire."""
    if not did_ids:
        return set()
    soon = utcnow() + STAGED_MARGIN
    return set(
        session.scalars(
            select(StageRequestRow.did_id).where(
                StageRequestRow.did_id.in_(did_ids),
                StageRequestRow.state == StageState.READY.value,
                StageRequestRow.expires_at > soon,
            )
        )
    )


def request_staging(
    session: Session, config: Config, did_ids: Iterable[int], *, account: str
) -> list[int]:
    """Ask the stager to bring these files' tape replicas to the buffer; the request ids.

    Asking for a file already queued or staged joins its open request (a READY copy lives
    longer), so asking again is free. An id naming no file is skipped; a file with no
    AVAILABLE tape replica is Unavailable.
    """
    ids = list(did_ids)
    if not ids:
        return []
    rows = {r.id: r for r in session.scalars(select(DIDRow).where(among(session, DIDRow.id, ids)))}
    return [
        stager.request_stage(session, config, rows[i], account=account).id
        for i in ids
        if i in rows
    ]


__all__ = [
    "STAGED_MARGIN",
    "RSEFields",
    "ReplicaFields",
    "estimate_seconds",
    "is_readable",
    "ranked",
    "readable_replicas",
    "replica_info",
    "request_staging",
    "staged",
    "with_readable_replicas",
]
