"""What the archive offers its users, written once: ``Archive`` (local, over the catalog) and
``dpps.client.archive.RemoteArchive`` (over REST) both satisfy ``ArchiveAPI``, and mypy checks it
(``dpps.cli.common``, where the CLI chooses one of them).

The CLI works on an ``ArchiveAPI`` only, so a command that runs locally runs remotely with the
same arguments, records and errors; what the server does not offer, the remote twin refuses
inside a method of the same signature ("not available over REST"). Only record types are
imported here, so the client can name these Protocols without loading the local stack.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from dpps.bdms.records import (
    AuditReport,
    DeletionReport,
    ExportReport,
    HealthReport,
    RuleChange,
    StageInfo,
)
from dpps.bdms.types import (
    BulkReport,
    FileDetails,
    FileInfo,
    Location,
    MetaChange,
    Page,
    RefreshReport,
    RSEInfo,
    RuleDetails,
    RuleInfo,
    TransferInfo,
)
from dpps.core.identifiers import DID

Progress = Callable[[int], None]
Status = Callable[[str], None]


class ReplicationAPI(Protocol):
    """Rules and transfers (``archive.replication``): ``dpps rule`` and ``dpps transfer``."""

    def list_rules(
        self, *, state: str | None = None, did: str | DID | None = None, limit: int = 1000
    ) -> list[RuleInfo]: ...

    def rule_listing(
        self,
        *,
        state: str | None = None,
        did: str | DID | None = None,
        limit: int = 1000,
        offset: int = 0,
    ) -> Page[RuleInfo]: ...

    def get_rule(self, rule_id: int, *, problems: int = 10) -> RuleDetails: ...

    def update_rule(self, rule_id: int, change: RuleChange) -> RuleInfo: ...

    def delete_rule(self, rule_id: int, *, reason: str) -> RuleInfo: ...

    def transfers(
        self,
        *,
        rule_id: int | None = None,
        state: str | None = None,
        rse: str | None = None,
        errors_only: bool = False,
        limit: int = 100,
    ) -> list[TransferInfo]: ...

    def transfer_listing(
        self,
        *,
        rule_id: int | None = None,
        state: str | None = None,
        rse: str | None = None,
        errors_only: bool = False,
        limit: int = 100,
        offset: int = 0,
    ) -> Page[TransferInfo]: ...

    def retry_transfer(self, transfer_id: int) -> TransferInfo: ...


class PreservationAPI(Protocol):
    """Health, deletion, tape staging, audits and export (``archive.preservation``)."""

    def health(self) -> HealthReport: ...

    def delete(self, did: str | DID, *, reason: str) -> DeletionReport: ...

    def stage(
        self,
        dids: Sequence[str | DID],
        *,
        wait: bool = False,
        timeout_s: float | None = None,
        status: Status | None = None,
    ) -> list[StageInfo]: ...

    def stage_requests(self, *, state: str | None = None, limit: int = 100) -> list[StageInfo]: ...

    def stage_listing(
        self, *, state: str | None = None, limit: int = 100, offset: int = 0
    ) -> Page[StageInfo]: ...

    def plan_audit(self, *, rse: str | None = None, limit: int | None = None) -> list[int]: ...

    def audit(
        self,
        *,
        replica_ids: Sequence[int],
        progress: Progress | None = None,
        bytes_per_s: float | None = None,
    ) -> AuditReport: ...

    def export_size(self, did: str | DID) -> int: ...

    def export(
        self,
        did: str | DID,
        dest: Path,
        *,
        progress: Progress | None = None,
        wait: bool = True,
        timeout_s: float | None = None,
    ) -> ExportReport: ...


class DatasetsAPI(Protocol):
    """Datasets and containers (``archive.datasets``): ``dpps dataset``."""

    def add_dataset(
        self, did: str | DID, *, meta: Mapping[str, str] | None = None
    ) -> FileInfo: ...

    def add_container(
        self, did: str | DID, *, meta: Mapping[str, str] | None = None
    ) -> FileInfo: ...

    def attach(
        self,
        parent: str | DID,
        children: Sequence[str | DID],
        *,
        ignore_duplicates: bool = False,
    ) -> list[str]: ...

    def detach(self, parent: str | DID, children: Sequence[str | DID]) -> list[str]: ...

    def close(self, did: str | DID) -> FileInfo: ...

    def reopen(self, did: str | DID) -> FileInfo: ...

    def list_content(
        self,
        did: str | DID,
        *,
        recursive: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[FileInfo]: ...

    def content_listing(
        self, did: str | DID, *, recursive: bool = False, limit: int = 1000, offset: int = 0
    ) -> Page[FileInfo]: ...


class AcadaIngestAPI(Protocol):
    """The ACADA queue's per-file logic run once by hand (``archive.acada``)."""

    def ingest(
        self, paths: Sequence[Path], rse: str | None = None, *, landing: Path | None = None
    ) -> BulkReport: ...


class ArchiveAPI(Protocol):
    """The archive's operations, the same locally and over REST."""

    def close(self) -> None: ...

    # -- query
    def list_files(
        self,
        filter_text: str = "",
        *,
        limit: int | None = 100,
        offset: int = 0,
        all_versions: bool = False,
        did_type: str | None = "FILE",
        dataset: str | DID | None = None,
    ) -> list[FileInfo]: ...

    def count(
        self,
        filter_text: str = "",
        *,
        all_versions: bool = False,
        did_type: str | None = "FILE",
        dataset: str | DID | None = None,
    ) -> int: ...

    def show(self, did: str | DID, *, events_limit: int = 50) -> FileDetails: ...

    def locate(self, did: str | DID) -> Location: ...

    def rses(self) -> list[RSEInfo]: ...

    def rse_select(self, expression: str) -> list[str]: ...

    # -- metadata
    def set_meta(
        self, did: str | DID, pairs: Mapping[str, str], *, reason: str | None = None
    ) -> list[MetaChange]: ...

    def refresh_meta(
        self, filter_text: str, *, progress: Progress | None = None, dry_run: bool = False
    ) -> RefreshReport: ...

    # -- rules
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
    ) -> int: ...

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
    ) -> list[int]: ...

    def apply_policy(self, did: str | DID, policy: str) -> list[int]: ...

    # -- ingest and retrieval
    def plan_size(self, paths: Sequence[Path], recursive: bool = False) -> int: ...

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
    ) -> BulkReport: ...

    def get(
        self,
        dids: Sequence[str | DID],
        dest: Path,
        *,
        overwrite: bool = False,
        progress: Progress | None = None,
        wait: bool = True,
        timeout_s: float | None = None,
        status: Status | None = None,
    ) -> BulkReport: ...

    # -- sub-APIs
    @property
    def replication(self) -> ReplicationAPI: ...

    @property
    def preservation(self) -> PreservationAPI: ...

    @property
    def datasets(self) -> DatasetsAPI: ...

    @property
    def acada(self) -> AcadaIngestAPI: ...
