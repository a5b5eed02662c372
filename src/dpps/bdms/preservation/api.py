"""``archive.preservation``: tape staging, deletion, lifetimes, audits, export and health.

The sub-API the CLI (``dpps stage/delete/audit/export/health``), the REST API and the WMS use;
each method owns its transactions and delegates to the module that does the work, like
``Archive`` itself.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from dpps.bdms.export import bag as export
from dpps.bdms.preservation import auditor, deletion, health, reaper
from dpps.bdms.records import (
    AuditReport,
    DeletionReport,
    ExportReport,
    HealthReport,
    StageInfo,
    StageState,
)
from dpps.bdms.staging import stager
from dpps.bdms.types import Page, PageRequest
from dpps.catalog import dids as did_repo
from dpps.catalog import events as event_repo
from dpps.catalog.engine import transaction
from dpps.catalog.models import StageRequestRow
from dpps.catalog.replication import expand_files
from dpps.core.clock import utcnow
from dpps.core.config import Config
from dpps.core.daemon import DaemonContext
from dpps.core.errors import InvalidInput, Unavailable
from dpps.core.identifiers import DID, parse_did
from dpps.core.states import DIDType

Progress = Callable[[int], None]
Status = Callable[[str], None]


class Preservation:
    """Preservation operations of one archive (shares its sessions, config and account)."""

    def __init__(self, sessions: sessionmaker[Session], config: Config, account: str) -> None:
        self.sessions = sessions
        self.config = config
        self.account = account

    def _did(self, did: str | DID) -> DID:
        return did if isinstance(did, DID) else parse_did(did, self.config.default_scope)

    # -- tape staging ------------------------------------------------------------------------
    def stage(
        self,
        dids: Sequence[str | DID],
        *,
        wait: bool = False,
        timeout_s: float | None = None,
        status: Status | None = None,
    ) -> list[StageInfo]:
        """Ask for files to be staged from tape (joining open requests); optionally wait."""
        if not dids:
            raise InvalidInput("nothing to stage: give at least one DID")
        ids: list[int] = []
        with transaction(self.sessions) as session:
            for did in dids:
                row = did_repo.get_did(session, self._did(did), DIDType.FILE)
                ids.append(
                    stager.request_stage(session, self.config, row, account=self.account).id
                )
        if wait:
            self._wait(ids, timeout_s or self.config.staging.wait_timeout_s, status)
        return self.stage_requests(ids=ids)

    def _wait(self, ids: list[int], timeout_s: float, status: Status | None) -> None:
        deadline = time.monotonic() + timeout_s
        ctx = DaemonContext(name=stager.DAEMON)
        while True:
            with self.sessions() as session:
                rows = stager.requests_by_id(session, ids)
                alive = stager.stager_alive(session)
            queued = [i for i, r in rows.items() if r.state == StageState.QUEUED]
            if not queued:
                return
            if time.monotonic() > deadline:
                raise Unavailable(
                    f"{len(queued)} stage request(s) still queued after {timeout_s:.0f} s "
                    f"(ids {', '.join(map(str, queued[:10]))}); they stay queued"
                )
            if status is not None:
                status(f"staging: {len(ids) - len(queued)} of {len(ids)} done")
            if not alive and stager.one_pass(ctx, self.sessions, self.config, only_ids=queued):
                continue
            time.sleep(0.2)

    def stage_requests(
        self,
        *,
        ids: Sequence[int] | None = None,
        state: str | None = None,
        limit: int = 100,
    ) -> list[StageInfo]:
        stmt = select(StageRequestRow).order_by(StageRequestRow.id.desc()).limit(limit)
        if ids is not None:
            stmt = stmt.where(StageRequestRow.id.in_(list(ids)))
        if state is not None:
            stmt = stmt.where(StageRequestRow.state == state.upper())
        with self.sessions() as session:
            rows = list(session.scalars(stmt))
            return [stager.stage_info(session, self.config, r) for r in reversed(rows)]

    def stage_listing(
        self, *, state: str | None = None, limit: int = 100, offset: int = 0
    ) -> Page[StageInfo]:
        """Stage requests newest first from ``offset``, with how many match in all
        (``dpps stage --list``'s total and paging)."""
        page = PageRequest(offset=offset, limit=limit)  # impossible values refused here
        stmt = select(StageRequestRow)
        if state is not None:
            stmt = stmt.where(StageRequestRow.state == state.upper())
        with self.sessions() as session:
            total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
            rows = session.scalars(
                stmt.order_by(StageRequestRow.id.desc()).offset(page.offset).limit(page.limit)
            )
            items = [stager.stage_info(session, self.config, r) for r in rows]
        return Page(items, total, page.offset, page.limit)

    def run_stager(self) -> int:
        """One stager pass in this process (a bare workspace has no daemon)."""
        return stager.one_pass(DaemonContext(name=stager.DAEMON), self.sessions, self.config)

    def release(self, ids: Sequence[int], *, reason: str) -> list[int]:
        """Let the READY buffer copies of these stage requests go now (their reader is done).

        Only the given requests change: their expiry is set to now (with a ``stage.release``
        event), and the stager's expiry removes the copies; without a live stager daemon this
        call runs that expiry here for these requests only. Returns the ids released.
        """
        now = utcnow()
        released: list[int] = []
        with transaction(self.sessions) as session:
            for row in stager.requests_by_id(session, ids).values():
                if row.state != StageState.READY or (
                    row.lease_expires_at is not None and row.lease_expires_at > now
                ):
                    continue
                row.expires_at = now - dt.timedelta(seconds=1)
                released.append(row.id)
                event_repo.record(
                    session,
                    account=self.account,
                    action="stage.release",
                    did_id=row.did_id,
                    rse_id=row.rse_id,
                    reason=reason,
                    details={"request_id": row.id},
                )
        with self.sessions() as session:
            alive = stager.stager_alive(session)
        if released and not alive:
            ctx = DaemonContext(name=stager.DAEMON)
            stager.one_pass(ctx, self.sessions, self.config, only_ids=released)
        return sorted(released)

    # -- deletion and lifetimes --------------------------------------------------------------
    def delete(self, did: str | DID, *, reason: str) -> DeletionReport:
        return deletion.delete_did(
            self.sessions, self.config, self._did(did), account=self.account, reason=reason
        )

    def set_lifetime(self, did: str | DID, expires_at: dt.datetime | None, *, reason: str) -> int:
        """End of life of a DID and every file under it (None: keep forever)."""
        with transaction(self.sessions) as session:
            row = did_repo.get_did(session, self._did(did))
            return deletion.set_lifetime(
                session, row, expires_at, account=self.account, reason=reason
            )

    def reap(self) -> int:
        """One reaper pass in this process."""
        return reaper.one_pass(DaemonContext(name=reaper.DAEMON), self.sessions, self.config)

    # -- audits ------------------------------------------------------------------------------
    def plan_audit(self, *, rse: str | None = None, limit: int | None = None) -> list[int]:
        """Replica ids an audit by hand would read, longest unverified first."""
        if limit is not None and limit < 1:
            raise InvalidInput(f"limit must be at least 1, not {limit}")
        with self.sessions() as session:
            return auditor.plan(session, self.config, rse=rse, limit=limit)

    def audit(
        self,
        *,
        rse: str | None = None,
        limit: int | None = None,
        replica_ids: Sequence[int] | None = None,
        progress: Progress | None = None,
        bytes_per_s: float | None = None,
    ) -> AuditReport:
        """Re-read replicas now (all, or ``limit`` oldest-verified ones, of ``rse``)."""
        ids = (
            list(replica_ids) if replica_ids is not None else self.plan_audit(rse=rse, limit=limit)
        )
        ctx = DaemonContext(name=self.account)
        return auditor.audit(
            ctx, self.sessions, self.config, ids, bytes_per_s=bytes_per_s, progress=progress
        )

    # -- packages and health -----------------------------------------------------------------
    def export(
        self,
        did: str | DID,
        dest: Path,
        *,
        progress: Progress | None = None,
        wait: bool = True,
        timeout_s: float | None = None,
    ) -> ExportReport:
        return export.export_bag(
            self.sessions,
            self.config,
            self._did(did),
            dest,
            account=self.account,
            progress=progress,
            wait=wait,
            timeout_s=timeout_s,
        )

    def export_size(self, did: str | DID) -> int:
        """Files an export of ``did`` would hold (for progress bars)."""
        with self.sessions() as session:
            return len(expand_files(session, did_repo.get_did(session, self._did(did))))

    def health(self) -> HealthReport:
        with self.sessions() as session:
            return health.report(session, self.config)
