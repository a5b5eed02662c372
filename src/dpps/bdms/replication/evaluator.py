"""The rule evaluator daemon: turn each due rule into the locks and transfers it still needs.

For every file a rule covers (a file, or a dataset's or container's files, recursively) it
counts the AVAILABLE replicas on RSEs matching the rule's expression (a BAD or missing replica
does not count), locks up to ``copies`` of them, counts open transfers to matching RSEs
(whichever rule made them) and queues transfers for the copies still missing, on destinations
chosen to spread the risk: not a site already holding a copy, preferably ``min_distance_km``
away from the others, least loaded first, and not where this file's transfer failed before.

Work is set-based and chunked: one transaction per ``rules.chunk_size`` files, a handful of
IN queries and bulk inserts each, the rule row locked and its lease renewed. The rule's state
is derived at the end from its locks: STUCK (with the reason) when a file has no source, no
destination or a transfer failed for good - evaluated again after ``stuck_retry_s``, so it
recovers when the cause goes away; REPLICATING while transfers run (the transfer daemon marks
it OK when the last lock is); OK. SUSPENDED rules are never touched.

Requests for evaluation are counted (``rules.generation``): the evaluator reads the counter
when it claims a rule and hands it to ``dpps.bdms.states.rules.evaluated`` at the end, whose
module docstring explains the protocol once. Every rule state it sets goes through that module.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.orm import Session

from dpps.bdms.replication.placement import OPEN, Plan, build_plan, decide
from dpps.bdms.states import rules as rule_states
from dpps.catalog import events
from dpps.catalog.bulk import insert_rows
from dpps.catalog.context import CatalogContext
from dpps.catalog.engine import write
from dpps.catalog.leases import claim
from dpps.catalog.models import (
    DIDRow,
    ReplicaRow,
    RuleLockRow,
    RuleRow,
    TransferRow,
    utcnow,
)
from dpps.catalog.replication import (
    chunks,
    expand_files,
    lock_rules,
    refresh_lock_counts,
)
from dpps.core.config import Config
from dpps.core.daemon import Daemon, DaemonContext
from dpps.core.errors import DppsError
from dpps.core.states import RuleState, TransferState

log = logging.getLogger("dpps.evaluator")
_LOCKS: Table = RuleLockRow.__table__  # type: ignore[assignment]
_TRANSFERS: Table = TransferRow.__table__  # type: ignore[assignment]


class _LeaseLost(Exception):
    """Another evaluator owns the rule now (or it was deleted): stop quietly."""


@dataclass
class _Tally:
    files: int = 0
    transfers: int = 0
    lock_changes: int = 0
    stuck: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    example: dict[str, int] = field(default_factory=dict)

    def add(self, other: _Tally) -> None:
        self.files += other.files
        self.transfers += other.transfers
        self.lock_changes += other.lock_changes
        self.stuck += other.stuck
        self.reasons.update(other.reasons)
        for reason, did_id in other.example.items():
            self.example.setdefault(reason, did_id)


class Evaluator(Daemon):
    """The evaluator daemon (``dpps daemon evaluator``): claim due rules, evaluate each,
    release them. One pass without the runner: ``Evaluator(archive.context).run_once(ctx)``."""

    def __init__(self, catalog: CatalogContext) -> None:
        self.config: Config = catalog.config
        self.sessions = catalog.sessions
        self.account = catalog.account

    def run_once(self, ctx: DaemonContext) -> int:
        cfg = self.config.rules
        claimed = write(self.sessions, lambda s: self._claim(s, ctx.instance))
        for position, (rule_id, generation) in enumerate(claimed):
            if ctx.stopping:
                write(
                    self.sessions,
                    partial(
                        _release, rule_ids=[i for i, _ in claimed[position:]], owner=ctx.instance
                    ),
                )
                break
            try:
                self.evaluate(ctx, rule_id, generation, cfg.chunk_size)
            except _LeaseLost:
                log.info("rule %d: taken over by another evaluator", rule_id)
        return len(claimed)

    def _claim(self, session: Session, owner: str) -> list[tuple[int, int]]:
        """Lease the due rules; returns (rule id, ``generation``) pairs.

        The generation is read here, before the rule's files are listed (in a later
        statement, which sees every attach whose request this value counts), so a request
        that arrives later shows as a different value when the evaluation finishes."""
        cfg = self.config.rules
        rows = claim(
            session,
            RuleRow,
            owner=owner,
            lease_s=cfg.lease_s,
            where=[
                RuleRow.next_evaluation_at <= utcnow(),
                RuleRow.state != RuleState.SUSPENDED.value,
            ],
            order_by=[RuleRow.priority.desc(), RuleRow.next_evaluation_at, RuleRow.id],
            limit=cfg.batch,
        )
        return [(r.id, r.generation) for r in rows]

    # -- one rule ----------------------------------------------------------------------------

    def evaluate(
        self, ctx: DaemonContext, rule_id: int, generation: int, chunk_size: int
    ) -> _Tally:
        tally = _Tally()
        with self.sessions() as session:
            rule = session.get(RuleRow, rule_id)
            if rule is None:
                return tally
            did = session.get(DIDRow, rule.did_id)
            files = expand_files(session, did) if did is not None else []
            try:
                plan = build_plan(session, self.config, rule)
            except DppsError as exc:
                plan = None
                tally.stuck = len(files) or 1
                reason = f"RSE expression no longer valid: {exc}".splitlines()[0]
                tally.reasons[reason] += 1
        if plan is not None:
            for part in chunks(files, chunk_size):
                if ctx.stopping:
                    write(self.sessions, lambda s: _release(s, [rule_id], ctx.instance))
                    return tally
                tally.add(
                    write(self.sessions, partial(self._chunk, ctx=ctx, plan=plan, part=part))
                )
        write(self.sessions, lambda s: self._finish(s, ctx, rule_id, generation, tally))
        return tally

    def _chunk(
        self, session: Session, ctx: DaemonContext, plan: Plan, part: Sequence[tuple[int, int]]
    ) -> _Tally:
        now = utcnow()
        rules = lock_rules(session, [plan.rule_id])
        if not rules or rules[0].lease_owner != ctx.instance:
            raise _LeaseLost
        rules[0].lease_expires_at = now + dt.timedelta(seconds=self.config.rules.lease_s)
        ids = [f for f, _ in part]
        replicas: dict[int, dict[int, str]] = defaultdict(dict)
        for did_id, rse_id, state in session.execute(
            select(ReplicaRow.did_id, ReplicaRow.rse_id, ReplicaRow.state).where(
                ReplicaRow.did_id.in_(ids)
            )
        ):
            replicas[did_id][rse_id] = state
        locks: dict[int, dict[int, tuple[int, str]]] = defaultdict(dict)
        for lock_id, did_id, rse_id, state in session.execute(
            select(
                RuleLockRow.id, RuleLockRow.did_id, RuleLockRow.rse_id, RuleLockRow.state
            ).where(RuleLockRow.rule_id == plan.rule_id, RuleLockRow.did_id.in_(ids))
        ):
            locks[did_id][rse_id] = (lock_id, state)
        # One query by file id only: filtering on state or rule_id here lets the planner pick
        # those indexes and scan every open transfer (or every transfer of the rule) for each
        # chunk - quadratic in the size of the rule. A file has few transfers; filter here.
        open_to: dict[int, set[int]] = defaultdict(set)
        failed: dict[int, set[int]] = defaultdict(set)
        for did_id, rse_id, state, rule_id in session.execute(
            select(
                TransferRow.did_id, TransferRow.dest_rse_id, TransferRow.state, TransferRow.rule_id
            ).where(TransferRow.did_id.in_(ids))
        ):
            if state in OPEN:
                open_to[did_id].add(rse_id)
            elif state == TransferState.FAILED.value and rule_id == plan.rule_id:
                failed[did_id].add(rse_id)

        tally = _Tally(files=len(ids))
        new_locks: list[dict[str, Any]] = []
        changed_locks: list[dict[str, Any]] = []
        dropped_locks: list[int] = []
        transfers: list[dict[str, Any]] = []
        touched: set[int] = set()
        for did_id, size in part:
            want, chosen, reason = decide(
                plan, replicas[did_id], locks[did_id], open_to[did_id], failed[did_id]
            )
            if reason is not None:
                tally.stuck += 1
                tally.reasons[reason] += 1
                tally.example.setdefault(reason, did_id)
            held = locks[did_id]
            for rse_id, state in want.items():
                if rse_id not in held:
                    new_locks.append(
                        {
                            "rule_id": plan.rule_id,
                            "did_id": did_id,
                            "rse_id": rse_id,
                            "state": state,
                            "created_at": now,
                            "updated_at": now,
                        }
                    )
                elif held[rse_id][1] != state:
                    changed_locks.append(
                        {"id": held[rse_id][0], "state": state, "updated_at": now}
                    )
                else:
                    continue
                if rse_id in replicas[did_id]:
                    touched.add(did_id)
            for rse_id, (lock_id, _state) in held.items():
                if rse_id not in want:
                    dropped_locks.append(lock_id)
                    if rse_id in replicas[did_id]:
                        touched.add(did_id)
            for rse_id in chosen:
                transfers.append(
                    {
                        "did_id": did_id,
                        "dest_rse_id": rse_id,
                        "rule_id": plan.rule_id,
                        "state": TransferState.QUEUED.value,
                        "activity": plan.activity,
                        "priority": plan.priority,
                        "bytes": size,
                        "attempts": 0,
                        "max_attempts": plan.max_attempts,
                        "next_attempt_at": now,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
        insert_rows(session, _LOCKS, new_locks)
        if changed_locks:
            session.execute(update(RuleLockRow), changed_locks)
        for block in chunks(dropped_locks):
            session.execute(delete(RuleLockRow).where(RuleLockRow.id.in_(block)))
        # skips a file/RSE pair that got an open transfer meanwhile (the partial unique index),
        # e.g. queued by another rule's evaluator
        insert_rows(session, _TRANSFERS, transfers, ignore_conflicts=True)
        if touched:
            refresh_lock_counts(session, touched)
        tally.transfers = len(transfers)
        tally.lock_changes = len(new_locks) + len(changed_locks) + len(dropped_locks)
        return tally

    def _finish(
        self,
        session: Session,
        ctx: DaemonContext,
        rule_id: int,
        generation: int,
        tally: _Tally,
    ) -> None:
        """Set the rule's state from this evaluation and clear the request it answered, under
        the rule's row lock (``rule_states.evaluated``: the generation counter decides whether
        the request was answered)."""
        now = utcnow()
        rules = lock_rules(session, [rule_id])
        if not rules or rules[0].lease_owner != ctx.instance:
            return
        rule = rules[0]
        counts = dict(
            session.execute(
                select(RuleLockRow.state, func.count())
                .where(RuleLockRow.rule_id == rule_id)
                .group_by(RuleLockRow.state)
            ).all()
        )
        error: str | None = None
        if tally.stuck:
            state = RuleState.STUCK
            reason, _ = tally.reasons.most_common(1)[0]
            error = f"{tally.stuck} of {tally.files} file(s) stuck: {reason}"
            example = tally.example.get(reason)
            if example is not None and (row := session.get(DIDRow, example)) is not None:
                error += f" (e.g. {row.scope}:{row.name})"
        elif counts.get(RuleState.STUCK.value):
            state, error = RuleState.STUCK, rule.error or "a transfer failed"
        elif counts.get(RuleState.REPLICATING.value):
            state = RuleState.REPLICATING
        else:
            state = RuleState.OK
        rule_states.evaluated(
            session,
            rule,
            state=state,
            error=error,
            generation=generation,
            config=self.config.rules,
            account=self.account,
            now=now,
        )
        if tally.transfers or tally.lock_changes:
            events.record(
                session,
                account=self.account,
                action="rule.evaluate",
                did_id=rule.did_id,
                details={
                    "rule_id": rule.id,
                    "files": tally.files,
                    "transfers_queued": tally.transfers,
                    "lock_changes": tally.lock_changes,
                    "locks": counts,
                },
            )


def _release(session: Session, rule_ids: Sequence[int], owner: str) -> None:
    """Give rules back unevaluated (stopping); they stay due."""
    session.execute(
        update(RuleRow)
        .where(RuleRow.id.in_(list(rule_ids)), RuleRow.lease_owner == owner)
        .values(lease_owner=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
