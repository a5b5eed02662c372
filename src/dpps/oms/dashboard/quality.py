"""Dashboard page of QualPipe's quality reports (``/ui/quality``) and the route of their plots.

Each report in the archive (data level QUAL, newest first) is shown with its verdict, its
failed checks, its metrics plotted (one bar per telescope, coloured by the check's outcome:
people see a red telescope faster than they read a table) and the PNG plots QualPipe drew,
served by ``/ui/quality/image`` from the archived products (``quality_read``).

A report is data written by some version of QualPipe: ``report_view`` reads it key by key
with defaults, and a report that cannot be read is shown as such instead of failing the page.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from dpps.bdms.archive import Archive
from dpps.bdms.types import FileInfo
from dpps.core.errors import DppsError, NotFound
from dpps.oms import svg
from dpps.oms.dashboard import quality_read
from dpps.oms.dashboard.common import ctx, error_page, html, login_redirect, viewer

router = APIRouter()

#: Reports per page: each one is read from the archive and drawn.
PAGE = 10
#: Metrics drawn per report at most (the table below lists them all).
MAX_CHARTS = 24
#: Room to the right of the largest value or limit, so a limit's mark is not on the edge.
SCALE_MARGIN = 1.1
_NUMBER = re.compile(r"(?<![A-Za-z])[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
OUTCOME_COLOURS = {
    "pass": svg.colour("OK", 0),
    "fail": svg.colour("FAILED", 0),
    "warning": "#ff7f0e",
    "missing": "#7f7f7f",
}


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, Sequence) and not isinstance(value, str) else []


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _int(value: Any) -> int:
    number = _number(value)
    return int(number) if number is not None else 0


def outcome(check: Mapping[str, Any]) -> str:
    """pass, fail (an error-severity failure), warning (a warning's failure) or missing."""
    status = str(check.get("status", ""))
    if status == "fail" and check.get("severity") == "warning":
        return "warning"
    return status if status in ("pass", "fail", "missing") else "missing"


def metric_charts(checks: list[Mapping[str, Any]]) -> list[tuple[str, Markup]]:
    """One bar chart per checked metric with per-telescope values, bars coloured by outcome;
    metrics of the whole array (no telescope) share one chart per outcome colour."""
    by_metric: dict[str, list[tuple[str, float, str]]] = {}
    for c in checks:
        value = _number(c.get("value"))
        if value is None:
            continue
        tel = c.get("tel_id")
        label = f"tel {tel}" if tel is not None else "array"
        by_metric.setdefault(str(c.get("metric", "")), []).append((label, value, outcome(c)))
    charts = []
    for metric, bars in list(by_metric.items())[:MAX_CHARTS]:
        rows: dict[str, float] = {}
        colours: dict[str, str] = {}
        for label, value, how in bars:  # several criteria on one value: the worst colour
            rows[label] = value
            if colours.get(label) != OUTCOME_COLOURS["fail"]:
                colours[label] = OUTCOME_COLOURS[how]
        criteria = sorted(
            {str(c.get("criterion", "")) for c in checks if c.get("metric") == metric}
        )
        title = f"{metric} ({'; '.join(criteria)})"
        marks = [(f"limit {c}", v) for c in criteria for v in limits(c)]
        top = max([*rows.values(), *(v for _, v in marks)], default=0.0)
        chart = svg.hbar_chart(
            list(rows.items()),
            title=title,
            colours=colours,
            width=420,
            scale=top * SCALE_MARGIN if top > 0 else 1.0,
            marks=marks,
        )
        charts.append((title, chart))
    return charts


def limits(criterion: str) -> list[float]:
    """The finite limits of a check's criterion as QualPipe writes it (``>= 40``,
    ``in [0, 1]``, ``in [-inf, 0.5]``): the bars are drawn against them, not against the
    largest value, so a bar's length says how far the value is from passing."""
    return [float(n) for n in _NUMBER.findall(criterion)]


def report_view(report: Mapping[str, Any]) -> dict[str, Any]:
    """A stored report as the page shows it, every part defaulted."""
    summary = _map(report.get("summary"))
    checks = [_map(c) for c in _list(report.get("checks"))]
    outcomes = {k: 0 for k in OUTCOME_COLOURS}
    for c in checks:
        outcomes[outcome(c)] += 1
    passed = report.get("passed")
    return {
        "title": str(report.get("title") or "quality report"),
        "passed": passed if isinstance(passed, bool) else None,
        "product": {str(k): v for k, v in _map(report.get("product")).items()},
        "summary": {k: _int(summary.get(k)) for k in ("checks", "passed", "failed", "missing")},
        "checks": checks,
        "problems": [c for c in checks if outcome(c) in ("fail", "warning")],
        "metrics": [_map(m) for m in _list(report.get("metrics"))],
        "outcomes": outcomes,
        "outcome_chart": svg.hbar_chart(
            [(k, float(v)) for k, v in outcomes.items() if v],
            title="checks by outcome",
            colours=OUTCOME_COLOURS,
            width=420,
        ),
        "charts": metric_charts(checks),
    }


def entry(archive: Archive, info: FileInfo) -> dict[str, Any]:
    """One report of the list: its file, its parsed content and plots, or why it is unreadable."""
    try:
        content = quality_read.report_content(archive, info)
    except DppsError as exc:
        return {"file": info, "error": str(exc), "r": None, "plots": []}
    return {
        "file": info,
        "error": None,
        "r": report_view(content),
        "plots": quality_read.plots_of(archive, info),
    }


@router.get("/quality")
def quality_page(request: Request, offset: int = 0) -> Response:
    who = viewer(request)
    if who is None:
        return login_redirect(request)
    archive = ctx(request).archive
    offset = max(0, min(offset, 10**9))
    files, total = quality_read.recent_reports(archive, PAGE, offset)
    entries = [entry(archive, f) for f in files]
    return html(
        "dash/quality.html",
        title="Quality reports",
        active="quality",
        who=who,
        entries=entries,
        total=total,
        offset=offset,
        limit=PAGE,
        colours=OUTCOME_COLOURS,
    )


@router.get("/quality/image")
async def quality_image(request: Request, did: str = "", n: str = "") -> Response:
    """A report's plot as PNG, by the DID of its product (a plot or the page it is inlined
    in); nothing but QUAL plots and pages can be read through here."""
    who = viewer(request)
    if who is None:
        return Response(status_code=401)
    archive = ctx(request).archive
    try:
        if n and not (n.isdigit() and len(n) < 6):
            raise NotFound(f"no image {n[:20]!r}")
        index = int(n) if n else None
        png = await run_in_threadpool(quality_read.image, archive, did, index)
    except DppsError as exc:
        return error_page(who, exc)
    return Response(
        png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"}
    )
