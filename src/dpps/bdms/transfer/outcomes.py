"""The transfer daemon's catalog records: jobs, outcomes, and what an outcome changes.

A claimed transfer (``dpps.bdms.transfer.claim``) is ACTIVE with a lease and its destination
replica COPYING; the outcome of a copy moves both on in one transaction: DONE + AVAILABLE
(+ rule locks OK, rules OK once all their locks are), or back to QUEUED with a backoff, or
FAILED after ``max_attempts`` (locks and rules STUCK with the reason, to be retried by the
evaluator). A transfer whose lease expired (its daemon died) is claimed again by anyone and
redone from scratch, debris included. Replica and rule states change only through
``dpps.bdms.states`` (its ``rules`` module explains why a rule is settled OK only when its
generation counter says no request is outstanding). Functions take the session; the caller
commits.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence
from typing import cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session

from dpps.bdms.states import replicas as replica_states
from dpps.bdms.states import rules as rule_states
from dpps.bdms.transfer.records import Outcome, Recorded
from dpps.catalog import events
from dpps.catalog.models import RuleLockRow, RuleRow, TransferRow
from dpps.catalog.replication import bump_rules, lock_rules
from dpps.catalog.sets import among
from dpps.core.clock import utcnow
from dpps.core.config import Config
from dpps.core.states import RuleState, TransferState


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
        summary.rules = rule_ids
        # a rule STUCK for want of a source (the ACADA tape copy before the disk copy) may
        # have one now: look at it again soon rather than after stuck_retry_s. With no STUCK
        # rule at all (the usual case) the walk up the files' datasets is skipped.
        if _any_stuck_rule(session):
            touched = {o.job.did_id for o in done}
            bump_rules(session, touched, now=now, states=[RuleState.STUCK.value], within_s=30.0)
    return summary


def _any_stuck_rule(session: Session) -> bool:
    stmt = select(RuleRow.id).where(RuleRow.state == RuleState.STUCK.value).limit(1)
    return session.scalar(stmt) is not None


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
    transfers = cast(Table, TransferRow.__table__)
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
    replica_states.copied(session, [(o.job.replica_id, o.job.bytes) for o in done], now=now)
    rule_states.locks_ok(session, [(o.job.did_id, o.job.dest_rse_id) for o in done], now)
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
    replica_states.declare_bad(
        session,
        [
            replica_states.Damaged(
                o.job.did_id,
                o.job.source_rse_id,
                f"checksum mismatch found by a transfer: {o.error}",
                rse=o.job.source_rse,
                did=o.job.label,
            )
        ],
        account=account,
        lost_reason="no AVAILABLE replica left after a transfer found its source damaged",
        now=now,
    )


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
        replica_states.copy_failed(session, did_id, rse_id)
        rule_ids = rule_states.locks_stuck(session, did_id, rse_id, now)
        label, rse = labels[(did_id, rse_id)]
        reason = f"transfer of {label} to {rse} failed: {error}"
        rule_states.mark_stuck(
            session, rule_ids, reason, account=account, retry_at=retry_at, now=now
        )


def settle_rule_ids(
    session: Session, rule_ids: set[int], now: dt.datetime, account: str
) -> list[int]:
    """The transfer daemon's periodic settling: ``dpps.bdms.states.rules.settle``."""
    return rule_states.settle(session, rule_ids, account=account, now=now)
