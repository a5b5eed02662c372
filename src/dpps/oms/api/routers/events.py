"""The preservation record: who did what, when and why, newest first."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query

from dpps.bdms.listings import EventFilter
from dpps.bdms.types import PageRequest
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
    where = EventFilter(
        did=archive.did(did) if did is not None else None,
        account=account,
        action=action,
        since=since,
        until=until,
    )
    page = archive.views.events(where, PageRequest(offset, limit))
    items = [
        EventOut(
            id=e.id,
            ts=e.ts,
            account=e.account,
            action=e.action,
            did=e.did,
            rse=e.rse,
            reason=e.reason,
            details=e.details,
        )
        for e in page.items
    ]
    return Page[EventOut](items=items, total=page.total, limit=limit, offset=offset)
