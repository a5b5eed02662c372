"""Rule states: every change of a rule's state (and of its locks' states) goes through here.

::

    (new) --start--> REPLICATING
    REPLICATING, OK, STUCK --evaluated--> OK | REPLICATING | STUCK     (the evaluator)
    REPLICATING --settle--> OK                (the transfer daemon: its last lock became OK)
    REPLICATING, OK, STUCK --mark_stuck--> STUCK   (a transfer failed for good)
    OK --members_added--> REPLICATING     (files attached to what it covers, not yet evaluated)
    (any) --members_removed--> (same)     (files detached: their locks released, rule made due)
    REPLICATING, OK, STUCK --suspend--> SUSPENDED --resume--> REPLICATING  (an operator)

A rule's locks (one per file and RSE it holds) carry the same states: OK when the replica is
AVAILABLE, REPLICATING while its transfer runs, STUCK when it failed. The evaluator writes the
locks it decides on in bulk (that *is* the evaluation); the transfer daemon moves them on
through ``locks_ok``/``locks_stuck`` and an operator's retry through ``locks_retry``.

Each transition checks its source state. The set-based ones (``settle``, ``mark_stuck``) skip
a rule in another state, because daemons act on a view that may be a moment old and the newer
state wins (a SUSPENDED rule stays suspended); with ``strict=True``, and always in the
single-rule ones an operator asks for (``suspend``, ``resume``) or the evaluator's
(``evaluated``), a wrong source state is refused with ``Conflict``.

The generation counter
----------------------
Rules are evaluated when something they see changed - files attached to a dataset they cover,
a replica they counted declared BAD or lost, a rule resumed. Whoever changes that calls
``catalog.replication.bump_rules`` in the same transaction: it sets ``next_evaluation_at``
(due now, or at most ``within_s`` from now) and adds one to ``rules.generation``. Requests
are *counted*, not timed, because on PostgreSQL (READ COMMITTED) such a change can commit
between any two statements of an evaluator or a transfer daemon busy with the same rule, and
a due time read a moment ago can look like the future:

* the evaluator reads ``generation`` when it claims a rule, before it lists the rule's files
  (a later statement, which sees every attach that value counts); ``evaluated`` stores it as
  ``evaluated_generation`` and, under the rule's row lock, clears the request only if
  ``generation`` is still that value. Otherwise files were attached meanwhile that this
  evaluation may not have seen: the rule stays due, and is REPLICATING rather than OK;
* the transfer daemon's ``settle`` makes a REPLICATING rule OK only when no request is
  outstanding (``generation == evaluated_generation``) and the rule is not due, so a copy
  finishing during an attach cannot report a rule OK that has files without copies.

So nothing that changed during an evaluation is missed, whatever the clocks say and however
the transactions interleave (``tests/bdms/test_evaluator_race.py``). Rules are row-locked in
id order (``catalog.replication.lock_rules``) by every transition here, so evaluators and
transfer daemons take turns on a rule instead of overwriting each other's state.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, exists, select, update
from sqlalchemy.orm import Session

from dpps.catalog import events
from dpps.catalog.models import DIDRow, RuleLockRow, RuleRow
from dpps.catalog.replication import (
    bump_rules,
    chunks,
    covering_dids,
    expand_files,
    lock_rules,
    refresh_lock_counts,
)
from dpps.catalog.sets import among
from dpps.core.clock import utcnow
from dpps.core.config import RuleEvaluatorConfig
from dpps.core.errors import Conflict
from dpps.core.states import RuleState

_LOCKS = cast(Table, RuleLockRow.__table__)
_ACTIVE = frozenset({RuleState.REPLICATING.value, RuleState.OK.value, RuleState.STUCK.value})

#: The source states of each transition (the target is in the function's name or result).
SOURCES: Mapping[str, frozenset[str]] = {
    "evaluated": _ACTIVE,
    "settle": frozenset({RuleState.REPLICATING.value}),
    "mark_stuck": _ACTIVE,
    "suspend": _ACTIVE,
    "resume": frozenset({RuleState.SUSPENDED.value}),
    "members_added": frozenset({RuleState.OK.value}),
}


def start(now: dt.datetime) -> dict[str, Any]:
    """The state columns of a new rule: REPLICATING and due now (``RuleRow(**start(now))``)."""
    return {"state": RuleState.REPLICATING.value, "next_evaluation_at": now}


def _check(rule: RuleRow, transition: str) -> None:
    if rule.state not in SOURCES[transition]:
        allowed = " or ".join(sorted(SOURCES[transition]))
        raise Conflict(f"rule {rule.id} is {rule.state}, not {allowed}: refused ({transition})")


def _state_event(
    session: Session, rule: RuleRow, to: str, account: str, reason: str | None
) -> None:
    events.record(
        session,
        account=account,
        action="rule.state",
        did_id=rule.did_id,
        reason=reason,
        details={"rule_id": rule.id, "from": rule.state, "to": to},
    )


def evaluated(
    session: Session,
    rule: RuleRow,
    *,
    state: RuleState,
    error: str | None,
    generation: int,
    config: RuleEvaluatorConfig,
    account: str,
    now: dt.datetime | None = None,
) -> RuleState:
    """The evaluator's result for a rule it holds (row-locked, leased): ``state`` from its
    locks, cleared of the request it answered. Returns the state set: REPLICATING instead of
    OK when files were attached meanwhile (``generation`` moved; see the module docstring).
    The lease is released; a state or error that changed gets a ``rule.state`` event."""
    _check(rule, "evaluated")
    now = now or utcnow()
    answered = rule.generation == generation
    if state == RuleState.OK and not answered:
        state = RuleState.REPLICATING  # files attached meanwhile: not seen, not yet OK
    if state.value != rule.state or error != rule.error:
        _state_event(session, rule, state.value, account, error)
    rule.state, rule.error, rule.updated_at = state.value, error, now
    rule.lease_owner = rule.lease_expires_at = None
    rule.evaluated_generation = generation
    if not answered:  # asked again meanwhile: due at the time the request set (or now)
        if rule.next_evaluation_at is None:
            rule.next_evaluation_at = now
    else:
        delay = {
            RuleState.OK: None,
            RuleState.REPLICATING: config.recheck_s,
            RuleState.STUCK: config.stuck_retry_s,
        }[state]
        rule.next_evaluation_at = None if delay is None else now + dt.timedelta(seconds=delay)
    return state


def settle(
    session: Session,
    rule_ids: Collection[int],
    *,
    account: str,
    now: dt.datetime | None = None,
    strict: bool = False,
) -> list[int]:
    """REPLICATING -> OK for the rules whose every lock is now OK; returns their ids.

    A rule with a request for evaluation outstanding or due is left to the evaluator (the
    counters decide, not ``now``: see the module docstring). Checking costs a scan of the
    rule's locks, so the transfer daemon calls this for a batch of rules every few seconds
    rather than after every batch of copies. Rules in another state are skipped (``strict``:
    refused with ``Conflict``).
    """
    now = now or utcnow()
    settled: list[int] = []
    for rule in lock_rules(session, rule_ids):
        if rule.state not in SOURCES["settle"]:
            if strict:
                _check(rule, "settle")
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
        _state_event(session, rule, RuleState.OK.value, account, None)
        rule.state = RuleState.OK.value
        rule.error = None
        rule.updated_at = now
        rule.next_evaluation_at = None
        settled.append(rule.id)
    return settled


def settle_files(
    session: Session, did_ids: Collection[int], *, account: str, now: dt.datetime | None = None
) -> list[int]:
    """``settle`` for the rules with locks on these files."""
    on_files = among(session, RuleLockRow.did_id, did_ids)
    rule_ids = set(session.scalars(select(RuleLockRow.rule_id).distinct().where(on_files)))
    return settle(session, rule_ids, account=account, now=now)


def mark_stuck(
    session: Session,
    rule_ids: Collection[int],
    reason: str,
    *,
    account: str,
    retry_at: dt.datetime,
    now: dt.datetime | None = None,
    strict: bool = False,
) -> list[int]:
    """-> STUCK with ``reason`` (a transfer of theirs failed for good); each is evaluated
    again by ``retry_at`` at the latest, so it recovers when the cause goes away. SUSPENDED
    rules are skipped (``strict``: refused with ``Conflict``). Returns the ids changed."""
    now = now or utcnow()
    changed: list[int] = []
    for rule in lock_rules(session, rule_ids):
        if rule.state not in SOURCES["mark_stuck"]:
            if strict:
                _check(rule, "mark_stuck")
            continue
        if rule.state != RuleState.STUCK.value:
            _state_event(session, rule, RuleState.STUCK.value, account, reason)
        rule.state = RuleState.STUCK.value
        rule.error = reason
        rule.updated_at = now
        if rule.next_evaluation_at is None or rule.next_evaluation_at > retry_at:
            rule.next_evaluation_at = retry_at
        changed.append(rule.id)
    return changed


def suspend(rule: RuleRow, *, now: dt.datetime | None = None) -> list[str]:
    """-> SUSPENDED (an operator's request); returns [from, to] for the caller's
    ``rule.update`` event, the one event of an intervention. The evaluator's lease is dropped:
    an evaluation in progress then stops at its next write (it checks the lease) instead of
    overwriting SUSPENDED with its result."""
    _check(rule, "suspend")
    change = [rule.state, RuleState.SUSPENDED.value]
    rule.state = RuleState.SUSPENDED.value
    rule.lease_owner = rule.lease_expires_at = None
    rule.updated_at = now or utcnow()
    return change


def resume(session: Session, rule: RuleRow, *, now: dt.datetime | None = None) -> list[str]:
    """SUSPENDED -> REPLICATING, due now like any change of what a rule covers (through
    ``bump_rules``, which also counts the request); returns [from, to] for the caller's
    ``rule.update`` event."""
    if rule.state not in SOURCES["resume"]:
        raise Conflict(f"rule {rule.id} is {rule.state}, not SUSPENDED: nothing to resume")
    now = now or utcnow()
    change = [rule.state, RuleState.REPLICATING.value]
    rule.state = RuleState.REPLICATING.value
    rule.updated_at = now
    session.flush()
    bump_rules(session, [rule.did_id], now=now)
    return change


def members_added(
    session: Session,
    collection_ids: Collection[int],
    *,
    account: str,
    now: dt.datetime | None = None,
) -> list[int]:
    """Files were attached to these collections: every rule covering them is due (through
    ``bump_rules``, which counts the request), and an OK one becomes REPLICATING in the same
    transaction, since it has not been evaluated for the new files. Otherwise it would read
    OK until the evaluator's next pass, telling whoever looks that files are safe that have
    no copy yet. Other states are left as they are. Returns the ids of the rules reopened."""
    if not collection_ids:
        return []
    now = now or utcnow()
    covered = sorted(covering_dids(session, collection_ids))
    if not bump_rules(session, covered, now=now, covered=True):
        return []  # no rule to reopen (an OK rule is one bump_rules makes due)
    ok = [
        rule_id
        for part in chunks(covered)
        for rule_id in session.scalars(
            select(RuleRow.id).where(
                among(session, RuleRow.did_id, part), RuleRow.state.in_(SOURCES["members_added"])
            )
        )
    ]
    reopened: list[int] = []
    for rule in lock_rules(session, ok):
        if rule.state not in SOURCES["members_added"]:
            continue  # changed since the query: the newer state wins
        reason = "files attached to what the rule covers: not evaluated for them yet"
        _state_event(session, rule, RuleState.REPLICATING.value, account, reason)
        rule.state = RuleState.REPLICATING.value
        rule.updated_at = now
        reopened.append(rule.id)
    return reopened


def members_removed(
    session: Session,
    collection_ids: Collection[int],
    file_ids: Sequence[int],
    *,
    account: str,
    now: dt.datetime | None = None,
) -> int:
    """Files were detached from these collections (already, in this session): every rule
    that covered them through these collections drops its locks on those it no longer covers
    by any other way, the replicas' lock counts are recounted (so the reaper may take copies
    that nothing keeps any more) and the rules are made due, so their state is computed again
    without the files. Returns how many locks were released (one event per rule that had
    any)."""
    now = now or utcnow()
    covered = sorted(covering_dids(session, collection_ids))
    rule_ids = [
        rule_id
        for part in chunks(covered)
        for rule_id in session.scalars(
            select(RuleRow.id).where(among(session, RuleRow.did_id, part))
        )
    ]
    released = 0
    for rule in lock_rules(session, rule_ids):
        target = session.get(DIDRow, rule.did_id)
        still = {f for f, _size in expand_files(session, target)} if target is not None else set()
        gone = [f for f in file_ids if f not in still]
        dropped = 0
        for part in chunks(gone):
            result = session.execute(
                delete(RuleLockRow)
                .where(RuleLockRow.rule_id == rule.id, RuleLockRow.did_id.in_(part))
                .execution_options(synchronize_session=False)
            )
            dropped += int(getattr(result, "rowcount", 0) or 0)
        if dropped:
            events.record(
                session,
                account=account,
                action="rule.release",
                did_id=rule.did_id,
                reason="files detached from what the rule covers",
                details={"rule_id": rule.id, "locks": dropped},
            )
        released += dropped
    refresh_lock_counts(session, file_ids)
    bump_rules(session, collection_ids, now=now)
    return released


# -- lock states ------------------------------------------------------------------------------


def locks_ok(session: Session, pairs: Sequence[tuple[int, int]], now: dt.datetime) -> None:
    """Every lock on these (file, RSE) pairs -> OK: the replica there is AVAILABLE."""
    if pairs:
        session.execute(  # a Core executemany: one statement, one row of parameters per pair
            update(_LOCKS)
            .where(
                _LOCKS.c.did_id == bindparam("d"),
                _LOCKS.c.rse_id == bindparam("r"),
                _LOCKS.c.state != RuleState.OK.value,
            )
            .values(state=RuleState.OK.value, updated_at=now),
            [{"d": d, "r": r} for d, r in pairs],
        )


def locks_stuck(session: Session, did_id: int, rse_id: int, now: dt.datetime) -> list[int]:
    """Every lock on (file, RSE) -> STUCK (its transfer failed for good); returns the ids of
    the rules holding them, for ``mark_stuck``."""
    session.execute(
        update(RuleLockRow)
        .where(RuleLockRow.did_id == did_id, RuleLockRow.rse_id == rse_id)
        .values(state=RuleState.STUCK.value, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return list(
        session.scalars(
            select(RuleLockRow.rule_id).where(
                RuleLockRow.did_id == did_id, RuleLockRow.rse_id == rse_id
            )
        )
    )


def locks_retry(session: Session, did_id: int, rse_id: int, now: dt.datetime) -> None:
    """STUCK locks on (file, RSE) -> REPLICATING: an operator queued their transfer again.
    The rules are made due, so the evaluator moves them from STUCK back to REPLICATING."""
    session.execute(
        update(RuleLockRow)
        .where(
            RuleLockRow.did_id == did_id,
            RuleLockRow.rse_id == rse_id,
            RuleLockRow.state == RuleState.STUCK.value,
        )
        .values(state=RuleState.REPLICATING.value, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    bump_rules(session, [did_id], now=now)
