"""The archive's aggregates: what the dashboard, ``dpps report``, ``/metrics`` and scenarios count.

Each function takes a session and only reads. Numbers on the dashboard, in the report and on
``/metrics`` come from here, so they agree with each other by construction. The workload
manager's aggregates (jobs, workflows, campaigns) are ``dpps.wms.stats``: the archive does
not know the WMS.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session, aliased

from dpps.catalog.models import (
    DIDRow,
    EventRow,
    HeartbeatRow,
    ReplicaRow,
    RSERow,
    RuleRow,
    TransferRow,
)
from dpps.core.clock import utcnow
from dpps.core.states import DIDType, ReplicaState, RuleState, TransferState

#: Transfers still to finish (counted as "in flight" on the dashboard).
TRANSFER_IN_FLIGHT = (TransferState.QUEUED.value, TransferState.ACTIVE.value)


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


@dataclass(frozen=True, slots=True)
class HeartbeatAge:
    daemon: str
    instance: str
    seconds: float


def _volumes(rows: Iterable[Any]) -> list[Volume]:
    return [Volume(str(k), int(n or 0), int(b or 0)) for k, n, b in rows]


def stored_by_site_and_level(
    session: Session, *, live_files_only: bool = False
) -> list[SiteLevelVolume]:
    """AVAILABLE replicas per data center (site) and data level: what the archive holds
    (``live_files_only``: of files not deleted; a level-less file counts as ``none``)."""
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
    if live_files_only:
        stmt = stmt.where(DIDRow.did_type == DIDType.FILE.value, DIDRow.deleted_at.is_(None))
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
    return [Volume(key, *found.get(key, (0, 0))) for key in buckets(since, until, unit)]


def buckets(since: dt.datetime, until: dt.datetime, unit: str = "hour") -> list[str]:
    """Every hour (or day) of [since, until) as the keys ``_bucket`` gives: a time series
    shows the empty hours too, not a line drawn straight across them."""
    step = dt.timedelta(hours=1) if unit == "hour" else dt.timedelta(days=1)
    t = since.replace(minute=0, second=0, microsecond=0)
    if unit == "day":
        t = t.replace(hour=0)
    out = []
    while t < until:
        out.append(t.strftime("%Y-%m-%d %H:00"))
        t += step
    return out


@dataclass(frozen=True, slots=True)
class LinkVolume:
    """Transfers of one link (source site -> destination site) that ended in ``state`` in
    one hour or day; ``source`` is empty for a transfer that never had one chosen."""

    bucket: str
    source: str
    dest: str
    state: str
    files: int
    bytes: int


def transfers_by_link(
    session: Session, since: dt.datetime, until: dt.datetime, unit: str = "hour"
) -> list[LinkVolume]:
    """Transfers that ended (DONE or FAILED) in [since, until), per hour (or day) and link:
    a data center's problem shows as one link failing, not as a global rate going down."""
    if unit not in ("hour", "day"):
        raise ValueError(unit)
    src, dst = aliased(RSERow), aliased(RSERow)
    ended = func.coalesce(TransferRow.finished_at, TransferRow.updated_at)
    bucket = _bucket(session, ended, unit)
    stmt = (
        select(
            bucket,
            src.site,
            dst.site,
            TransferRow.state,
            func.count(),
            func.coalesce(func.sum(TransferRow.bytes), 0),
        )
        .join(dst, dst.id == TransferRow.dest_rse_id)
        .outerjoin(src, src.id == TransferRow.source_rse_id)
        .where(
            TransferRow.state.in_([TransferState.DONE.value, TransferState.FAILED.value]),
            ended >= since,
            ended < until,
        )
        .group_by(bucket, src.site, dst.site, TransferRow.state)
    )
    return [
        LinkVolume(str(k), str(a or ""), str(b), str(st), int(n), int(v))
        for k, a, b, st, n, v in session.execute(stmt)
    ]


def count_by(
    session: Session, column: InstrumentedAttribute[Any], *where: ColumnElement[bool]
) -> dict[str, int]:
    """Rows by the value of ``column`` (a mapped attribute), in value order."""
    stmt = select(column, func.count()).where(*where).group_by(column).order_by(column)
    return {str(k): int(n) for k, n in session.execute(stmt)}


def rules_by_state(session: Session, *, policy: str | None = None) -> dict[str, int]:
    """Rules by state; ``policy``: only the rules a named replication policy gave."""
    where = () if policy is None else (RuleRow.policy == policy,)
    return count_by(session, RuleRow.state, *where)


def transfers_by_state(session: Session) -> dict[str, int]:
    return count_by(session, TransferRow.state)


def events_by_action(session: Session, since: dt.datetime, until: dt.datetime) -> dict[str, int]:
    return count_by(session, EventRow.action, EventRow.ts >= since, EventRow.ts < until)


def events_after(session: Session, after_id: int) -> list[tuple[str, int, int]]:
    """(action, count, largest id) of the events newer than ``after_id``: lets a scraper
    count events incrementally instead of reading the whole record at every scrape."""
    stmt = (
        select(EventRow.action, func.count(), func.max(EventRow.id))
        .where(EventRow.id > after_id)
        .group_by(EventRow.action)
    )
    return [(str(a), int(n), int(top)) for a, n, top in session.execute(stmt)]


