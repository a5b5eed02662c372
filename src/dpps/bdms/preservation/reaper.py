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

    The ``Reaper`` daemon's work, and what ``Preservation.reap`` runs once on its own. With
    ``rses`` (a site's reaper, ``--site``/``--rses``) only replicas on those RSEs are
    deleted; the catalog-only steps run as everywhere, and a file's replicas at other sites
    that expiry marked BEING_DELETED are finished by those sites' reapers."""
    done = apply_lifetimes(ctx, factory, config) + expire_rules(ctx, factory, config)
    for step in (expire_files, reap_onsite, reap_tombstoned):
        if ctx.stopping:
            break
        done += step(ctx, factory, config, rses=rses)
    return done


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
    ctx: DaemonContext,
    factory: sessionmaker[Session],
    config: Config,
    *,
    rses: frozenset[str] | None = None,
) -> int:
    reason = "lifetime ended"

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
    _purge(factory, config, replica_ids, account=ctx.name, reason=reason, rses=rses)
    return len(files)


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


def reap_onsite(
    ctx: DaemonContext,
    factory: sessionmaker[Session],
    config: Config,
    *,
    rses: frozenset[str] | None = None,
) -> int:
    """Delete on-site copies whose off-site preservation is complete and retention passed."""
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

    deleted = 0
    last_id: int | None = 0
    while last_id is not None and not ctx.stopping:
        # Check and mark in one transaction: what made a copy deletable still holds when it
        # is marked (the lock_count test is repeated by the UPDATE itself).
        last_id, marked = write(factory, partial(txn, after=last_id))
        deleted += _purge(factory, config, marked, account=ctx.name, reason=reason, rses=rses)
    return deleted


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


def reap_tombstoned(
    ctx: DaemonContext,
    factory: sessionmaker[Session],
    config: Config,
    *,
    rses: frozenset[str] | None = None,
) -> int:
    """Delete unlocked tombstoned replicas (never a live file's last good copy) and finish
    deletions that a killed process left BEING_DELETED."""
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

    marked = write(factory, txn)
    done = _purge(factory, config, marked, account=ctx.name, reason=reason, rses=rses)
    with factory() as session:
        stale = list(
            session.scalars(
                select(ReplicaRow.id).where(
                    ReplicaRow.state == ReplicaState.BEING_DELETED.value,
                    ReplicaRow.updated_at < now - dt.timedelta(seconds=RESUME_AFTER_S),
                    *_on(rses),
                )
            )
        )
    stale = [s for s in stale if ctx.slot.owns(s)]
    done += _purge(
        factory, config, stale, account=ctx.name, reason="resumed a deletion", rses=rses
    )
    return done


def _purge(
    factory: sessionmaker[Session],
    config: Config,
    replica_ids: Sequence[int],
    *,
    account: str,
    reason: str,
    rses: frozenset[str] | None = None,
) -> int:
    if rses is not None and replica_ids:
        with factory() as session:  # another site's replicas: left to that site's reaper
            replica_ids = list(
                session.scalars(
                    select(ReplicaRow.id).where(ReplicaRow.id.in_(replica_ids), *_on(rses))
                )
            )
    if not replica_ids:
        return 0
    purged, errors = deletion.purge(factory, config, replica_ids, account=account, reason=reason)
    for error in errors:
        log.warning("deletion postponed: %s", error)
    return purged


class Reaper(Daemon):
    """Deletion passes on the archive's catalog (``dpps daemon reaper``)."""

    def __init__(self, catalog: CatalogContext) -> None:
        self.catalog = catalog

    def run_once(self, ctx: DaemonContext) -> int:
        return one_pass(ctx, self.catalog.sessions, self.catalog.config, rses=self.catalog.rses)
