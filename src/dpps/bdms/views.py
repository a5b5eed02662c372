"""``archive.views``: the facade's door to the listings (``bdms.listings``) and the archive's
aggregates (``bdms.stats``), each call in a read session of its own, or, for files, a
connection outside any transaction (``Archive.reads``: one statement needs none)."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from dpps.bdms import stats
from dpps.bdms.listings import (
    EventFilter,
    ReplicaFilter,
    RuleFilter,
    RuleOrder,
    TransferFilter,
    TransferOrder,
    find_file,
    get_rule,
    get_transfer,
    list_events,
    list_files,
    list_replicas,
    list_rules,
    list_transfers,
)
from dpps.bdms.types import (
    EventRecord,
    FileInfo,
    Page,
    PageRequest,
    ReplicaRecord,
    RuleInfo,
    TransferRecord,
)
from dpps.core.identifiers import DID


class ArchiveViews:
    """``archive.views``: the listings, each call in its own read session."""

    def __init__(self, sessions: sessionmaker[Session], reads: Engine) -> None:
        self.sessions = sessions
        self.reads = reads

    def rules(
        self,
        where: RuleFilter = RuleFilter(),
        page: PageRequest = PageRequest(),
        *,
        order: RuleOrder = "newest",
    ) -> Page[RuleInfo]:
        with self.sessions() as session:
            return list_rules(session, where, page, order=order)

    def rule(self, rule_id: int) -> RuleInfo:
        with self.sessions() as session:
            return get_rule(session, rule_id)

    def transfers(
        self,
        where: TransferFilter = TransferFilter(),
        page: PageRequest = PageRequest(),
        *,
        order: TransferOrder = "id",
    ) -> Page[TransferRecord]:
        with self.sessions() as session:
            return list_transfers(session, where, page, order=order)

    def transfer(self, transfer_id: int) -> TransferRecord:
        with self.sessions() as session:
            return get_transfer(session, transfer_id)

    def replicas(
        self,
        where: ReplicaFilter = ReplicaFilter(),
        page: PageRequest = PageRequest(),
    ) -> Page[ReplicaRecord]:
        with self.sessions() as session:
            return list_replicas(session, where, page)

    def events(
        self,
        where: EventFilter = EventFilter(),
        page: PageRequest = PageRequest(),
    ) -> Page[EventRecord]:
        with self.sessions() as session:
            return list_events(session, where, page)

    def files(
        self,
        filter_text: str = "",
        page: PageRequest = PageRequest(),
        *,
        order_by: str = "name",
    ) -> Page[FileInfo]:
        with self.reads.connect() as conn:
            return list_files(conn, filter_text, page, order_by=order_by)

    def file(self, did: DID) -> FileInfo | None:
        with self.sessions() as session:
            return find_file(session, did)

    # -- aggregates (``dpps.bdms.stats``) --------------------------------------------------

    def rules_by_state(self, *, policy: str | None = None) -> dict[str, int]:
        with self.sessions() as session:
            return stats.rules_by_state(session, policy=policy)

    def stored(self, *, live_files_only: bool = False) -> list[stats.SiteLevelVolume]:
        with self.sessions() as session:
            return stats.stored_by_site_and_level(session, live_files_only=live_files_only)

    def files_by_offsite_sites(self, lfn_prefix: str) -> Counter[int]:
        with self.sessions() as session:
            return stats.files_by_offsite_sites(session, lfn_prefix)
