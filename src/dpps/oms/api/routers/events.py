"""The preservation record: who did what, when and why, newest first."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import func, select

from dpps.catalog.models import DIDRow, EventRow, RSERow
from dpps.oms.api.deps import ArchiveView, Reader
from dpps.oms.api.problems import PROBLEM_RESPONSES
from dpps.oms.api.schemas import EventOut, Page

router = APIRouter(prefix="/api/v1/events", tags=["events"], responses=PROBLEM_RESPONSES)


@router.get("", response_model=Page[EventOut], summary="Events, newest first")
def list_events(
    archive: ArchiveView,
    _who: Reader,
    did: Annotated[str | None, Query(max_length=1100)] = None,
    account: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> Page[EventOut]:
    stmt = (
        select(EventRow, DIDRow.scope, DIDRow.name, DIDRow.version, RSERow.name)
        .outerjoin(DIDRow, DIDRow.id == EventRow.did_id)
        .outerjoin(RSERow, RSERow.id == EventRow.rse_id)
    )
    if did is not None:
        parsed = archive.did(did)
        stmt = stmt.where(DIDRow.scope == parsed.scope, DIDRow.name == parsed.name)
        if parsed.version is not None:
            stmt = stmt.where(DIDRow.version == parsed.version)
    if account is not None:
        stmt = stmt.where(EventRow.account == account)
    if action is not None:
        stmt = stmt.where(EventRow.action == action)
    for bound, op in ((since, "ge"), (until, "lt")):
        if bound is not None:
            naive = bound.astimezone(dt.UTC).replace(tzinfo=None) if bound.tzinfo else bound
            stmt = stmt.where(EventRow.ts >= naive if op == "ge" else EventRow.ts < naive)
    with archive.sessions() as session:
        total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        rows = session.execute(stmt.order_by(EventRow.id.desc()).limit(limit).offset(offset)).all()
    items = [
        EventOut(
            id=e.id,
            ts=e.ts,
            account=e.account,
            action=e.action,
            did=f"{scope}:{name}@v{version}" if scope else None,
            rse=rse,
            reason=e.reason,
            details=dict(e.details or {}),
        )
        for e, scope, name, version, rse in rows
    ]
    return Page[EventOut](items=items, total=int(total), limit=limit, offset=offset)
