"""The transfer ledger of a process that holds the catalog: each call one short transaction.

The API server answers a remote agent's requests with the same class (``dpps.oms.api``), so
an agent in the central process and one across the WAN move transfers on identically.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from dpps.bdms.transfer.claim import claim_jobs
from dpps.bdms.transfer.outcomes import record_outcomes, renew_leases, settle_rule_ids
from dpps.bdms.transfer.records import Job, Outcome, Recorded
from dpps.catalog.context import CatalogContext
from dpps.catalog.engine import write
from dpps.core.clock import utcnow


class CatalogLedger:
    """``TransferLedger`` on the catalog itself. ``dest_rses`` narrows claims to a site's
    RSEs (default: the context's partition, ``None`` for every RSE)."""

    def __init__(self, catalog: CatalogContext, dest_rses: frozenset[str] | None = None) -> None:
        self.catalog = catalog
        self.config = catalog.config
        self.sessions = catalog.sessions
        self.account = catalog.account
        self.dest_rses = catalog.rses if dest_rses is None else dest_rses

    def claim(self, owner: str, limit: int) -> list[Job]:
        return write(
            self.sessions,
            lambda s: claim_jobs(
                s, self.config, owner, limit, self.account, dest_rses=self.dest_rses
            ),
        )

    def record(self, owner: str, outcomes: Sequence[Outcome]) -> Recorded:
        return write(
            self.sessions,
            lambda s: record_outcomes(s, self.config, owner, outcomes, self.account),
        )

    def renew(self, owner: str, ids: Sequence[int]) -> None:
        lease_s = self.config.transfers.lease_s
        write(self.sessions, partial(renew_leases, owner=owner, ids=ids, lease_s=lease_s))

    def settle(self, rule_ids: set[int]) -> None:
        write(self.sessions, lambda s: settle_rule_ids(s, rule_ids, utcnow(), self.account))
