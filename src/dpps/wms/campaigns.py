"""The campaign records: submit, claim, report progress, finish, list.

A campaign (``dpps.pipelines.campaign``) is long: staging from tape, then hours of jobs. Its
record here is what lets a person watch it from anywhere (REST, dashboard) and what lets it
survive its runner: whoever runs it holds a lease on the row and renews it with every progress
report; a runner that died leaves an expired lease, and the next claim takes the campaign over.
That is safe because a campaign is idempotent by name (it finds the work it already did).

The WMS stores a campaign's definition as an opaque mapping (``spec``): what a campaign *is*
belongs to the pipelines layer, which the WMS must not import. Submitting the same name with
the same definition again is how a finished campaign is rerun (or a running one re-attached
to); the same name with a different definition is a conflict, never a silent redefinition.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping
from typing import Any

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from dpps.bdms.types import Page, PageRequest
from dpps.catalog import events
from dpps.catalog.engine import transaction
from dpps.catalog.leases import claim as claim_rows
from dpps.catalog.models_wms import CampaignRow
from dpps.core.clock import utcnow
from dpps.core.errors import Conflict, NotFound
from dpps.wms.states import FINAL_CAMPAIGN_STATES, CampaignState
from dpps.wms.types import CampaignInfo

#: A runner renews its lease at least this often (progress reports renew it too).
LEASE_S = 60.0


def _info(row: CampaignRow, *, report: bool = True) -> CampaignInfo:
    return CampaignInfo(
        name=row.name,
        kind=row.kind,
        state=row.state,
        account=row.account,
        spec=dict(row.spec),
        phase=row.phase,
        done=row.done,
        total=row.total,
        attempts=row.attempts,
        owner=row.lease_owner,
        lease_expires_at=row.lease_expires_at,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        updated_at=row.updated_at,
        error=row.error,
        report=row.report if report else None,
    )


def _held(row: CampaignRow, now: dt.datetime) -> bool:
    return (
        row.state == CampaignState.RUNNING
        and row.lease_expires_at is not None
        and row.lease_expires_at > now
    )


class CampaignStore:
    """The ``campaigns`` table of one archive, acting as ``account``."""

    def __init__(self, sessions: sessionmaker[Session], account: str) -> None:
        self.sessions = sessions
        self.account = account

    def _row(self, session: Session, name: str) -> CampaignRow:
        row = session.scalar(select(CampaignRow).where(CampaignRow.name == name))
        if row is None:
            raise NotFound(f"no campaign named {name!r}")
        return row

    def _event(self, session: Session, action: str, row: CampaignRow, **details: Any) -> None:
        """The preservation record names who queued and who finished a campaign, in the same
        transaction as the change."""
        events.record(
            session,
            account=self.account,
            action=action,
            details={
                "campaign": row.name,
                "kind": row.kind,
                "state": row.state,
                "attempts": row.attempts,
                **details,
            },
        )

    def submit(
        self,
        name: str,
        kind: str,
        spec: Mapping[str, Any],
        *,
        identity: Collection[str] | None = None,
    ) -> CampaignInfo:
        """Queue ``name`` for a runner: new, or a finished one again (same definition).

        ``identity`` names the keys of ``spec`` that define the campaign (None: all of them);
        the others are how to run it (a timeout, a priority) and a rerun may change them. A
        campaign queued or running is returned as it is (the caller attaches to it); one whose
        runner died (expired lease) is queued again.
        """
        wanted = dict(spec)
        keys = set(identity) if identity is not None else set(wanted)

        def same(stored: Mapping[str, Any]) -> bool:
            if identity is None and set(stored) != set(wanted):
                return False
            return all(stored.get(k) == wanted.get(k) for k in keys)

        now = utcnow()
        with transaction(self.sessions) as s:
            row = s.scalar(select(CampaignRow).where(CampaignRow.name == name))
            if row is None:
                row = CampaignRow(
                    name=name,
                    kind=kind,
                    state=CampaignState.QUEUED.value,
                    account=self.account,
                    spec=wanted,
                    phase="queued",
                    done=0,
                    total=0,
                    attempts=0,
                )
                s.add(row)
                s.flush()
                self._event(s, "campaign.submit", row)
                return _info(row)
            if row.kind != kind or not same(row.spec):
                raise Conflict(
                    f"campaign {name!r} exists with another definition "
                    f"(query {row.spec.get('query')!r}, version "
                    f"{row.spec.get('software_version')!r}): choose another name"
                )
            if row.state == CampaignState.QUEUED or _held(row, now):
                return _info(row)
            row.state, row.phase, row.done, row.total = CampaignState.QUEUED.value, "queued", 0, 0
            row.error, row.report, row.finished_at = None, None, None
            row.lease_owner, row.lease_expires_at = None, None
            row.account, row.spec = self.account, wanted
            s.flush()
            self._event(s, "campaign.submit", row, rerun=True)
            return _info(row)

    def claim(self, owner: str, name: str | None = None) -> CampaignInfo | None:
        """Take a queued campaign (the oldest, or ``name``), or one whose runner died.

        None when there is none to take; a named one that another runner holds is a Conflict
        (so two people cannot run the same campaign at once).
        """
        where: list[ColumnElement[bool]] = [
            CampaignRow.state.in_([CampaignState.QUEUED.value, CampaignState.RUNNING.value])
        ]
        if name is not None:
            where.append(CampaignRow.name == name)
        with transaction(self.sessions) as s:
            rows = claim_rows(
                s,
                CampaignRow,
                owner=owner,
                lease_s=LEASE_S,
                where=where,
                order_by=[CampaignRow.created_at, CampaignRow.id],
                limit=1,
            )
            if not rows:
                if name is not None:
                    row = self._row(s, name)
                    if _held(row, utcnow()):
                        raise Conflict(f"campaign {name!r} is running (runner {row.lease_owner})")
                    raise Conflict(f"campaign {name!r} is {row.state}: submit it again to rerun")
                return None
            row = rows[0]
            row.state, row.started_at = CampaignState.RUNNING.value, utcnow()
            row.attempts += 1
            row.phase = "starting" if row.attempts == 1 else "resuming"
            return _info(row)

    def progress(self, name: str, owner: str, phase: str, done: int, total: int) -> bool:
        """Record where the campaign is and renew the lease; False: ``owner`` lost it."""
        now = utcnow()
        with transaction(self.sessions) as s:
            result = s.execute(
                update(CampaignRow)
                .where(
                    CampaignRow.name == name,
                    CampaignRow.lease_owner == owner,
                    CampaignRow.state == CampaignState.RUNNING.value,
                )
                .values(
                    phase=phase[:256],
                    done=max(done, 0),
                    total=max(total, 0),
                    lease_expires_at=now + dt.timedelta(seconds=LEASE_S),
                    updated_at=now,
                )
                .execution_options(synchronize_session=False)
            )
            return bool(getattr(result, "rowcount", 0))

    def finish(
        self,
        name: str,
        owner: str,
        state: CampaignState,
        *,
        report: Mapping[str, Any] | None = None,
        error: str | None = None,
    ) -> CampaignInfo:
        """The runner's last word: DONE or FAILED, with the report and/or the error."""
        if state not in FINAL_CAMPAIGN_STATES:
            raise ValueError(f"finish() takes DONE or FAILED, not {state}")
        with transaction(self.sessions) as s:
            row = self._row(s, name)
            if row.lease_owner != owner:
                raise Conflict(f"campaign {name!r} is no longer run by {owner}")
            row.state, row.finished_at = state.value, utcnow()
            row.phase = "finished" if state == CampaignState.DONE else "failed"
            row.report = dict(report) if report is not None else None
            row.error = error
            row.lease_owner, row.lease_expires_at = None, None
            self._event(s, "campaign.finish", row, error=error)
            return _info(row)

    def give_back(self, name: str, owner: str, phase: str) -> None:
        """A runner stopping early (SIGTERM): queue the campaign for the next runner at once."""
        with transaction(self.sessions) as s:
            row = self._row(s, name)
            if row.lease_owner == owner and row.state == CampaignState.RUNNING:
                row.state, row.phase = CampaignState.QUEUED.value, phase[:256]
                row.lease_owner, row.lease_expires_at = None, None

    def get(self, name: str) -> CampaignInfo:
        with self.sessions() as s:
            return _info(self._row(s, name))

    def recent(self, *, state: str | None = None, limit: int = 100) -> list[CampaignInfo]:
        """Newest first, without their reports (``get`` has those)."""
        return self.listing(state=state, limit=limit).items

    def listing(
        self, *, state: str | None = None, limit: int = 100, offset: int = 0
    ) -> Page[CampaignInfo]:
        """``recent`` from ``offset``, with how many match in all (``dpps campaign list``'s
        total and paging)."""
        page = PageRequest(offset=offset, limit=limit)  # impossible values refused here
        stmt = select(CampaignRow)
        if state is not None:
            stmt = stmt.where(CampaignRow.state == state.upper())
        with self.sessions() as s:
            total = s.scalar(select(func.count()).select_from(stmt.subquery())) or 0
            ordered = stmt.order_by(CampaignRow.created_at.desc(), CampaignRow.id.desc())
            rows = s.scalars(ordered.offset(page.offset).limit(page.limit))
            items = [_info(r, report=False) for r in rows]
        return Page(items, total, page.offset, page.limit)


__all__ = ["LEASE_S", "CampaignStore"]
