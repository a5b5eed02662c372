"""The transfer daemon's catalog records: jobs, outcomes, and what an outcome changes.

A claimed transfer (``dpps.bdms.transfer.claim``) is ACTIVE with a lease and its destination
replica COPYING; the outcome of a copy moves both on in one transaction: DONE + AVAILABLE
(+ rule locks OK, rules OK once all their locks are), or back to QUEUED with a backoff, or
FAILED after ``max_attempts`` (locks and rules STUCK with the reason, to be retried by the
evaluator). A transfer whose lease expired (its daemon died) is claimed again by anyone and
redone from scratch, debris included. Functions take the session; the caller commits.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, cast

from sqlalchemy import Table, bindparam, delete, exists, select, update
from sqlalchemy.orm import Session

from dpps.catalog import events
from dpps.catalog.models import ReplicaRow, RuleLockRow, TransferRow, utcnow
from dpps.catalog.replication import bump_rules, lock_rules
from dpps.catalog.sets import among
from dpps.core.config import Config
from dpps.core.states import ReplicaState, RuleState, TransferState


@dataclass(frozen=True, slots=True)
class Job:
    """One claimed copy, with everything the worker thread needs (no catalog access)."""

    transfer_id: int
    did_id: int
    label: str
    source_rse: str
    source_rse_id: int
    source_path: str
    dest_rse: str
    dest_rse_id: int
    dest_path: str
    replica_id: int
    expected: dict[str, str]
    bytes: int
    attempts: int
    max_attempts: int
    redo: bool


@dataclass(frozen=True, slots=True)
class Outcome:
    job: Job
    status: Literal["done", "failed", "interrupted"]
    error: str | None = None
    bad_source: bool = False
    method: str = ""
    seconds: float = 0.0
    unsynced_dir: str | None = None


@dataclass
class Recorded:
    done: int = 0
    retried: int = 0
    failed: int = 0
    released: int = 0
    lost: int = 0
    #: rules with locks on the files of these outcomes: to be settled (``settle_rule_ids``)
    rules: set[int] = field(default_factory=set)


def backoff_s(config: Config, attempts: int) -> float:
    """Exponential backoff with jitter: half the capped delay, plus up to the other half."""
    cfg = config.transfers
    delay = min(cfg.backoff_max_s, cfg.backoff_base_s * float(2 ** max(0, attempts - 1)))
    return delay / 2 + random.uniform(0, delay / 2)


def finish(
    session: Session,
    row: TransferRow,
    state: TransferState,
    now: dt.datetime,
    reason: str | None,
    account: str,
) -> None:
    row.state = state.value
    row.finished_at = now
    row.lease_owner = row.lease_expires_at = None
    row.error = reason
    events.record(
        session,
        account=account,
        action=f"transfer.{state.value.lower()}",
        did_id=row.did_id,
        rse_id=row.dest_rse_id,
        reason=reason or ("already present" if state == TransferState.DONE else None),
        details={"transfer_id": row.id},
    )


def locks_ok(session: Session, pairs: Sequence[tuple[int, int]], now: dt.datetime) -> None:
    if pairs:
        table = cast(Table, RuleLockRow.__table__)
        session.execute(  # a Core executemany: one statement, one row of parameters per pair
            update(table)
            .where(
                table.c.did_id == bindparam("d"),
                table.c.rse_id == bindparam("r"),
                table.c.state != RuleState.OK.value,
            )
            .values(state=RuleState.OK.value, updated_at=now),
            [{"d": d, "r": r} for d, r in pairs],
        )


def renew_leases(session: Session, owner: str, ids: Sequence[int], lease_s: float) -> None:
    if ids:
        session.execute(
            update(TransferRow)
            .where(among(session, TransferRow.id, ids), TransferRow.lease_owner == owner)
            .values(lease_expires_at=utcnow() + dt.timedelta(seconds=lease_s))
            .execution_options(synchronize_session=False)
        )


def record_outcomes(
    session: Session, config: Config, owner: str, outcomes: Sequence[Outcome], account: str
) -> Recorded:
    """Move transfers, replicas, locks and rules on after their copies; the caller commits.

    Outcomes of transfers this instance no longer owns (its lease expired and another
    instance took them over) are dropped: the new owner's result counts.
    """
    summary = Recorded()
    if not outcomes:
        return summary
    now = utcnow()
    did_ids = sorted({o.job.did_id for o in outcomes})
    on_files = among(session, RuleLockRow.did_id, did_ids)
    rule_ids = set(session.scalars(select(RuleLockRow.rule_id).distinct().where(on_files)))
    lock_rules(session, rule_ids)
    ids = [o.job.transfer_id for o in outcomes]
    owned_stmt = select(TransferRow.id).where(
        among(session, TransferRow.id, ids),
        TransferRow.lease_owner == owner,
        TransferRow.state == TransferState.ACTIVE.value,
    )
    if session.get_bind().dialect.name == "postgresql":
        owned_stmt = owned_stmt.with_for_update()
    owned = set(session.scalars(owned_stmt))
    # Successes (nearly all) are written in bulk; only the rest need ORM rows.
    others = [o.job.transfer_id for o in outcomes if o.status != "done"]
    rows = (
        {r.id: r for r in session.scalars(select(TransferRow).where(TransferRow.id.in_(others)))}
        if others
        else {}
    )
    done: list[Outcome] = []
    stuck_pairs: list[tuple[int, int, str]] = []
    log: list[dict[str, object]] = []
    for o in outcomes:
        if o.job.transfer_id not in owned:
            summary.lost += 1
            continue
        if o.status == "done":
            done.append(o)
            continue
        row = rows[o.job.transfer_id]
        row.lease_owner = row.lease_expires_at = None
        row.source_rse_id = None
        if o.status == "interrupted":
            row.state = TransferState.QUEUED.value
            summary.released += 1
            continue
        if o.bad_source:
            _declare_bad_source(session, o, now, account)
        row.attempts += 1
        row.error = o.error
        if row.attempts < row.max_attempts:
            row.state = TransferState.QUEUED.value
            row.next_attempt_at = now + dt.timedelta(seconds=backoff_s(config, row.attempts))
            summary.retried += 1
            log.append(_event(o, account, "transfer.retry", {"attempt": row.attempts}))
            continue
        row.state = TransferState.FAILED.value
        row.finished_at = now
        summary.failed += 1
        stuck_pairs.append((o.job.did_id, o.job.dest_rse_id, o.error or "unknown error"))
        log.append(_event(o, account, "transfer.failed", {"attempts": row.attempts}))
    if done:
        _record_done(session, done, now, account, log)
        summary.done = len(done)
    if stuck_pairs:
        _record_stuck(session, config, outcomes, stuck_pairs, now, account)
    events.record_many(session, log)
    if done:
        touched = {o.job.did_id for o in done}
        summary.rules = rule_ids
        # a rule STUCK for want of a source (the ACADA tape copy before the disk copy) may
        # have one now: look at it again soon rather than after stuck_retry_s
        bump_rules(session, touched, now=now, states=[RuleState.STUCK.value], within_s=30.0)
    return summary


def _event(o: Outcome, account: str, action: str, details: dict[str, object]) -> dict[str, object]:
    return {
        "account": account,
        "action": action,
        "did_id": o.job.did_id,
        "rse_id": o.job.dest_rse_id,
        "reason": o.error,
        "details": {"transfer_id": o.job.transfer_id, "source": o.job.source_rse, **details},
    }


def _record_done(
    session: Session,
    done: Sequence[Outcome],
    now: dt.datetime,
    account: str,
    log: list[dict[str, object]],
) -> None:
    # Core executemany statements: the ORM's bulk UPDATE costs more per row than the copy.
    transfers, replicas = cast(Table, TransferRow.__table__), cast(Table, ReplicaRow.__table__)
    session.execute(
        update(transfers)
        .where(transfers.c.id == bindparam("tid"))
        .values(
            state=TransferState.DONE.value,
            finished_at=now,
            lease_owner=None,
            lease_expires_at=None,
            error=None,
            bytes=bindparam("size"),
            source_rse_id=bindparam("source"),
            updated_at=now,
        ),
        [
            {"tid": o.job.transfer_id, "size": o.job.bytes, "source": o.job.source_rse_id}
            for o in done
        ],
    )
    session.execute(
        update(replicas)
        .where(replicas.c.id == bindparam("rid"))
        .values(
            state=ReplicaState.AVAILABLE.value,
            bytes=bindparam("size"),
            last_verified_at=now,
            updated_at=now,
        ),
        [{"rid": o.job.replica_id, "size": o.job.bytes} for o in done],
    )
    locks_ok(session, [(o.job.did_id, o.job.dest_rse_id) for o in done], now)
    log.extend(
        _event(
            o,
            account,
            "transfer.done",
            {"bytes": o.job.bytes, "seconds": round(o.seconds, 3), "method": o.method},
        )
        for o in done
    )


def _declare_bad_source(session: Session, o: Outcome, now: dt.datetime, account: str) -> None:
    """Proven by reading it: the source's bytes do not match the catalog."""
    result = session.execute(
        update(ReplicaRow)
        .where(
            ReplicaRow.did_id == o.job.did_id,
            ReplicaRow.rse_id == o.job.source_rse_id,
            ReplicaRow.state == ReplicaState.AVAILABLE.value,
        )
        .values(state=ReplicaState.BAD.value, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0):
        events.record(
            session,
            account=account,
            action="replica.bad",
            did_id=o.job.did_id,
            rse_id=o.job.source_rse_id,
            reason=f"checksum mismatch found by a transfer: {o.error}",
        )
        bump_rules(session, [o.job.did_id], now=now)


def _record_stuck(
    session: Session,
    config: Config,
    outcomes: Sequence[Outcome],
    pairs: Sequence[tuple[int, int, str]],
    now: dt.datetime,
    account: str,
) -> None:
    """A transfer failed for good: its COPYING replica goes, locks and rules become STUCK."""
    labels = {(o.job.did_id, o.job.dest_rse_id): (o.job.label, o.job.dest_rse) for o in outcomes}
    retry_at = now + dt.timedelta(seconds=config.rules.stuck_retry_s)
    for did_id, rse_id, error in pairs:
        session.execute(
            delete(ReplicaRow).where(
                ReplicaRow.did_id == did_id,
                ReplicaRow.rse_id == rse_id,
                ReplicaRow.state == ReplicaState.COPYING.value,
            )
        )
        session.execute(
            update(RuleLockRow)
            .where(RuleLockRow.did_id == did_id, RuleLockRow.rse_id == rse_id)
            .values(state=RuleState.STUCK.value, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        label, rse = labels[(did_id, rse_id)]
        reason = f"transfer of {label} to {rse} failed: {error}"
        rule_ids = session.scalars(
            select(RuleLockRow.rule_id).where(
                RuleLockRow.did_id == did_id, RuleLockRow.rse_id == rse_id
            )
        ).all()
        for rule in lock_rules(session, rule_ids):
            if rule.state == RuleState.SUSPENDED.value:
                continue
            if rule.state != RuleState.STUCK.value:
                events.record(
                    session,
                    account=account,
                    action="rule.state",
                    did_id=rule.did_id,
                    reason=reason,
                    details={"rule_id": rule.id, "from": rule.state, "to": "STUCK"},
                )
            rule.state = RuleState.STUCK.value
            rule.error = reason
            rule.updated_at = now
            if rule.next_evaluation_at is None or rule.next_evaluation_at > retry_at:
                rule.next_evaluation_at = retry_at


def settle_rules(session: Session, did_ids: set[int], now: dt.datetime, account: str) -> list[int]:
    """``settle_rule_ids`` for the rules with locks on these files."""
    on_files = among(session, RuleLockRow.did_id, did_ids)
    rule_ids = set(session.scalars(select(RuleLockRow.rule_id).distinct().where(on_files)))
    return settle_rule_ids(session, rule_ids, now, account)


def settle_rule_ids(
    session: Session, rule_ids: set[int], now: dt.datetime, account: str
) -> list[int]:
    """REPLICATING rules whose every lock is now OK become OK; returns their ids.

    A rule with a request for evaluation outstanding (files attached meanwhile: ``generation``
    ahead of ``evaluated_generation``) or due is left to the evaluator. The counters decide,
    not ``now``: on PostgreSQL an attach may commit after the caller read its clock and before
    the rule row is locked here, so a due time can look like the future. Checking costs a
    scan of the rule's locks, so the transfer daemon calls it for a batch of rules every few
    seconds rather than after every batch of copies.
    """
    settled: list[int] = []
    for rule in lock_rules(session, rule_ids):
        if rule.state != RuleState.REPLICATING.value:
            continue
        if rule.generation != rule.evaluated_generation:
            continue
        if rule.next_evaluation_at is not None and rule.next_evaluation_at <= now:
            continue
        pending = session.scalar(
            select(
                exists().where(
                    RuleLockRow.rule_id == rule.id, RuleLockRow.state != RuleState.OK.value
                )
            )
        )
        if pending:
            continue
        rule.state = RuleState.OK.value
        rule.error = None
        rule.updated_at = now
        rule.next_evaluation_at = None
        settled.append(rule.id)
        events.record(
            session,
            account=account,
            action="rule.state",
            did_id=rule.did_id,
            details={"rule_id": rule.id, "from": "REPLICATING", "to": "OK"},
        )
    return settled
