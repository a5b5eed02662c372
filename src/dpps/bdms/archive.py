"""`Archive`: the one Python entry point to the bulk archive.

The CLI and the REST API are thin layers over this class. It wires configuration, catalog and
storage together and owns transactions; the domain logic lives in the modules it calls, each
imported by the method that calls it: every CLI command opens an Archive, and a query need not
load ingestion, replication, preservation and export (issue 14, a CLI that starts fast).
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

import yaml
from sqlalchemy import Engine, Select, func, select
from sqlalchemy.orm import Session, sessionmaker

from dpps.bdms import retrieve
from dpps.bdms.records import IngestOptions
from dpps.bdms.types import (
    BulkReport,
    EventInfo,
    FileDetails,
    FileInfo,
    Location,
    MetaChange,
    RefreshReport,
    RSEInfo,
)
from dpps.catalog import attachments as attachment_repo
from dpps.catalog import dids as did_repo
from dpps.catalog import events as event_repo
from dpps.catalog import rses as rse_repo
from dpps.catalog.context import CatalogContext
from dpps.catalog.engine import (
    current_revision,
    head_revision,
    known_revision,
    make_engine,
    make_sessionmaker,
    require_catalog,
    single_statement_reads,
    transaction,
    upgrade,
)
from dpps.catalog.models import DIDRow, ReplicaRow, RSERow
from dpps.catalog.query import select_dids
from dpps.catalog.replicas import replicas_of
from dpps.core.config import Config, load_config
from dpps.core.defaults import default_config
from dpps.core.errors import Conflict, InvalidInput, NotFound
from dpps.core.identifiers import DID, parse_did
from dpps.core.states import DataLevel, DIDType, ReplicaState
from dpps.core.version import __version__
from dpps.core.workspace import CONFIG_NAME, find_workspace
from dpps.storage.rse import StorageElement

if TYPE_CHECKING:
    from dpps.bdms.datasets_api import Datasets
    from dpps.bdms.ingestion.api import AcadaAPI
    from dpps.bdms.preservation.api import Preservation
    from dpps.bdms.replication.api import Replication
    from dpps.bdms.views import ArchiveViews

Progress = Callable[[int], None]


def file_info(row: DIDRow) -> FileInfo:
    """The ``FileInfo`` of an ORM row: ``listings.file_from`` of its columns (one mapping for
    rows and columns alike)."""
    from dpps.bdms.listings import file_from, file_values

    return file_from(file_values(row))


class Archive:
    """The bulk archive of one deployment (one configuration, one catalog)."""

    def __init__(self, config: Config, *, account: str = "root", engine: Engine | None = None):
        self.config = config
        self.account = account
        self.engine = engine or make_engine(
            config.catalog_url(), config.catalog.busy_timeout_s, config.catalog.echo
        )
        self.sessions: sessionmaker[Session] = make_sessionmaker(self.engine)

    # -- lifecycle -------------------------------------------------------------------------
    @classmethod
    def init(
        cls,
        directory: Path,
        *,
        catalog_url: str | None = None,
        force: bool = False,
        account: str = "root",
    ) -> Self:
        """Create a workspace with the reference topology and an empty, migrated catalog."""
        directory = directory.expanduser().resolve()
        config_path = directory / CONFIG_NAME
        if config_path.exists() and not force:
            raise Conflict(f"{config_path} exists already (use --force to overwrite it)")
        directory.mkdir(parents=True, exist_ok=True)
        data = default_config()
        if catalog_url is not None:
            data["catalog"]["url"] = catalog_url
        config_path.write_text(
            "# dpps workspace configuration; see docs/configuration.md\n"
            + yaml.safe_dump(data, sort_keys=False),
            encoding="utf-8",
        )
        archive = cls.open(directory, account=account, create=True)
        for name in archive.config.rses:
            storage = StorageElement.from_config(name, archive.config)
            storage.fs.makedirs(storage.root, exist_ok=True)
        return archive

    @classmethod
    def open(
        cls, workspace: str | Path | None = None, *, account: str = "root", create: bool = False
    ) -> Self:
        """Open the workspace found like git finds its repository; migrate the catalog.

        A workspace whose SQLite catalog file is missing is ``NotFound`` and nothing is
        created (a deleted or unmounted catalog must not become a second, empty archive);
        ``create`` is for ``init`` alone.
        """
        config = load_config(find_workspace(workspace))
        if not create:
            require_catalog(config.catalog_url())
        archive = cls(config, account=account)
        archive.prepare_catalog()
        return archive

    def prepare_catalog(self) -> None:
        """Migrate the catalog to this dpps's schema, unless a newer dpps already moved it
        past what this one knows: then refuse, before reading or writing anything (a site
        process left on an older release must not run on a schema it does not understand,
        nor try to migrate it back)."""
        current = current_revision(self.engine)
        if current is not None and known_revision(current) is False:
            raise Conflict(
                f"the catalog's schema is at revision {current}, newer than this dpps "
                f"{__version__} knows (its newest is {head_revision(self.engine)}): upgrade "
                "dpps here first (docs/deployment.md, 'Upgrading while sites run')"
            )
        if current != head_revision(self.engine):
            upgrade(self.engine)
        with transaction(self.sessions) as session:
            rse_repo.sync_rses(session, self.config, self.account)

    def as_account(self, account: str) -> Archive:
        """A view acting as ``account`` (events name it); shares the engine, so it is cheap
        enough per request. Close only the original, never a view."""
        view = copy.copy(self)
        view.account = account
        return view

    @property
    def context(self) -> CatalogContext:
        """What daemons get instead of the facade: the configuration, sessions and account
        of this archive as they are now (``as_account`` views and config updates included)."""
        return CatalogContext(self.config, self.sessions, self.account)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object | TracebackType | None) -> None:
        self.close()

    # -- helpers ---------------------------------------------------------------------------
    @functools.cached_property
    def reads(self) -> Engine:
        """The engine for reads of one statement (``single_statement_reads``): no
        transaction around them on PostgreSQL. Never for writes."""
        return single_statement_reads(self.engine)

    def did(self, text: str) -> DID:
        return parse_did(text, self.config.default_scope)

    def storage(self, rse: str) -> StorageElement:
        if rse not in self.config.rses:
            known = ", ".join(sorted(self.config.rses))
            raise NotFound(f"unknown RSE {rse!r} (known: {known})")
        return StorageElement.from_config(rse, self.config)

    # -- ingest and registration -------------------------------------------------------------
    def ingest(
        self,
        paths: Sequence[Path],
        rse: str,
        *,
        scope: str | None = None,
        lfn: str | None = None,
        lfn_prefix: str | None = None,
        dataset: str | None = None,
        meta: Mapping[str, str] | None = None,
        recursive: bool = False,
        new_version: bool = False,
        progress: Progress | None = None,
    ) -> BulkReport:
        storage = self.storage(rse)
        with self.sessions() as session:
            rse_id = rse_repo.get_rse(session, rse).id
        opts = IngestOptions(
            rse=rse,
            scope=scope or self.config.default_scope,
            lfn=lfn,
            lfn_prefix=lfn_prefix,
            dataset=dataset,
            meta=meta,
            recursive=recursive,
            new_version=new_version,
        )
        from dpps.bdms import ingest as ingest_mod

        return ingest_mod.ingest(
            self.sessions,
            storage,
            rse_id,
            paths,
            opts,
            account=self.account,
            algorithms=self.config.checksums,
            workers=self.config.ingest.workers,
            chunk_size=self.config.ingest.chunk_size,
            progress=progress,
        )

    def plan_size(self, paths: Sequence[Path], recursive: bool = False) -> int:
        """How many files an ingest of ``paths`` will handle (for progress bars)."""
        total = 0
        for p in paths:
            if p.is_dir() and recursive:
                total += sum(1 for q in p.rglob("*") if q.is_file() and not q.is_symlink())
            else:
                total += 1
        return total

    def register(self, files: Sequence[did_repo.NewFile]) -> list[did_repo.Outcome]:
        """Catalog-only registration of files whose bytes are already on an RSE (prepared by
        ``dpps.bdms.registration``, the one registration path)."""
        from dpps.bdms import registration

        with transaction(self.sessions) as session:
            return registration.register(session, files, account=self.account)

    def rse_id(self, name: str) -> int:
        with self.sessions() as session:
            return rse_repo.get_rse(session, name).id

    def holds_raw_data(self, did: str | DID) -> bool:
        """True if ``did`` is a DL0 file or a collection with a DL0 file anywhere below it."""
        parsed = did if isinstance(did, DID) else self.did(did)
        with self.sessions() as session:
            row = did_repo.get_did(session, parsed)
            return attachment_repo.holds_level(session, row.id, DataLevel.DL0.value)

    # -- query -----------------------------------------------------------------------------
    def list_files(
        self,
        filter_text: str = "",
        *,
        limit: int | None = 100,
        offset: int = 0,
        all_versions: bool = False,
        did_type: str | None = DIDType.FILE.value,
        dataset: str | DID | None = None,
    ) -> list[FileInfo]:
        """DIDs matching a filter (docs/query-language.md); ``dataset`` keeps those attached
        below that dataset or container, at any depth."""
        from dpps.bdms.listings import read_files

        stmt = select_dids(
            filter_text,
            did_type=did_type,
            include_all_versions=all_versions,
            limit=limit,
            offset=offset,
        )
        with self.reads.connect() as conn:
            if dataset is not None:
                with Session(bind=conn) as session:
                    stmt = self._within(session, stmt, dataset)
            return read_files(conn, stmt)

    def count(
        self,
        filter_text: str = "",
        *,
        all_versions: bool = False,
        did_type: str | None = DIDType.FILE.value,
        dataset: str | DID | None = None,
    ) -> int:
        stmt = select_dids(
            filter_text, did_type=did_type, include_all_versions=all_versions, limit=None
        )
        with self.sessions() as session:
            stmt = self._within(session, stmt, dataset)
            counted = select(func.count()).select_from(stmt.order_by(None).subquery())
            return int(session.scalar(counted) or 0)

    def _within(
        self, session: Session, stmt: Select[DIDRow], dataset: str | DID | None
    ) -> Select[DIDRow]:
        """``stmt`` narrowed to the DIDs below a collection (``ls --dataset``)."""
        if dataset is None:
            return stmt
        from dpps.bdms.datasets import collection_id

        parsed = dataset if isinstance(dataset, DID) else self.did(dataset)
        return stmt.where(attachment_repo.member_of(collection_id(session, parsed)))

    def show(self, did: str | DID, *, events_limit: int = 50) -> FileDetails:
        from dpps.bdms.availability import replica_info

        parsed = did if isinstance(did, DID) else self.did(did)
        with self.sessions() as session:
            row = did_repo.get_did(session, parsed)
            pairs = replicas_of(session, row.id)
            rse_names = {r.id: r.name for r in rse_repo.list_rses(session)}
            evs = [
                EventInfo(
                    e.ts,
                    e.account,
                    e.action,
                    rse_names.get(e.rse_id or -1),
                    e.reason,
                    dict(e.details or {}),
                )
                for e in event_repo.events_for(session, row.id, events_limit)
            ]
            versions = [v.version for v in did_repo.versions_of(session, row.scope, row.name)]
            return FileDetails(
                file=file_info(row),
                replicas=[replica_info(self.config, rep, rse) for rep, rse in pairs],
                events=evs,
                versions=versions,
                parents=[
                    retrieve.did_label(p) for p in attachment_repo.parents_of(session, row.id)
                ],
                children=[
                    retrieve.did_label(c) for c in attachment_repo.children_of(session, row.id)
                ],
            )

    # -- retrieval -------------------------------------------------------------------------
    def locate(self, did: str | DID) -> Location:
        parsed = did if isinstance(did, DID) else self.did(did)
        with self.reads.connect() as conn:
            return retrieve.locate(conn, self.config, parsed)

    def get(
        self,
        dids: Sequence[str | DID],
        dest: Path,
        *,
        overwrite: bool = False,
        progress: Progress | None = None,
        wait: bool = True,
        timeout_s: float | None = None,
        status: Callable[[str], None] | None = None,
    ) -> BulkReport:
        """Retrieve files; tape-only ones are staged first (``wait=False``: only requested)."""
        if not dids:
            raise InvalidInput("nothing to retrieve: give at least one DID")
        parsed = [d if isinstance(d, DID) else self.did(d) for d in dids]
        return retrieve.get(
            self.sessions,
            self.config,
            parsed,
            dest,
            account=self.account,
            overwrite=overwrite,
            progress=progress,
            wait=wait,
            timeout_s=timeout_s,
            status=status,
        )

    @property
    def preservation(self) -> Preservation:
        """Tape staging, deletion, lifetimes, audits, export and health (one sub-API)."""
        from dpps.bdms.preservation.api import Preservation

        return Preservation(self.sessions, self.config, self.account)

    @property
    def datasets(self) -> Datasets:
        """Datasets and containers: add, attach, detach, close, list content (sub-API)."""
        from dpps.bdms.datasets_api import Datasets

        return Datasets(self.config, self.sessions, self.account)

    @property
    def acada(self) -> AcadaAPI:
        """ACADA ingestion: landing-area queues and the one-off ``ingest --acada`` (sub-API)."""
        from dpps.bdms.ingestion.api import AcadaAPI  # imports the queue only when used

        return AcadaAPI(self)

    # -- metadata care ---------------------------------------------------------------------
    def set_meta(
        self, did: str | DID, pairs: Mapping[str, str], *, reason: str | None = None
    ) -> list[MetaChange]:
        from dpps.bdms import metadata_ops

        parsed = did if isinstance(did, DID) else self.did(did)
        return metadata_ops.set_meta(
            self.sessions, parsed, pairs, account=self.account, reason=reason
        )

    def refresh_meta(
        self, filter_text: str, *, progress: Progress | None = None, dry_run: bool = False
    ) -> RefreshReport:
        from dpps.bdms import metadata_ops

        return metadata_ops.refresh_meta(
            self.sessions,
            self.config,
            filter_text,
            account=self.account,
            progress=progress,
            dry_run=dry_run,
        )

    # -- replication rules -----------------------------------------------------------------
    def add_rule(
        self,
        did: str | DID,
        *,
        copies: int,
        rses: str,
        source: str | None = None,
        lifetime: dt.timedelta | None = None,
        priority: int = 3,
        activity: str = "default",
        comment: str | None = None,
        locked: bool = False,
        skip_duplicate: bool = False,
    ) -> int:
        """Ask for ``copies`` replicas of ``did`` on RSEs matching ``rses``; returns its id
        (the existing rule's, with ``skip_duplicate``, when the account asked the same)."""
        return self.add_rules(
            [did],
            copies=copies,
            rses=rses,
            source=source,
            lifetime=lifetime,
            priority=priority,
            activity=activity,
            comment=comment,
            locked=locked,
            skip_duplicate=skip_duplicate,
        )[0]

    def add_rules(
        self,
        dids: Sequence[str | DID],
        *,
        copies: int,
        rses: str,
        source: str | None = None,
        lifetime: dt.timedelta | None = None,
        priority: int = 3,
        activity: str = "default",
        comment: str | None = None,
        locked: bool = False,
        skip_duplicate: bool = False,
    ) -> list[int]:
        """One rule per DID, all or none (one transaction, as Rucio's ``add-rule`` with
        several DIDs): a missing DID or a refused duplicate leaves no rule behind."""
        from dpps.bdms.replication import rules

        if not dids:
            raise InvalidInput("give at least one DID for the rule")
        parsed = [d if isinstance(d, DID) else self.did(d) for d in dids]
        with transaction(self.sessions) as session:
            return [
                rules.add_rule(
                    session,
                    did_repo.get_did(session, did),
                    copies=copies,
                    rse_expression=rses,
                    account=self.account,
                    source_expression=source,
                    lifetime=lifetime,
                    priority=priority,
                    activity=activity,
                    comment=comment,
                    config=self.config,
                    locked=locked,
                    skip_duplicate=skip_duplicate,
                ).id
                for did in parsed
            ]

    @property
    def replication(self) -> Replication:
        """Rules and transfers: list, show, delete (``dpps.bdms.replication.api``)."""
        from dpps.bdms.replication.api import Replication

        return Replication(self.config, self.sessions, self.account)

    @property
    def views(self) -> ArchiveViews:
        """Listings and aggregates with filters, order, paging and totals
        (``dpps.bdms.listings``, ``dpps.bdms.stats``): what REST, dashboard and CLI show."""
        from dpps.bdms.views import ArchiveViews

        return ArchiveViews(self.sessions, self.reads)

    def rse_select(self, expression: str) -> list[str]:
        """Names of the RSEs an RSE expression selects, e.g. ``offsite&type=tape``."""
        return self.replication.select_rses(expression)

    def apply_policy(self, did: str | DID, policy: str) -> list[int]:
        """Give ``did`` the rules of a named policy from the configuration (e.g. ``acada``)."""
        from dpps.bdms.replication import rules

        parsed = did if isinstance(did, DID) else self.did(did)
        with transaction(self.sessions) as session:
            row = did_repo.get_did(session, parsed)
            return [
                r.id
                for r in rules.apply_policy(
                    session, self.config, row, policy, account=self.account
                )
            ]

    # -- storage elements ------------------------------------------------------------------
    def rses(self) -> list[RSEInfo]:
        stmt = (
            select(ReplicaRow.rse_id, func.count(), func.coalesce(func.sum(ReplicaRow.bytes), 0))
            .where(ReplicaRow.state == ReplicaState.AVAILABLE.value)
            .group_by(ReplicaRow.rse_id)
        )
        with self.sessions() as session:
            usage = {rse_id: (int(n), int(b)) for rse_id, n, b in session.execute(stmt)}
            rows: Sequence[RSERow] = rse_repo.list_rses(session)
            return [
                RSEInfo(
                    r.name,
                    r.site,
                    r.kind,
                    r.onsite,
                    r.url,
                    r.available,
                    dict(r.attributes),
                    *usage.get(r.id, (0, 0)),
                )
                for r in rows
            ]
