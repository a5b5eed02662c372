"""The reaper daemon (UC-110-1.8, UC-110-1.9): delete what is past its retention, nothing else.

Each pass, in order:

1. **lifetimes**: files matching a ``reaper.lifetimes`` filter (simulated DL0: 3 years) and
   without an end of life get ``expires_at = created_at + lifetime`` (with an event);
2. **expired rules**: a rule past ``expires_at`` is removed; the replicas only it locked get a
   tombstone;
3. **expired files**: a file past ``expires_at`` loses its rules' locks and all its replicas and
   keeps its row with ``deleted_at``;
4. **on-site copies** (the ESCAPE long-haul scenario): an unlocked AVAILABLE replica on an
   on-site RSE, older than ``reaper.onsite_retention_days``, of a file whose every rule (on the
   file or on a dataset or container holding it) is OK and that has at least
   ``reaper.min_offsite_copies`` AVAILABLE off-site copies;
5. **tombstones**: unlocked replicas whose tombstone passed - never a live file's last AVAILABLE
   copy - and deletions a killed process left BEING_DELETED.

Every candidate is re-checked by the UPDATE that marks it BEING_DELETED (``lock_count = 0``), so
a rule locking a replica at the same moment wins. Instances split candidates by replica id.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Sequence
from functools import partial

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from dpps.bdms.preservation import deletion
from dpps.bdms.preservation.records import Doomed, ReaperLedger
from dpps.catalog import events, replication
from dpps.catalog.context import CatalogContext
from dpps.catalog.engine import transaction, write
from dpps.catalog.models import AttachmentRow, DIDRow, ReplicaRow, RSERow, RuleRow
from dpps.catalog.query import compile_filter
from dpps.core.clock import utcnow
from dpps.core.config import Config
from dpps.core.daemon import Daemon, DaemonContext
from dpps.core.errors import ConfigError, InvalidInput
from dpps.core.states import DIDType, ReplicaState, RuleState

log = logging.getLogger("dpps.reaper")

DAEMON = "reaper"
#: Why a file's replicas go when its lifetime ends.
EXPIRED = "lifetime ended"
#: A BEING_DELETED replica untouched this long was left by a process that died (seconds).
RESUME_AFTER_S = 60.0
#: Depth of datasets/containers searched for rules covering a file.
MAX_DEPTH = 5


def one_pass(
    ctx: DaemonContext,
    factory: sessionmaker[Session],
    config: Config,
    *,
    rses: frozenset[str] | None = None,
) -> int:
    """One pass of every step; returns the number of rules, files and replicas handled.

    The ``Reaper`` daemon's work, and what ``Preservation.reap`` runs once on its own: the
    catalog's side (``mark``), then the bytes (``deletion.remove_bytes``), then the rows
    (``deletion.forget``). With ``rses`` (a site's reaper, ``--site``/``--rses``) only
    replicas on those RSEs are deleted; the catalog-only steps run as everywhere, and a
    file's replicas at other sites that expiry marked BEING_DELETED are finished by those
    sites' reapers."""
    done, reasons = mark(ctx, factory, config, rses=rses)
    with factory() as session:
        doomed = deletion.doomed_rows(session, reasons)
    removed, errors = deletion.remove_bytes(config, doomed, rses)
    for error in errors:
        log.warning("deletion postponed: %s", error)
    deletion.forget(factory, removed, account=ctx.name)
    return done + sum(1 for d in removed if d.reason != EXPIRED)


def mark(
    ctx: DaemonContext,
    factory: sessionmaker[Session],
    config: Config,
    *,
    rses: frozenset[str] | None = None,
) -> tuple[int, dict[int, str]]:
    """The catalog's side of a pass, touching no storage: (lifetimes stamped, rules and files
    expired; {replica id: why} for the replicas on ``rses`` now BEING_DELETED: marked by
    this pass, or left so by a process that died). What the API runs for a site's reaper
    that reaches the catalog through it (``claim``)."""
    done = apply_lifetimes(ctx, factory, config) + expire_rules(ctx, factory, config)
    files, expired = expire_files(ctx, factory, config)
    reasons = dict.fromkeys(_served(factory, expired, rses), EXPIRED)
    for step in (mark_onsite, mark_tombstoned, stale_deletions):
        if ctx.stopping:
            break
        reasons.update(step(ctx, factory, config, rses=rses))
    return done + files, reasons


def claim(
    ctx: DaemonContext,
    factory: sessionmaker[Session],
    config: Config,
    *,
    rses: frozenset[str],
) -> list[Doomed]:
    """``mark``, then where each doomed replica is: a site's reaper removes those bytes."""
    _done, reasons = mark(ctx, factory, config, rses=rses)
    with factory() as session:
        return deletion.doomed_rows(session, reasons)


def _on(rses: frozenset[str] | None) -> list[ColumnElement[bool]]:
    """The condition keeping a query to the served RSEs (``ReplicaRow`` joined to ``RSERow``
    or a subquery on it)."""
    if rses is None:
        return []
    return [ReplicaRow.rse_id.in_(select(RSERow.id).where(RSERow.name.in_(sorted(rses))))]


def apply_lifetimes(ctx: DaemonContext, factory: sessionmaker[Session], config: Config) -> int:
    stamped = 0
    for text, days in sorted(config.reaper.lifetimes.items()):
        try:
            condition = compile_filter(text)
        except InvalidInput as exc:
            raise ConfigError(f"reaper.lifetimes: filter {text!r}: {exc}") from None
        lifetime = dt.timedelta(days=days)
        with transaction(factory) as session:
            rows = session.execute(
                select(DIDRow.id, DIDRow.created_at)
                .where(
                    condition,
                    DIDRow.did_type == DIDType.FILE.value,
                    DIDRow.expires_at.is_(None),
                    DIDRow.deleted_at.is_(None),
                )
                .order_by(DIDRow.id)
                .limit(config.reaper.batch_size)
            ).all()
            for did_id, created in rows:
                session.execute(
                    update(DIDRow)
                    .where(DIDRow.id == did_id, DIDRow.expires_at.is_(None))
                    .values(expires_at=created + lifetime)
                    .execution_options(synchronize_session=False)
                )
            events.record_many(
                session,
                (
                    {
                        "account": ctx.name,
                        "action": "did.lifetime",
                        "did_id": did_id,
                        "reason": f"default lifetime of {days:g} days for {text!r}",
                        "details": {"expires_at": (created + lifetime).isoformat()},
                    }
                    for did_id, created in rows
                ),
            )
        stamped += len(rows)
    return stamped


def expire_rules(ctx: DaemonContext, factory: sessionmaker[Session], config: Config) -> int:
    def txn(session: Session) -> int:
        rules = list(
            session.scalars(
                select(RuleRow)
                .where(
                    RuleRow.expires_at.is_not(None),
                    RuleRow.expires_at < utcnow(),
                    RuleRow.locked.is_(False),  # a locked rule outlives its lifetime (Rucio)
                )
                .order_by(RuleRow.expires_at, RuleRow.id)
                .limit(config.reaper.batch_size)
            )
        )
        for rule in rules:
            deletion.remove_rule(
                session,
                rule,
                account=ctx.name,
                reason=f"rule lifetime ended {rule.expires_at:%Y-%m-%d %H:%M} UTC",
                action="rule.expire",
            )
        return len(rules)

    return write(factory, txn)


def expire_files(
    ctx: DaemonContext, factory: sessionmaker[Session], config: Config
) -> tuple[int, list[int]]:
    """Files past their end of life lose their rules, locks and replicas (marked
    BEING_DELETED everywhere; each site removes its own): (files expired, replica ids)."""
    reason = EXPIRED

    def txn(session: Session) -> tuple[list[int], list[int]]:
        files = list(
            session.scalars(
                select(DIDRow.id)
                .where(
                    DIDRow.did_type == DIDType.FILE.value,
                    DIDRow.expires_at.is_not(None),
                    DIDRow.expires_at < utcnow(),
                    DIDRow.deleted_at.is_(None),
                )
                .order_by(DIDRow.expires_at, DIDRow.id)
                .limit(config.reaper.batch_size)
            )
        )
        if not files:
            return [], []
        for rule in session.scalars(select(RuleRow).where(RuleRow.did_id.in_(files))):
            deletion.remove_rule(session, rule, account=ctx.name, reason=reason)
        deletion.drop_file_locks(session, files)
        replica_ids = list(
            session.scalars(select(ReplicaRow.id).where(ReplicaRow.did_id.in_(files)))
        )
        deletion.mark_being_deleted(
            session, replica_ids, account=ctx.name, reason=reason, ignore_locks=True
        )
        deletion.tombstone_files(
            session, files, account=ctx.name, action="did.expire", reason=reason
        )
        replication.bump_rules(session, files)
        return files, replica_ids

    files, replica_ids = write(factory, txn)
    return len(files), replica_ids


def covering_rule_states(session: Session, did_ids: Sequence[int]) -> dict[int, list[str]]:
    """The states of every rule on each file or on a collection above it."""
    ancestors: dict[int, set[int]] = {d: {d} for d in did_ids}
    frontier: dict[int, set[int]] = {d: {d} for d in did_ids}
    for _ in range(MAX_DEPTH):
        children = {c for ids in frontier.values() for c in ids}
        if not children:
            break
        parents: dict[int, set[int]] = defaultdict(set)
        for child, parent in session.execute(
            select(AttachmentRow.child_id, AttachmentRow.parent_id).where(
                AttachmentRow.child_id.in_(children)
            )
        ):
            parents[child].add(parent)
        frontier = {
            d: {p for c in ids for p in parents.get(c, ())} - ancestors[d]
            for d, ids in frontier.items()
        }
        for d, new in frontier.items():
            ancestors[d] |= new
    everyone = {a for ids in ancestors.values() for a in ids}
    states: dict[int, list[str]] = defaultdict(list)
    for did_id, state in session.execute(
        select(RuleRow.did_id, RuleRow.state).where(RuleRow.did_id.in_(everyone))
    ):
        states[did_id].append(state)
    return {d: [s for a in ids for s in states.get(a, [])] for d, ids in ancestors.items()}


def mark_onsite(
    ctx: DaemonContext,
    factory: sessionmaker[Session],
    config: Config,
    *,
    rses: frozenset[str] | None = None,
) -> dict[int, str]:
    """Mark on-site copies whose off-site preservation is complete and retention passed."""
    cutoff = utcnow() - dt.timedelta(days=config.reaper.onsite_retention_days)
    reason = (
        f"preserved off-site (every rule OK, >= {config.reaper.min_offsite_copies} off-site "
        f"copies) and on-site retention of {config.reaper.onsite_retention_days:g} days passed"
    )

    def txn(session: Session, after: int) -> tuple[int | None, list[int]]:
        """(last candidate id or None when done, replicas marked) for one page."""
        candidates = session.execute(
            select(ReplicaRow.id, ReplicaRow.did_id)
            .join(RSERow, RSERow.id == ReplicaRow.rse_id)
            .join(DIDRow, DIDRow.id == ReplicaRow.did_id)
            .where(
                ReplicaRow.id > after,
                RSERow.onsite.is_(True),
                ReplicaRow.state == ReplicaState.AVAILABLE.value,
                ReplicaRow.lock_count == 0,
                ReplicaRow.created_at <= cutoff,
                DIDRow.deleted_at.is_(None),
                *_on(rses),
            )
            .order_by(ReplicaRow.id)
            .limit(config.reaper.batch_size)
        ).all()
        if not candidates:
            return None, []
        mine = [(r, d) for r, d in candidates if ctx.slot.owns(r)]
        did_ids = list({d for _r, d in mine})
        offsite = _good_copies(session, did_ids, onsite=False)
        rule_states = covering_rule_states(session, did_ids)
        ready = [
            r
            for r, d in mine
            if offsite.get(d, 0) >= config.reaper.min_offsite_copies
            and rule_states.get(d)
            and all(s == RuleState.OK.value for s in rule_states[d])
        ]
        marked = deletion.mark_being_deleted(session, ready, account=ctx.name, reason=reason)
        return candidates[-1].id, marked

    doomed: dict[int, str] = {}
    last_id: int | None = 0
    while last_id is not None and not ctx.stopping:
        # Check and mark in one transaction: what made a copy deletable still holds when it
        # is marked (the lock_count test is repeated by the UPDATE itself).
        last_id, marked = write(factory, partial(txn, after=last_id))
        doomed.update(dict.fromkeys(marked, reason))
    return doomed


def _good_copies(
    session: Session, did_ids: Sequence[int], *, onsite: bool | None = None
) -> dict[int, int]:
    """AVAILABLE replicas per file (only off-site ones with ``onsite=False``)."""
    stmt = (
        select(ReplicaRow.did_id, func.count())
        .join(RSERow, RSERow.id == ReplicaRow.rse_id)
        .where(
            ReplicaRow.did_id.in_(list(did_ids)),
            ReplicaRow.state == ReplicaState.AVAILABLE.value,
        )
        .group_by(ReplicaRow.did_id)
    )
    if onsite is not None:
        stmt = stmt.where(RSERow.onsite.is_(onsite))
    return {d: int(n) for d, n in session.execute(stmt)}


def mark_tombstoned(
    ctx: DaemonContext,
    factory: sessionmaker[Session],
    config: Config,
    *,
    rses: frozenset[str] | None = None,
) -> dict[int, str]:
    """Mark unlocked tombstoned replicas (never a live file's last good copy)."""
    now = utcnow()
    reason = "tombstone passed"

    def txn(session: Session) -> list[int]:
        rows = session.execute(
            select(ReplicaRow.id, ReplicaRow.did_id, ReplicaRow.state)
            .where(
                ReplicaRow.tombstone_at.is_not(None),
                ReplicaRow.tombstone_at <= now,
                ReplicaRow.lock_count == 0,
                ReplicaRow.state != ReplicaState.BEING_DELETED.value,
                *_on(rses),
            )
            .order_by(ReplicaRow.tombstone_at, ReplicaRow.id)
            .limit(config.reaper.batch_size)
        ).all()
        rows = [r for r in rows if ctx.slot.owns(r.id)]
        good = _good_copies(session, list({r.did_id for r in rows}))
        live = set(
            session.scalars(
                select(DIDRow.id).where(
                    DIDRow.id.in_({r.did_id for r in rows}), DIDRow.deleted_at.is_(None)
                )
            )
        )
        doomed: list[int] = []
        for r in rows:
            last_good = r.state == ReplicaState.AVAILABLE and good.get(r.did_id, 0) <= 1
            if r.did_id in live and last_good:
                log.warning("replica %s is the last good copy of a live file: kept", r.id)
                continue
            if r.state == ReplicaState.AVAILABLE:
                good[r.did_id] = good.get(r.did_id, 0) - 1
            doomed.append(r.id)
        return deletion.mark_being_deleted(session, doomed, account=ctx.name, reason=reason)

    return dict.fromkeys(write(factory, txn), reason)


def stale_deletions(
    ctx: DaemonContext,
    factory: sessionmaker[Session],
    config: Config,
    *,
    rses: frozenset[str] | None = None,
) -> dict[int, str]:
    """Deletions that a killed process (or an unreachable store) left BEING_DELETED."""
    cutoff = utcnow() - dt.timedelta(seconds=RESUME_AFTER_S)
    with factory() as session:
        stale = session.scalars(
            select(ReplicaRow.id).where(
                ReplicaRow.state == ReplicaState.BEING_DELETED.value,
                ReplicaRow.updated_at < cutoff,
                *_on(rses),
            )
        )
        return {s: "resumed a deletion" for s in stale if ctx.slot.owns(s)}


def _served(
    factory: sessionmaker[Session], replica_ids: Sequence[int], rses: frozenset[str] | None
) -> list[int]:
    """The replicas on the served RSEs (another site's are left to that site's reaper)."""
    if rses is None or not replica_ids:
        return list(replica_ids)
    with factory() as session:
        return list(
            session.scalars(
                select(ReplicaRow.id).where(ReplicaRow.id.in_(replica_ids), *_on(rses))
            )
        )


class SiteReaper(Daemon):
    """A site's reaper whose catalog is the central API (``dpps daemon reaper --site X`` in a
    workspace whose ``catalog.url`` is the API): the catalog marks what may go (one
    request), this process removes the bytes from its own RSEs and reports what went (one
    more)."""

    def __init__(self, config: Config, ledger: ReaperLedger, rses: frozenset[str]) -> None:
        self.config = config
        self.ledger = ledger
        self.rses = rses

    def run_once(self, ctx: DaemonContext) -> int:
        doomed = self.ledger.claim(ctx.instance, (ctx.slot.number, ctx.slot.total))
        removed, errors = deletion.remove_bytes(self.config, doomed, self.rses)
        for error in errors:
            log.warning("deletion postponed: %s", error)
        return self.ledger.purged(removed) if removed else 0


class Reaper(Daemon):
    """Deletion passes on the archive's catalog (``dpps daemon reaper``)."""

    def __init__(self, catalog: CatalogContext) -> None:
        self.catalog = catalog

    def run_once(self, ctx: DaemonContext) -> int:
        return one_pass(ctx, self.catalog.sessions, self.catalog.config, rses=self.catalog.rses)
