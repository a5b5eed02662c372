"""``archive.replication``: rules and transfers from Python, the CLI and the REST API.

A small sub-API of ``Archive`` (which only exposes it), so the facade stays small: each method
opens its own session or transaction and returns plain records from ``dpps.bdms.types``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased, sessionmaker

from dpps.bdms.replication import interventions, rse_expression, rules
from dpps.bdms.retrieve import did_label
from dpps.bdms.types import RuleDetails, RuleInfo, TransferInfo
from dpps.catalog import dids as did_repo
from dpps.catalog.engine import transaction
from dpps.catalog.models import DIDRow, RSERow, RuleLockRow, RuleRow, TransferRow
from dpps.catalog.replication import expand_files
from dpps.core.config import Config
from dpps.core.errors import InvalidInput, NotFound
from dpps.core.identifiers import DID, parse_did
from dpps.core.states import RuleState, TransferState


class Replication:
    """Rules, their locks and transfers of one archive."""

    def __init__(self, config: Config, sessions: sessionmaker[Session], account: str) -> None:
        self.config = config
        self.sessions = sessions
        self.account = account

    def select_rses(self, expression: str) -> list[str]:
        """Names of the RSEs an expression selects (``available`` from the catalog)."""
        with self.sessions() as session:
            available = {r.name: r.available for r in session.scalars(select(RSERow))}
        return rse_expression.select(self.config, expression, available)

    def list_rules(
        self, *, state: str | None = None, did: str | DID | None = None, limit: int = 1000
    ) -> list[RuleInfo]:
        stmt = select(RuleRow, DIDRow).join(DIDRow, DIDRow.id == RuleRow.did_id)
        if state is not None:
            stmt = stmt.where(RuleRow.state == rule_state(state).value)
        with self.sessions() as session:
            if did is not None:
                row = did_repo.get_did(session, self._did(did))
                stmt = stmt.where(RuleRow.did_id == row.id)
            pairs = session.execute(stmt.order_by(RuleRow.id).limit(limit)).all()
            counts = lock_counts(session, [r.id for r, _ in pairs])
            return [_info(r, d, counts.get(r.id, {})) for r, d in pairs]

    def get_rule(self, rule_id: int, *, problems: int = 10) -> RuleDetails:
        with self.sessions() as session:
            pair = session.execute(
                select(RuleRow, DIDRow)
                .join(DIDRow, DIDRow.id == RuleRow.did_id)
                .where(RuleRow.id == rule_id)
            ).first()
            if pair is None:
                raise NotFound(f"no rule {rule_id}")
            rule, did = pair
            transfers = dict(
                session.execute(
                    select(TransferRow.state, func.count())
                    .where(TransferRow.rule_id == rule_id)
                    .group_by(TransferRow.state)
                ).all()
            )
            try:
                names = self.select_rses(rule.rse_expression)
            except InvalidInput:
                names = []
            return RuleDetails(
                rule=_info(rule, did, lock_counts(session, [rule_id]).get(rule_id, {})),
                rse_names=names,
                files=len(expand_files(session, did)),
                transfers=transfers,
                problems=self.transfers(rule_id=rule_id, errors_only=True, limit=problems),
            )

    def transfers(
        self,
        *,
        rule_id: int | None = None,
        state: str | None = None,
        rse: str | None = None,
        ids: Sequence[int] | None = None,
        errors_only: bool = False,
        limit: int = 100,
    ) -> list[TransferInfo]:
        """Transfers, newest change first; ``rse`` is the destination, ``errors_only`` keeps
        those with an error."""
        src, dst = aliased(RSERow), aliased(RSERow)
        stmt = (
            select(TransferRow, DIDRow, src.name, dst.name)
            .join(DIDRow, DIDRow.id == TransferRow.did_id)
            .join(dst, dst.id == TransferRow.dest_rse_id)
            .outerjoin(src, src.id == TransferRow.source_rse_id)
        )
        if rule_id is not None:
            stmt = stmt.where(TransferRow.rule_id == rule_id)
        if state is not None:
            stmt = stmt.where(TransferRow.state == transfer_state(state).value)
        if rse is not None:
            stmt = stmt.where(dst.name == rse)
        if ids is not None:
            stmt = stmt.where(TransferRow.id.in_(list(ids)))
        if errors_only:
            stmt = stmt.where(TransferRow.error.is_not(None))
        stmt = stmt.order_by(TransferRow.updated_at.desc(), TransferRow.id.desc()).limit(limit)
        with self.sessions() as session:
            return [
                TransferInfo(
                    id=t.id,
                    did=did_label(d),
                    source=s,
                    dest=r,
                    state=t.state,
                    attempts=t.attempts,
                    max_attempts=t.max_attempts,
                    bytes=t.bytes,
                    error=t.error,
                    next_attempt_at=t.next_attempt_at,
                    finished_at=t.finished_at,
                )
                for t, d, s, r in session.execute(stmt)
            ]

    def delete_rule(self, rule_id: int, *, reason: str) -> RuleInfo:
        """Delete a rule (see ``dpps.bdms.replication.rules.delete_rule``); returns what it was."""
        with transaction(self.sessions) as session:
            before = self._rule_info(session, rule_id)
            rules.delete_rule(session, rule_id, reason=reason, account=self.account)
            return before

    def update_rule(self, rule_id: int, change: interventions.RuleChange) -> RuleInfo:
        """Change a rule in place (``interventions.update_rule``); returns it as it is now."""
        with transaction(self.sessions) as session:
            interventions.update_rule(session, rule_id, change, account=self.account)
            session.flush()
            return self._rule_info(session, rule_id)

    def retry_transfer(self, transfer_id: int) -> TransferInfo:
        """Queue a FAILED transfer again (``interventions.retry_transfer``)."""
        with transaction(self.sessions) as session:
            interventions.retry_transfer(session, transfer_id, account=self.account)
        found = self.transfers(ids=[transfer_id])
        return found[0]

    def _rule_info(self, session: Session, rule_id: int) -> RuleInfo:
        rule = session.get(RuleRow, rule_id)
        if rule is None:
            raise NotFound(f"no rule {rule_id}")
        did = session.get(DIDRow, rule.did_id)
        assert did is not None
        return _info(rule, did, lock_counts(session, [rule_id]).get(rule_id, {}))

    def _did(self, did: str | DID) -> DID:
        return did if isinstance(did, DID) else parse_did(did, self.config.default_scope)


def rule_state(text: str) -> RuleState:
    """A rule state given by a user (any case), or a clear error naming the known ones."""
    try:
        return RuleState(text.upper())
    except ValueError:
        known = ", ".join(s.value for s in RuleState)
        raise InvalidInput(f"unknown rule state {text!r} (use {known})") from None


def transfer_state(text: str) -> TransferState:
    """A transfer state given by a user (any case), or a clear error naming the known ones."""
    try:
        return TransferState(text.upper())
    except ValueError:
        known = ", ".join(s.value for s in TransferState)
        raise InvalidInput(f"unknown transfer state {text!r} (use {known})") from None


def lock_counts(session: Session, rule_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """File locks of each rule counted by state (shared with the REST rules router)."""
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    if rule_ids:
        for rule_id, state, n in session.execute(
            select(RuleLockRow.rule_id, RuleLockRow.state, func.count())
            .where(RuleLockRow.rule_id.in_(list(rule_ids)))
            .group_by(RuleLockRow.rule_id, RuleLockRow.state)
        ):
            counts[rule_id][state] = int(n)
    return counts


def _info(rule: RuleRow, did: DIDRow, locks: dict[str, int]) -> RuleInfo:
    return RuleInfo(
        id=rule.id,
        did=did_label(did),
        did_type=did.did_type,
        copies=rule.copies,
        rses=rule.rse_expression,
        source=rule.source_expression,
        state=rule.state,
        error=rule.error,
        priority=rule.priority,
        activity=rule.activity,
        account=rule.account,
        policy=rule.policy,
        comment=rule.comment,
        locked=rule.locked,
        created_at=rule.created_at,
        updated_at=rule.updated_at,
        expires_at=rule.expires_at,
        next_evaluation_at=rule.next_evaluation_at,
        locks=dict(locks),
    )
