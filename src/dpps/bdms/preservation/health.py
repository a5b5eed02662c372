"""``dpps health``: is the archive keeping its promises right now? An operator's alarm.

One read-only look at the catalog (and at the local RSE roots): which daemons beat recently,
which rules are STUCK, which files have fewer good copies than their rules want, which RSEs are
unavailable, and - the alarm that must never ring - which live files have no AVAILABLE copy at
all. Each is a ``HealthCheck``; the report is healthy only when every check passes, so that
"healthy" never hides files waiting for copies that nobody is making (no daemon running) or
storage that is gone. The operations subsystem extends this report; the checks here are the
preservation ones.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from sqlalchemy import ColumnElement, Select, exists, func, select
from sqlalchemy.orm import Session

from dpps.bdms.daemons import REGISTRY
from dpps.bdms.records import DaemonHealth, HealthCheck, HealthReport, RuleProblem, Shortfall
from dpps.bdms.replication import rse_expression
from dpps.catalog.models import (
    DIDRow,
    EventRow,
    HeartbeatRow,
    ReplicaRow,
    RSERow,
    RuleRow,
    StageRequestRow,
    utcnow,
)
from dpps.catalog.replication import chunks, expand_files
from dpps.core.config import Config
from dpps.core.errors import InvalidInput, NotFound, Unavailable
from dpps.core.states import DIDType, ReplicaState, RuleState
from dpps.storage.rse import StorageElement

#: A daemon instance silent for longer than this is reported stale (seconds); the default
#: of ``health.stale_after_s``.
STALE_AFTER_S = 120.0
#: Items listed per problem (the counts are always complete).
SHOW = 20


def _label(scope: str, name: str) -> str:
    return f"{scope}:{name}"


def daemons(
    session: Session, now: dt.datetime, stale_after_s: float = STALE_AFTER_S
) -> list[DaemonHealth]:
    beats: dict[str, list[dt.datetime]] = defaultdict(list)
    for name, last_seen in session.execute(select(HeartbeatRow.daemon, HeartbeatRow.last_seen)):
        beats[name].append(last_seen)
    out = []
    for name in sorted(set(REGISTRY) | set(beats)):
        seen = beats.get(name, [])
        last = max(seen) if seen else None
        stale = last is not None and (now - last).total_seconds() > stale_after_s
        out.append(DaemonHealth(name, len(seen), last, stale))
    return out


def daemons_check(found: list[DaemonHealth], required: tuple[str, ...]) -> HealthCheck:
    """Every required daemon has a live instance, and no instance has gone silent.

    Site processes beat as ``NAME@RSES`` (``reaper@CTAO-N``): a required ``reaper`` is
    running when any of them is, ``reaper@CTAO-N`` only when that one is."""
    running = running_names(found)
    missing = [n for n in required if not is_running(n, running)]
    stale = [d.name for d in found if d.stale and d.name not in missing]
    problems = [f"{n}: not running" for n in missing] + [f"{n}: heartbeat stale" for n in stale]
    if not problems:
        return HealthCheck("daemons", True)
    parts = []
    if missing:
        parts.append(f"needed daemon(s) not running: {', '.join(missing)}")
    if stale:
        parts.append(f"daemon(s) silent too long: {', '.join(stale)}")
    return HealthCheck("daemons", False, len(problems), "; ".join(parts), problems)


def running_names(found: list[DaemonHealth]) -> set[str]:
    """The daemons with at least one instance that beat recently."""
    return {d.name for d in found if d.instances and not d.stale}


def is_running(required: str, running: set[str]) -> bool:
    """Whether ``required`` counts as running (``reaper`` is, when ``reaper@CTAO-N`` is):
    shared by ``dpps health`` and ``/metrics`` so the alarm and the alert agree."""
    if required in running:
        return True
    return "@" not in required and any(n.partition("@")[0] == required for n in running)


def rses_check(session: Session, config: Config) -> HealthCheck:
    """Every configured RSE is available in the catalog and, when it is a local directory,
    its root is there (a data center's disk that is not mounted)."""
    flagged = {row.name for row in session.scalars(select(RSERow)) if row.name in config.rses} - {
        row.name for row in session.scalars(select(RSERow).where(RSERow.available))
    }
    problems = [f"{n}: marked unavailable in the catalog" for n in sorted(flagged)]
    for name in sorted(config.rses):
        try:
            StorageElement.from_config(name, config).require_root("health check")
        except (Unavailable, NotFound, InvalidInput) as exc:
            problems.append(f"{name}: {exc}")
    if not problems:
        return HealthCheck("rses", True)
    names = sorted({p.partition(":")[0] for p in problems})
    return HealthCheck(
        "rses", False, len(names), f"RSE(s) unavailable: {', '.join(names)}", problems[:SHOW]
    )


def under_replicated(session: Session, config: Config) -> tuple[int, list[Shortfall], list[str]]:
    """Files with fewer AVAILABLE copies on a rule's RSEs than the rule's ``copies``."""
    rse_ids = {row.name: row.id for row in session.scalars(select(RSERow))}
    available = {row.name: row.available for row in session.scalars(select(RSERow))}
    short: dict[int, Shortfall] = {}
    notes: list[str] = []
    rules = session.scalars(
        select(RuleRow).where(RuleRow.state != RuleState.SUSPENDED.value).order_by(RuleRow.id)
    )
    for rule in rules:
        did = session.get(DIDRow, rule.did_id)
        if did is None:
            continue
        try:
            names = rse_expression.select(config, rule.rse_expression, available)
        except InvalidInput as exc:
            notes.append(f"rule {rule.id}: {exc.args[0].splitlines()[0]}")
            continue
        targets = [rse_ids[n] for n in names if n in rse_ids]
        files = [f for f, _size in expand_files(session, did)]
        for part in chunks(files):
            counts = dict(
                session.execute(
                    select(ReplicaRow.did_id, func.count())
                    .where(
                        ReplicaRow.did_id.in_(part),
                        ReplicaRow.rse_id.in_(targets),
                        ReplicaRow.state == ReplicaState.AVAILABLE.value,
                    )
                    .group_by(ReplicaRow.did_id)
                ).all()
            )
            for file_id in part:
                good = int(counts.get(file_id, 0))
                if good < rule.copies and file_id not in short:
                    short[file_id] = Shortfall("", rule.id, rule.copies, good)
    shown = sorted(short)[:SHOW]
    names_by_id = {
        row.id: _label(row.scope, row.name)
        for row in session.scalars(select(DIDRow).where(DIDRow.id.in_(shown)))
    }
    listed = [
        Shortfall(names_by_id.get(i, str(i)), short[i].rule_id, short[i].wanted, short[i].good)
        for i in shown
    ]
    return len(short), listed, notes


def _lost() -> tuple[ColumnElement[bool], ...]:
    good = exists().where(
        ReplicaRow.did_id == DIDRow.id, ReplicaRow.state == ReplicaState.AVAILABLE.value
    )
    return (DIDRow.did_type == DIDType.FILE.value, DIDRow.deleted_at.is_(None), ~good)


def lost_count(session: Session) -> int:
    """How many live files have no AVAILABLE replica (``/metrics`` needs no names)."""
    return int(session.scalar(select(func.count()).select_from(DIDRow).where(*_lost())) or 0)


def lost_files(session: Session) -> tuple[int, list[str]]:
    """Live files without a single AVAILABLE replica."""
    where = _lost()
    count = lost_count(session)
    rows = session.execute(
        select(DIDRow.scope, DIDRow.name).where(*where).order_by(DIDRow.name).limit(SHOW)
    )
    return count, [_label(s, n) for s, n in rows]


def _count(session: Session, stmt: Select[Any]) -> int:
    return int(session.scalar(stmt) or 0)


def replicas_in(state: ReplicaState) -> Select[Any]:
    return select(func.count()).select_from(ReplicaRow).where(ReplicaRow.state == state.value)


def report(session: Session, config: Config) -> HealthReport:
    now = utcnow()
    stuck = [
        RuleProblem(rule.id, _label(did.scope, did.name), rule.state, rule.error, rule.updated_at)
        for rule, did in session.execute(
            select(RuleRow, DIDRow)
            .join(DIDRow, DIDRow.id == RuleRow.did_id)
            .where(RuleRow.state == RuleState.STUCK.value)
            .order_by(RuleRow.updated_at)
        )
    ]
    short, short_listed, notes = under_replicated(session, config)
    lost, lost_listed = lost_files(session)
    found = daemons(session, now, config.health.stale_after_s)
    checks = [
        HealthCheck(
            "lost_files",
            not lost,
            lost,
            f"{lost} file(s) without any good copy" if lost else "",
            lost_listed,
        ),
        HealthCheck(
            "under_replicated",
            not short,
            short,
            f"{short} file(s) with fewer good copies than their rules want" if short else "",
            [f"{s.did}: {s.good} of {s.wanted} (rule {s.rule_id})" for s in short_listed],
        ),
        HealthCheck(
            "stuck_rules",
            not stuck,
            len(stuck),
            f"{len(stuck)} stuck rule(s)" if stuck else "",
            [f"rule {r.rule_id} on {r.did}: {r.error}" for r in stuck[:SHOW]],
        ),
        daemons_check(found, config.health.required_daemons),
        rses_check(session, config),
    ]
    return HealthReport(
        checked_at=now,
        daemons=found,
        stuck_rules=stuck,
        under_replicated=short,
        under_replicated_files=short_listed,
        lost=lost,
        lost_files=lost_listed,
        lost_events=_count(
            session,
            select(func.count()).select_from(EventRow).where(EventRow.action == "file.lost"),
        ),
        bad_replicas=_count(session, replicas_in(ReplicaState.BAD)),
        being_deleted=_count(session, replicas_in(ReplicaState.BEING_DELETED)),
        stage_queued=_count(
            session,
            select(func.count())
            .select_from(StageRequestRow)
            .where(StageRequestRow.state == "QUEUED"),
        ),
        notes=notes,
        checks=checks,
    )
