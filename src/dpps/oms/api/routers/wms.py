"""Jobs, workflows and transformations: read-only views of the workload manager's tables.

One router per resource, built by one factory: list (by state, newest first, paged) and get
by id. Rows are returned column by column, so the views follow the workload manager's schema
as it grows. Writes (submit, kill, retry) arrive with the workload manager's library calls:
add them here, each guarded by an action of ``dpps.oms.authz``.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from sqlalchemy import func, inspect, select

from dpps.catalog.models_wms import JobRow, TransformationRow, WorkflowRow
from dpps.core.errors import NotFound
from dpps.oms.api.deps import ArchiveView, Reader
from dpps.oms.api.problems import PROBLEM_RESPONSES
from dpps.oms.api.schemas import Page


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def _row(row: Any) -> dict[str, Any]:
    return {c.key: _jsonable(getattr(row, c.key)) for c in inspect(row).mapper.column_attrs}


def _router(resource: str, model: Any) -> APIRouter:
    router = APIRouter(prefix=f"/api/v1/{resource}", tags=[resource], responses=PROBLEM_RESPONSES)
    label = resource.rstrip("s")

    @router.get("", response_model=Page[dict[str, Any]], summary=f"{resource}, newest first")
    def list_rows(
        archive: ArchiveView,
        _who: Reader,
        state: Annotated[str | None, Query(max_length=16)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
    ) -> Page[dict[str, Any]]:
        stmt = select(model)
        if state is not None:
            stmt = stmt.where(model.state == state.upper())
        with archive.sessions() as session:
            total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
            rows = session.scalars(stmt.order_by(model.id.desc()).limit(limit).offset(offset))
            items = [_row(r) for r in rows]
        return Page[dict[str, Any]](items=items, total=int(total), limit=limit, offset=offset)

    @router.get("/{item_id}", response_model=dict[str, Any], summary=f"One {label}")
    def get_row(
        item_id: Annotated[int, Path(ge=1, le=2**31 - 1)], archive: ArchiveView, _who: Reader
    ) -> dict[str, Any]:
        with archive.sessions() as session:
            row = session.get(model, item_id)
            if row is None:
                raise NotFound(f"no such {label} {item_id}")
            return _row(row)

    return router


jobs = _router("jobs", JobRow)
workflows = _router("workflows", WorkflowRow)
transformations = _router("transformations", TransformationRow)
