"""Service health (public), the archive's health check and the operations report."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response

from dpps.bdms.types import to_jsonable
from dpps.core.version import __version__
from dpps.oms import report as report_mod
from dpps.oms.api.deps import ArchiveView, Reader
from dpps.oms.api.problems import PROBLEM_RESPONSES
from dpps.oms.api.schemas import ServiceHealthOut
from dpps.oms.report import alarms

public = APIRouter(tags=["service"])
router = APIRouter(prefix="/api/v1", tags=["operations"], responses=PROBLEM_RESPONSES)


@public.get("/health", response_model=ServiceHealthOut, summary="Liveness (no token needed)")
def service_health() -> ServiceHealthOut:
    return ServiceHealthOut(status="ok", version=__version__)


@router.get(
    "/health",
    summary="Archive health: daemons' heartbeats, stuck rules, files with too few good copies",
    response_model=dict[str, Any],
)
def archive_health(archive: ArchiveView, _who: Reader) -> dict[str, Any]:
    result = archive.preservation.health()
    data: dict[str, Any] = {**to_jsonable(result), "ok": result.ok, "alarms": alarms(result)}
    return data


@router.get(
    "/report",
    summary="Operations report for a period (JSON, Markdown or HTML)",
    responses={200: {"content": {"text/markdown": {}, "text/html": {}}}},
    response_model=dict[str, Any],
)
def operations_report(
    archive: ArchiveView,
    _who: Reader,
    since: Annotated[str, Query(max_length=40, description="24h, 7d, 2w or ISO date")] = "24h",
    until: dt.datetime | None = None,
    fmt: Annotated[Literal["json", "markdown", "html"], Query(alias="format")] = "json",
) -> Response:
    start = report_mod.parse_since(since)
    end = None
    if until is not None:
        end = until.astimezone(dt.UTC).replace(tzinfo=None) if until.tzinfo else until
    with archive.sessions() as session:
        rep = report_mod.build_report(session, archive.config, start, end)
    if fmt == "markdown":
        return PlainTextResponse(report_mod.render_markdown(rep), media_type="text/markdown")
    if fmt == "html":
        return HTMLResponse(report_mod.render_html(rep))
    return JSONResponse(to_jsonable(rep))
