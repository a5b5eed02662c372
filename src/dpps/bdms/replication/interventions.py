"""An operator's interventions on rules and transfers: change a rule in place, retry a transfer.

``replication.rules`` adds and deletes rules and the daemons move transfers on; changing a
rule's priority, lifetime or comment, suspending and resuming it, and queueing a FAILED transfer
again are what a person on shift does (``dpps rule update``, ``dpps transfer retry``, the REST
API). Same conventions as ``replication.rules``: a session is passed in (the caller commits), the
row changed is locked, and an event names the account. ``archive.replication`` wraps them in their
transactions.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from dpps.bdms.records import RuleChange
from dpps.bdms.states import rules as rule_states
from dpps.catalog import events
from dpps.catalog.models import RuleRow, TransferRow
from dpps.catalog.replication import lock_rules
from dpps.core.clock import utcnow
from dpps.core.errors import Conflict, InvalidInput, NotFound
from dpps.core.priority import check_priority
from dpps.core.states import RuleState, TransferState


def update_rule(session: Session, rule_id: int, change: RuleChange, *, account: str) -> RuleRow:
    """Change a rule in place. Suspending and resuming are transitions of
    ``dpps.bdms.states.rules`` (resuming makes the rule due at once; suspending drops an
    evaluator's lease); the one ``rule.update`` event lists every change."""
    if change.priority is not None:
        check_priority(change.priority)
    if change.lifetime is not None and change.clear_lifetime:
        raise InvalidInput("give a lifetime or clear it, not both")
    rules = lock_rules(session, [rule_id])
    if not rules:
        raise NotFound(f"no rule {rule_id}")
    rule = rules[0]
    now = utcnow()
    changed: dict[str, object] = {}
    if change.priority is not None and change.priority != rule.priority:
        changed["priority"] = [rule.priority, change.priority]
        rule.priority = change.priority
    if change.lifetime is not None or change.clear_lifetime:
        expires = now + change.lifetime if change.lifetime is not None else None
        changed["expires_at"] = [_iso(rule.expires_at), _iso(expires)]
        rule.expires_at = expires
    if change.comment is not None and change.comment != rule.comment:
        changed["comment"] = [rule.comment, change.comment]
        rule.comment = change.comment
    if change.locked is not None and change.locked != rule.locked:
        changed["locked"] = [rule.locked, change.locked]
        rule.locked = change.locked
    if change.suspended is True and rule.state != RuleState.SUSPENDED.value:
        changed["state"] = rule_states.suspend(rule, now=now)
    elif change.suspended is False:
        changed["state"] = rule_states.resume(session, rule, now=now)
    if not changed:
        raise InvalidInput(f"nothing to change on rule {rule_id}")
    rule.updated_at = now
    events.record(
        session,
        account=account,
        action="rule.update",
        did_id=rule.did_id,
        details={"rule_id": rule.id, "changed": changed},
    )
    return rule


def retry_transfer(session: Session, transfer_id: int, *, account: str) -> TransferRow:
    """Queue a FAILED transfer again with fresh attempts; its STUCK locks replicate again.

    The rules that counted on it are made due, so the evaluator sees the open transfer and
    moves them from STUCK back to REPLICATING (and to OK when the copy is done).
    """
    row = session.get(TransferRow, transfer_id, with_for_update=True)
    if row is None:
        raise NotFound(f"no transfer {transfer_id}")
    if row.state != TransferState.FAILED.value:
        raise Conflict(f"transfer {transfer_id} is {row.state}: only FAILED transfers retry")
    open_one = session.scalar(
        select(TransferRow.id).where(
            TransferRow.did_id == row.did_id,
            TransferRow.dest_rse_id == row.dest_rse_id,
            TransferRow.state.in_([TransferState.QUEUED.value, TransferState.ACTIVE.value]),
        )
    )
    if open_one is not None:
        raise Conflict(
            f"transfer {open_one} already copies the same file to the same RSE: "
            f"nothing to retry in {transfer_id}"
        )
    now = utcnow()
    previous = row.error
    row.state = TransferState.QUEUED.value
    row.attempts = 0
    row.error = None
    row.finished_at = None
    row.next_attempt_at = now
    row.lease_owner = row.lease_expires_at = None
    row.updated_at = now
    rule_states.locks_retry(session, row.did_id, row.dest_rse_id, now)
    events.record(
        session,
        account=account,
        action="transfer.retry",
        did_id=row.did_id,
        rse_id=row.dest_rse_id,
        reason=previous,
        details={"transfer_id": row.id, "manual": True},
    )
    return row


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
