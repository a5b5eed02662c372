"""``archive.replication``: rules and transfers from Python, the CLI and the REST API.

A small sub-API of ``Archive`` (which only exposes it), so the facade stays small: each method
opens its own session or transaction and returns plain records from ``dpps.bdms.types``.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from dpps.bdms import listings
from dpps.bdms.listings import (
    RuleFilter,
    RuleOrder,
    TransferFilter,
    TransferOrder,
)
from dpps.bdms.records import RuleChange
from dpps.bdms.replication import interventions, rse_expression, rules
from dpps.bdms.types import (
    Page,
    PageRequest,
    RuleDetails,
    RuleInfo,
    TransferInfo,
    TransferRecord,
)
from dpps.catalog import dids as did_repo
from dpps.catalog.engine import transaction
from dpps.catalog.models import DIDRow, RSERow, RuleLockRow, RuleRow, TransferRow
from dpps.catalog.replication import expand_files
from dpps.core.config import Config
from dpps.core.errors import InvalidInput
from dpps.core.identifiers import DID, parse_did


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
        """Rules oldest first (``dpps rule list``); an unknown ``did`` is NotFound."""
        return self.rule_listing(state=state, did=did, limit=limit).items

    def rule_listing(
        self,
        *,
        state: str | None = None,
        did: str | DID | None = None,
        limit: int = 1000,
        offset: int = 0,
    ) -> Page[RuleInfo]:
        """``list_rules`` from ``offset``, with how many match in all (``dpps rule list``'s
        total and paging)."""
        with self.sessions() as session:
            where = RuleFilter(state=state)
            if did is not None:
                row = did_repo.get_did(session, self._did(did))
                where = RuleFilter(state=state, did=DID(row.scope, row.name, row.version))
            return listings.list_rules(
                session, where, PageRequest(offset=offset, limit=limit), order="oldest"
            )

    def rules_page(
        self,
        where: RuleFilter = RuleFilter(),
        page: PageRequest = PageRequest(),
        *,
        order: RuleOrder = "newest",
    ) -> Page[RuleInfo]:
        """A page of rules and how many match (REST, dashboard): ``dpps.bdms.listings``."""
        with self.sessions() as session:
            return listings.list_rules(session, where, page, order=order)

    def rule(self, rule_id: int) -> RuleInfo:
        """One rule as lists show it (``get_rule`` adds RSEs, files and transfers)."""
        with self.sessions() as session:
            return listings.get_rule(session, rule_id)

    def get_rule(self, rule_id: int, *, problems: int = 10) -> RuleDetails:
        with self.sessions() as session:
            info = listings.get_rule(session, rule_id)
            rule = session.get(RuleRow, rule_id)
            did = session.get(DIDRow, rule.did_id) if rule is not None else None
            assert rule is not None
            assert did is not None
            transfers = dict(
                session.execute(
                    select(TransferRow.state, func.count())
                    .where(TransferRow.rule_id == rule_id)
                    .group_by(TransferRow.state)
                ).all()
            )
            placement: dict[str, dict[str, int]] = {}
            for rse, state, count in session.execute(
                select(RSERow.name, RuleLockRow.state, func.count())
                .join(RSERow, RSERow.id == RuleLockRow.rse_id)
                .where(RuleLockRow.rule_id == rule_id)
                .group_by(RSERow.name, RuleLockRow.state)
                .order_by(RSERow.name, RuleLockRow.state)
            ):
                placement.setdefault(rse, {})[state] = count
            try:
                names = self.select_rses(rule.rse_expression)
            except InvalidInput:
                names = []
            return RuleDetails(
                rule=info,
                rse_names=names,
                files=len(expand_files(session, did)),
                transfers=transfers,
                problems=self.transfers(rule_id=rule_id, errors_only=True, limit=problems),
                placement=placement,
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
        where = TransferFilter(
            state=state, rse=rse, rule_id=rule_id, ids=ids, errors_only=errors_only
        )
        if limit < 1:  # none wanted (a rule shown without its problems)
            return []
        page = self.transfers_page(where, PageRequest(limit=limit), order="updated")
        return [t.info() for t in page.items]

    def transfer_listing(
        self,
        *,
        rule_id: int | None = None,
        state: str | None = None,
        rse: str | None = None,
        errors_only: bool = False,
        limit: int = 100,
        offset: int = 0,
    ) -> Page[TransferInfo]:
        """``transfers`` from ``offset``, with how many match in all (``dpps transfer
        list``'s total and paging)."""
        where = TransferFilter(state=state, rse=rse, rule_id=rule_id, errors_only=errors_only)
        page = self.transfers_page(where, PageRequest(offset, limit), order="updated")
        return Page([t.info() for t in page.items], page.total, offset, limit)

    def transfers_page(
        self,
        where: TransferFilter = TransferFilter(),
        page: PageRequest = PageRequest(),
        *,
        order: TransferOrder = "id",
    ) -> Page[TransferRecord]:
        """A page of transfers and how many match (REST, dashboard): ``dpps.bdms.listings``."""
        with self.sessions() as session:
            return listings.list_transfers(session, where, page, order=order)

    def transfer(self, transfer_id: int) -> TransferRecord:
        with self.sessions() as session:
            return listings.get_transfer(session, transfer_id)

    def delete_rule(self, rule_id: int, *, reason: str) -> RuleInfo:
        """Delete a rule (see ``dpps.bdms.replication.rules.delete_rule``); returns what it was."""
        with transaction(self.sessions) as session:
            before = self._rule_info(session, rule_id)
            rules.delete_rule(session, rule_id, reason=reason, account=self.account)
            return before

    def update_rule(self, rule_id: int, change: RuleChange) -> RuleInfo:
        """Change a rule in place (``interventions.update_rule``); returns it as it is now."""
        with transaction(self.sessions) as session:
            interventions.update_rule(session, rule_id, change, account=self.account)
            session.flush()
            return self._rule_info(session, rule_id)

    def retry_transfer(self, transfer_id: int) -> TransferInfo:
        """Queue a FAILED transfer again (``interventions.retry_transfer``)."""
        with transaction(self.sessions) as session:
            interventions.retry_transfer(session, transfer_id, account=self.account)
        return self.transfer(transfer_id).info()

    def _rule_info(self, session: Session, rule_id: int) -> RuleInfo:
        return listings.get_rule(session, rule_id)

    def _did(self, did: str | DID) -> DID:
        return did if isinstance(did, DID) else parse_did(did, self.config.default_scope)
