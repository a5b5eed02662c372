"""Replicas: where the copies of a file are (locate), and replicas by RSE and state."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response
from sqlalchemy import func, select

from dpps.catalog.models import DIDRow, ReplicaRow, RSERow
from dpps.core.states import ReplicaState
from dpps.oms.api.deps import ArchiveView, Reader
from dpps.oms.api.fastjson import model_response
from dpps.oms.api.problems import PROBLEM_RESPONSES
from dpps.oms.api.schemas import LocationOut, Out, Page

router = APIRouter(prefix="/api/v1/replicas", tags=["replicas"], responses=PROBLEM_RESPONSES)


class ReplicaRowOut(Out):
    did: str
    rse: str
    state: str
    path: str
    bytes: int
    lock_count: int
    last_verified_at: dt.datetime | None


@router.get("", response_model=Page[ReplicaRowOut], summary="Replicas by RSE and state")
def list_replicas(
    archive: ArchiveView,
    _who: Reader,
    rse: Annotated[str | None, Query(max_length=64)] = None,
    state: ReplicaState | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> Page[ReplicaRowOut]:
    where = []
    if rse is not None:
        where.append(RSERow.name == rse)
    if state is not None:
        where.append(ReplicaRow.state == state.value)
    base = (
        select(ReplicaRow, RSERow.name, DIDRow.scope, DIDRow.name, DIDRow.version)
        .join(RSERow, RSERow.id == ReplicaRow.rse_id)
        .join(DIDRow, DIDRow.id == ReplicaRow.did_id)
        .where(*where)
    )
    with archive.sessions() as session:
        total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
        rows = session.execute(base.order_by(ReplicaRow.id).limit(limit).offset(offset)).all()
    items = [
        ReplicaRowOut(
            did=f"{scope}:{name}@v{version}",
            rse=rse_name,
            state=rep.state,
            path=rep.path,
            bytes=rep.bytes,
            lock_count=rep.lock_count,
            last_verified_at=rep.last_verified_at,
        )
        for rep, rse_name, scope, name, version in rows
    ]
    return Page[ReplicaRowOut](items=items, total=int(total), limit=limit, offset=offset)


@router.get(
    "/{did:path}",
    response_model=LocationOut,
    summary="Locate a file: its replicas, the best one and the estimated retrieval time",
)
def locate(did: str, archive: ArchiveView, _who: Reader) -> Response:
    return model_response(LocationOut.model_validate(archive.locate(did)))
