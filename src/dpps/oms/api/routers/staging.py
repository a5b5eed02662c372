"""Tape staging and fixity audits over REST: what ``dpps stage`` and ``dpps audit`` do.

Every answer is the library's own record (``archive.preservation``), so the remote CLI prints
what the local one does. Listing stage requests is reading; requesting staging ahead of
processing is ``stage`` (data processing and archive managers); an audit by hand re-reads
replicas on the server's storage and may mark them BAD, so it is ``audit`` (archive managers
and operators). A request's replica ids are bounded so a body stays well under the server's
size limit: the remote client sends a long plan in several requests. An audit's throttle is at
least 1 MiB/s here (locally any rate): each request is read in a server thread.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from dpps.bdms.records import AuditReport, StageInfo
from dpps.core.authz import Action, require
from dpps.oms.api.deps import ArchiveView, CurrentPrincipal, Reader
from dpps.oms.api.problems import PROBLEM_RESPONSES
from dpps.oms.api.schemas import Page

router = APIRouter(prefix="/api/v1", tags=["preservation"], responses=PROBLEM_RESPONSES)

MAX_IDS = 10_000
"""Replica ids one audit request may carry (the client sends longer plans in pieces)."""

MIN_RATE = 2**20
"""Slowest audit throttle over REST: a slower one would hold a server thread for hours."""

Name = Annotated[str, Field(min_length=1, max_length=64)]


class StageIn(BaseModel):
    dids: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=1100)]],
        Field(min_length=1, max_length=MAX_IDS),
    ]
    wait: bool = False
    timeout_s: Annotated[float | None, Field(gt=0, le=86_400)] = None


class AuditIn(BaseModel):
    replica_ids: Annotated[
        list[Annotated[int, Field(ge=1, le=2**31 - 1)]], Field(max_length=MAX_IDS)
    ]
    bytes_per_s: Annotated[
        float | None,
        Field(ge=MIN_RATE, description="Read at most this many bytes per second (>= 1 MiB/s)"),
    ] = None


@router.get(
    "/stage-requests",
    response_model=Page[StageInfo],
    summary="Stage requests, newest first, a page at a time with how many match",
)
def stage_requests(
    archive: ArchiveView,
    _who: Reader,
    state: Annotated[str | None, Query(max_length=16)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> Page[StageInfo]:
    page = archive.preservation.stage_listing(state=state, limit=limit, offset=offset)
    return Page[StageInfo](items=page.items, total=page.total, limit=limit, offset=offset)


@router.post(
    "/stage-requests",
    response_model=list[StageInfo],
    summary="Stage tape-only files into the disk buffer (dpps stage)",
)
def stage(body: StageIn, archive: ArchiveView, who: CurrentPrincipal) -> list[StageInfo]:
    """Files already staged or queued join their open request; ``wait`` waits on the server."""
    require(who, Action.STAGE)
    return archive.preservation.stage(body.dids, wait=body.wait, timeout_s=body.timeout_s)


@router.get(
    "/audits/plan",
    response_model=list[int],
    summary="Replica ids an audit would read, longest unverified first",
)
def plan_audit(
    archive: ArchiveView,
    who: CurrentPrincipal,
    rse: Annotated[Name | None, Query()] = None,
    limit: Annotated[int | None, Query(ge=1, le=10**9)] = None,
) -> list[int]:
    require(who, Action.AUDIT)
    return archive.preservation.plan_audit(rse=rse, limit=limit)


@router.post("/audits", response_model=AuditReport, summary="Re-read replicas now (dpps audit)")
def audit(body: AuditIn, archive: ArchiveView, who: CurrentPrincipal) -> AuditReport:
    require(who, Action.AUDIT)
    return archive.preservation.audit(replica_ids=body.replica_ids, bytes_per_s=body.bytes_per_s)