def heartbeat_ages(session: Session, now: dt.datetime | None = None) -> list[HeartbeatAge]:
    """Seconds since each live daemon instance last beat."""
    now = now or utcnow()
    return [
        HeartbeatAge(h.daemon, h.instance, (now - h.last_seen).total_seconds())
        for h in session.scalars(select(HeartbeatRow))
    ]


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
    session: Session, state: TransferState, since: dt.datetime, until: dt.datetime
) -> list[Volume]:
    """Transfers that ended in ``state`` in the window, per destination site."""
    stmt = (
        select(RSERow.site, func.count(), func.coalesce(func.sum(TransferRow.bytes), 0))
        .join(RSERow, RSERow.id == TransferRow.dest_rse_id)
        .where(
            TransferRow.state == state.value,
            and_(TransferRow.updated_at >= since, TransferRow.updated_at < until),
        )
        .group_by(RSERow.site)
        .order_by(RSERow.site)
    )
    return _volumes(session.execute(stmt))


def files_by_offsite_sites(session: Session, lfn_prefix: str) -> Counter[int]:
    """How many files under ``lfn_prefix`` have AVAILABLE copies at N distinct off-site data
    centres (N = 0 for those with none): the preservation goal seen from the files."""
    under = DIDRow.name.like(f"{lfn_prefix}%")
    is_file = DIDRow.did_type == DIDType.FILE.value
    stmt = (
        select(DIDRow.id, RSERow.site)
        .join(ReplicaRow, ReplicaRow.did_id == DIDRow.id)
        .join(RSERow, RSERow.id == ReplicaRow.rse_id)
        .where(
            ReplicaRow.state == ReplicaState.AVAILABLE.value,
            RSERow.onsite.is_(False),
            under,
            is_file,
        )
    )
    sites: dict[int, set[str]] = defaultdict(set)
    all_ids = session.scalars(select(DIDRow.id).where(under, is_file)).all()
    for did_id, site in session.execute(stmt):
        sites[did_id].add(str(site))
    return Counter(len(sites.get(i, set())) for i in all_ids)


#: Events of a copy attempt's end, by what ``/metrics`` calls its outcome: a copy made, a
#: failed attempt that will be retried, a transfer given up after its last attempt.
TRANSFER_OUTCOMES = {
    "transfer.done": "done",
    "transfer.retry": "retry",
    "transfer.failed": "failed",
}


def transfer_outcomes_after(
    session: Session, after_id: int
) -> list[tuple[str, str, str, int, int]]:
    """(outcome, source RSE, destination RSE, count, largest id) of the copy attempts ended
    after event ``after_id``: per-link counts read incrementally, like ``events_after``. The
    source comes from the event (a failed transfer forgets it in its row); ``unknown`` when an
    event names none (a transfer done because the copy was already there)."""
    source = EventRow.details["source"].as_string()
    stmt = (
        select(EventRow.action, source, RSERow.name, func.count(), func.max(EventRow.id))
        .select_from(EventRow)
        .outerjoin(RSERow, RSERow.id == EventRow.rse_id)
        .where(EventRow.id > after_id, EventRow.action.in_(list(TRANSFER_OUTCOMES)))
        .group_by(EventRow.action, source, RSERow.name)
    )
    return [
        (TRANSFER_OUTCOMES[str(a)], str(s or "unknown"), str(d or "unknown"), int(n), int(top))
        for a, s, d, n, top in session.execute(stmt)
    ]


def rule_state_ages(session: Session, now: dt.datetime | None = None) -> dict[str, float]:
    """Per state other than OK: seconds since the rule longest in it entered it.

    A rule enters a state at its last ``rule.state`` event that changed the state (its error
    may change meanwhile without restarting the clock), or at its creation when it never
    changed. Only the events of rules not OK are read, so the cost follows the problems, not
    the archive's size. This is what makes "stuck for longer than an hour" an alert rather
    than the mere count of STUCK rules, which a healthy archive shows briefly."""
    now = now or utcnow()
    pending = {
        rid: (str(state), created)
        for rid, state, created in session.execute(
            select(RuleRow.id, RuleRow.state, RuleRow.created_at).where(
                RuleRow.state != RuleState.OK.value
            )
        )
    }
    if not pending:
        return {}
    since = {rid: created for rid, (_state, created) in pending.items()}
    not_ok_dids = select(RuleRow.did_id).where(RuleRow.state != RuleState.OK.value)
    changes = session.execute(
        select(EventRow.ts, EventRow.details).where(
            EventRow.action == "rule.state", EventRow.did_id.in_(not_ok_dids)
        )
    )
    for ts, details in changes:
        rid = details.get("rule_id")
        if rid in since and details.get("from") != details.get("to") and ts > since[rid]:
            since[rid] = ts
    ages: dict[str, float] = {}
    for rid, (state, _created) in pending.items():
        age = max(0.0, (now - since[rid]).total_seconds())
        ages[state] = max(ages.get(state, 0.0), age)
    return dict(sorted(ages.items()))
