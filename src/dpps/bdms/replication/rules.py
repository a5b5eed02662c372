"""Replication rules: the archive's promises about where copies of a DID must exist.

A rule asks for ``copies`` replicas of every file of a DID on RSEs matching an RSE expression.
This module records rules; the rule evaluator daemon turns them into transfers and locks.

As in Rucio, one account asks once: a second rule with the same DID, account, RSE expression
and number of copies is a ``Conflict`` (exit 6) unless the caller asks to skip duplicates, and
then gets the existing rule. A ``locked`` rule is a promise nobody removes by accident: ``dpps
rule delete``, ``dpps delete`` and the end of its lifetime leave it until it is unlocked.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from dpps.bdms.preservation import deletion
from dpps.bdms.replication import rse_expression as rse_expr
from dpps.bdms.states import rules as rule_states
from dpps.catalog import events
from dpps.catalog.models import DIDRow, RuleRow
from dpps.catalog.replication import lock_rules
from dpps.core.clock import utcnow
from dpps.core.config import Config, RuleTemplate
from dpps.core.errors import Conflict, InvalidInput, NotFound
from dpps.core.priority import check_priority


def add_rule(
    session: Session,
    did: DIDRow,
    *,
    copies: int,
    rse_expression: str,
    account: str,
    source_expression: str | None = None,
    lifetime: dt.timedelta | None = None,
    priority: int = 3,
    activity: str = "default",
    policy: str | None = None,
    comment: str | None = None,
    config: Config | None = None,
    locked: bool = False,
    skip_duplicate: bool = False,
) -> RuleRow:
    """Record a rule (state REPLICATING) and its event; the evaluator does the rest.

    With ``config`` the expressions are checked against the configured RSEs now, so a typo
    or an expression selecting fewer RSEs than ``copies`` fails at once instead of leaving a
    rule that can never be satisfied. A rule identical to one the account has (``duplicate``)
    is refused, or with ``skip_duplicate`` that rule is returned and nothing is recorded.
    """
    if copies < 1:
        raise InvalidInput(f"copies must be at least 1, not {copies}")
    check_priority(priority)
    if not rse_expression.strip():
        raise InvalidInput("empty RSE expression")
    if did.deleted_at is not None:
        raise InvalidInput(f"{did.scope}:{did.name} was deleted; it cannot get a rule")
    if config is not None:
        check_expressions(config, rse_expression, source_expression, copies)
    same = duplicate(session, did, account=account, rse_expression=rse_expression, copies=copies)
    if same is not None:
        if skip_duplicate:
            return same
        raise Conflict(
            f"rule {same.id} already asks for {copies} cop{'y' if copies == 1 else 'ies'} of "
            f"{did.scope}:{did.name} on {rse_expression!r} for {account} (skip duplicates to "
            "accept it: --skip-duplicate)"
        )
    now = utcnow()
    rule = RuleRow(
        did_id=did.id,
        account=account,
        rse_expression=rse_expression,
        source_expression=source_expression,
        copies=copies,
        priority=priority,
        activity=activity,
        policy=policy,
        comment=comment,
        locked=locked,
        purge_replicas=False,
        created_at=now,
        updated_at=now,
        expires_at=now + lifetime if lifetime is not None else None,
        **rule_states.start(now),
    )
    session.add(rule)
    session.flush()
    events.record(
        session,
        account=account,
        action="rule.add",
        did_id=did.id,
        details={
            "rule_id": rule.id,
            "copies": copies,
            "rses": rse_expression,
            "source": source_expression,
            "policy": policy,
            "activity": activity,
            "locked": locked,
        },
    )
    return rule


def duplicate(
    session: Session, did: DIDRow, *, account: str, rse_expression: str, copies: int
) -> RuleRow | None:
    """The account's rule asking the same thing of ``did`` (Rucio's key: DID, account, RSE
    expression, copies), if there is one. Checked, not constrained: two identical requests in
    the same instant may both pass, which costs a rule, never a replica."""
    return session.scalar(
        select(RuleRow)
        .where(
            RuleRow.did_id == did.id,
            RuleRow.account == account,
            RuleRow.rse_expression == rse_expression,
            RuleRow.copies == copies,
        )
        .order_by(RuleRow.id)
        .limit(1)
    )


def check_expressions(config: Config, rses: str, source: str | None, copies: int) -> None:
    selected = rse_expr.select(config, rses)
    if len(selected) < copies:
        raise InvalidInput(
            f"RSE expression {rses!r} selects {len(selected)} RSE(s) "
            f"({', '.join(selected) or 'none'}), fewer than the {copies} copies asked for"
        )
    if source is not None and not rse_expr.select(config, source):
        raise InvalidInput(f"source expression {source!r} selects no RSE")


def delete_rule(session: Session, rule_id: int, *, reason: str, account: str) -> RuleRow:
    """Remove a rule on a user's request (``dpps rule delete``, ``Replication.delete_rule``).

    Only the checks of a user's request are here - the rule exists and is not marked
    ``locked``; the removal itself (locks, tombstones, cancelled transfers, the event, other
    rules made due) is ``deletion.remove_rule``, the one code path the reaper and ``dpps
    delete`` use too.
    """
    rules = lock_rules(session, [rule_id])
    if not rules:
        raise NotFound(f"no rule {rule_id}")
    rule = rules[0]
    if rule.locked:
        raise Conflict(
            f"rule {rule_id} is locked against deletion (unlock it first: dpps rule update "
            f"{rule_id} --unlock)"
        )
    deletion.remove_rule(session, rule, account=account, reason=reason)
    return rule


def policy_templates(config: Config, policy: str) -> Sequence[RuleTemplate]:
    try:
        return config.policies[policy]
    except KeyError:
        known = ", ".join(sorted(config.policies)) or "none"
        raise NotFound(f"unknown replication policy {policy!r} (known: {known})") from None


def apply_policy(
    session: Session, config: Config, did: DIDRow, policy: str, *, account: str
) -> list[RuleRow]:
    """Give a DID the rules of a named policy (e.g. ``acada`` for new DL0 datasets); applied
    again, it gives the rules the DID already has (a policy is a state, not an increment)."""
    return [
        add_rule(
            session,
            did,
            copies=t.copies,
            rse_expression=t.rses,
            account=account,
            source_expression=t.source,
            priority=t.priority,
            activity=t.activity,
            policy=policy,
            lifetime=dt.timedelta(days=t.lifetime_days) if t.lifetime_days else None,
            config=config,
            skip_duplicate=True,
        )
        for t in policy_templates(config, policy)
    ]
