"""Aggregate read queries shared by the dashboard, the reports, the health check and metrics.

Each function takes a session and only reads. Numbers on the dashboard, in ``dpps report`` and
on ``/metrics`` come from here, so they agree with each other by construction. Tables owned by
subsystems still being built (jobs, workflows) are looked up by reflection: until they exist
the functions say so (``None``) instead of failing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, MetaData, Table, and_, func, inspect, select
from sqlalchemy.orm import Session

from dpps.catalog.models import DIDRow, EventRow, ReplicaRow, RSERow, RuleRow, TransferRow
from dpps.catalog.models_wms import CampaignRow
from dpps.core.states import DIDType, ReplicaState

#: Transfer states as the transfer daemon writes them (terminal ones counted in reports).
TRANSFER_DONE = "DONE"
TRANSFER_FAILED = "FAILED"
TRANSFER_IN_FLIGHT = ("QUEUED", "ACTIVE")


@dataclass(frozen=True, slots=True)
class Volume:
    """Files and bytes for one key (a site, an RSE, a data level, a time bucket)."""

    key: str
    files: int
    bytes: int


@dataclass(frozen=True, slots=True)
class SiteLevelVolume:
    site: str
    data_level: str
    files: int
    bytes: int


def _volumes(rows: Any) -> list[Volume]:
    return [Volume(str(k), int(n or 0), int(b or 0)) for k, n, b in rows]


def stored_by_site_and_level(session: Session) -> list[SiteLevelVolume]:
    """AVAILABLE replicas per data center (site) and data level: what the archive holds."""
    level = func.coalesce(DIDRow.data_level, "none")
    stmt = (
        select(RSERow.site, level, func.count(), func.coalesce(func.sum(ReplicaRow.bytes), 0))
        .select_from(ReplicaRow)
        .join(RSERow, RSERow.id == ReplicaRow.rse_id)
        .join(DIDRow, DIDRow.id == ReplicaRow.did_id)
        .where(ReplicaRow.state == ReplicaState.AVAILABLE.value)
        .group_by(RSERow.site, level)
        .order_by(RSERow.site, level)
    )
    return [SiteLevelVolume(s, lv, int(n), int(b)) for s, lv, n, b in session.execute(stmt)]


def catalog_totals(session: Session) -> Volume:
    """Distinct files (all versions, not deleted) and their bytes, whatever their copies."""
    stmt = select(func.count(), func.coalesce(func.sum(DIDRow.bytes), 0)).where(
        DIDRow.did_type == DIDType.FILE.value, DIDRow.deleted_at.is_(None)
    )
    n, b = session.execute(stmt).one()
    return Volume("all", int(n or 0), int(b or 0))


def files_by_level(session: Session) -> list[Volume]:
    level = func.coalesce(DIDRow.data_level, "none")
    stmt = (
        select(level, func.count(), func.coalesce(func.sum(DIDRow.bytes), 0))
        .where(DIDRow.did_type == DIDType.FILE.value, DIDRow.deleted_at.is_(None))
        .group_by(level)
        .order_by(level)
    )
    return _volumes(session.execute(stmt))


def replicas_by_rse_state(session: Session) -> list[tuple[str, str, int, int]]:
    stmt = (
        select(RSERow.name, ReplicaRow.state, func.count(), func.sum(ReplicaRow.bytes))
        .join(RSERow, RSERow.id == ReplicaRow.rse_id)
        .group_by(RSERow.name, ReplicaRow.state)
        .order_by(RSERow.name, ReplicaRow.state)
    )
    return [(r, s, int(n), int(b or 0)) for r, s, n, b in session.execute(stmt)]


def _bucket(session: Session, column: Any, unit: str) -> ColumnElement[Any]:
    """The start of the hour or day of ``column``, as text, on both backends."""
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.date_trunc(unit, column), "YYYY-MM-DD HH24:00")
    fmt = "%Y-%m-%d %H:00" if unit == "hour" else "%Y-%m-%d 00:00"
    return func.strftime(fmt, column)


def ingestion_rate(
    session: Session, since: dt.datetime, until: dt.datetime, unit: str = "hour"
) -> list[Volume]:
    """Files and bytes registered per hour (or day) in [since, until), every bucket listed."""
    if unit not in ("hour", "day"):
        raise ValueError(unit)
    bucket = _bucket(session, DIDRow.created_at, unit)
    stmt = (
        select(bucket, func.count(), func.coalesce(func.sum(DIDRow.bytes), 0))
        .where(
            DIDRow.did_type == DIDType.FILE.value,
            DIDRow.created_at >= since,
            DIDRow.created_at < until,
        )
        .group_by(bucket)
    )
    found = {k: (int(n), int(b)) for k, n, b in session.execute(stmt)}
    step = dt.timedelta(hours=1) if unit == "hour" else dt.timedelta(days=1)
    start = since.replace(minute=0, second=0, microsecond=0)
    if unit == "day":
        start = start.replace(hour=0)
    out: list[Volume] = []
    t = start
    while t < until:
        key = t.strftime("%Y-%m-%d %H:00")
        n, b = found.get(key, (0, 0))
        out.append(Volume(key, n, b))
        t += step
    return out


def count_by(session: Session, column: Any, *where: ColumnElement[bool]) -> dict[str, int]:
    stmt = select(column, func.count()).where(*where).group_by(column).order_by(column)
    return {str(k): int(n) for k, n in session.execute(stmt)}


def rules_by_state(session: Session) -> dict[str, int]:
    return count_by(session, RuleRow.state)


def transfers_by_state(session: Session) -> dict[str, int]:
    return count_by(session, TransferRow.state)


def campaigns_by_state(session: Session) -> dict[str, int]:
    """Campaign records by state (QUEUED, RUNNING, DONE, FAILED)."""
    return count_by(session, CampaignRow.state)


def events_by_action(session: Session, since: dt.datetime, until: dt.datetime) -> dict[str, int]:
    return count_by(session, EventRow.action, EventRow.ts >= since, EventRow.ts < until)


def ingested_by_site(session: Session, since: dt.datetime, until: dt.datetime) -> list[Volume]:
    """Files registered in the window, per site of the RSE that received them."""
    stmt = (
        select(RSERow.site, func.count(), func.coalesce(func.sum(DIDRow.bytes), 0))
        .select_from(EventRow)
        .join(DIDRow, DIDRow.id == EventRow.did_id)
        .join(RSERow, RSERow.id == EventRow.rse_id)
        .where(EventRow.action == "file.register", EventRow.ts >= since, EventRow.ts < until)
        .group_by(RSERow.site)
        .order_by(RSERow.site)
    )
    return _volumes(session.execute(stmt))


def transfers_by_site(
    session: Session, state: str, since: dt.datetime, until: dt.datetime
) -> list[Volume]:
    """Transfers that ended in ``state`` in the window, per destination site."""
    stmt = (
        select(RSERow.site, func.count(), func.coalesce(func.sum(TransferRow.bytes), 0))
        .join(RSERow, RSERow.id == TransferRow.dest_rse_id)
        .where(
            TransferRow.state == state,
            and_(TransferRow.updated_at >= since, TransferRow.updated_at < until),
        )
        .group_by(RSERow.site)
        .order_by(RSERow.site)
    )
    return _volumes(session.execute(stmt))


def optional_table(session: Session, name: str) -> Table | None:
    """A table of a subsystem that may not be migrated in yet (jobs, workflows)."""
    bind = session.get_bind()
    if not inspect(bind).has_table(name):
        return None
    return Table(name, MetaData(), autoload_with=bind)


def optional_counts(session: Session, table: str, column: str = "state") -> dict[str, int] | None:
    """Rows of ``table`` by ``column``, or None while the table does not exist."""
    t = optional_table(session, table)
    if t is None or column not in t.c:
        return None
    return count_by(session, t.c[column])
