"""Replicas: where the copies of a file are (locate), and replicas by RSE and state."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from dpps.bdms.listings import ReplicaFilter
from dpps.bdms.types import PageRequest
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
    where = ReplicaFilter(rse=rse, state=state.value if state is not None else None)
    page = archive.views.replicas(where, PageRequest(offset, limit))
    items = [
        ReplicaRowOut(
            did=r.did,
            rse=r.rse,
            state=r.state,
            path=r.path,
            bytes=r.bytes,
            lock_count=r.lock_count,
            last_verified_at=r.last_verified_at,
        )
        for r in page.items
    ]
    return Page[ReplicaRowOut](items=items, total=page.total, limit=limit, offset=offset)


@router.get(
    "/{did:path}",
    response_model=LocationOut,
    summary="Locate a file: its replicas, the best one and the estimated retrieval time",
)
def locate(did: str, archive: ArchiveView, _who: Reader) -> Response:
    return model_response(LocationOut.model_validate(archive.locate(did)))
