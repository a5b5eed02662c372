"""Dashboard page of the archive's traffic (``/ui/traffic``): what moved between data centers
and what came in, over the last day (per hour) or month (per day).

Per link (source site -> destination site): files and bytes transferred, and failures, each
link a line of its own, so one data center's trouble stands out from the others' traffic;
and the files ingested. The numbers are ``bdms.stats``' (the same as ``dpps report`` and
``/metrics``), drawn by matplotlib (``oms.charts``).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from dpps.bdms import stats
from dpps.core.clock import utcnow
from dpps.core.states import TransferState
from dpps.oms import charts, svg
from dpps.oms.dashboard.common import ctx, html, login_redirect, viewer

router = APIRouter()

#: The windows offered: how far back, and the bucket of each point.
WINDOWS = {"24h": (dt.timedelta(hours=24), "hour"), "30d": (dt.timedelta(days=30), "day")}


def link_name(v: stats.LinkVolume) -> str:
    return f"{v.source or '(no source)'} \u2192 {v.dest}"


def traffic(rows: list[stats.LinkVolume], keys: list[str]) -> dict[str, Any]:
    """Per-link series (files and bytes done, failures) over ``keys`` and per-link totals."""
    index = {k: i for i, k in enumerate(keys)}
    done: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(keys))
    volume: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(keys))
    failed: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(keys))
    totals: dict[str, dict[str, int]] = defaultdict(lambda: {"files": 0, "bytes": 0, "failed": 0})
    for v in rows:
        i = index.get(v.bucket)
        if i is None:
            continue
        name = link_name(v)
        if v.state == TransferState.DONE.value:
            done[name][i] += v.files
            volume[name][i] += v.bytes
            totals[name]["files"] += v.files
            totals[name]["bytes"] += v.bytes
        else:
            failed[name][i] += v.files
            totals[name]["failed"] += v.files
    return {"done": dict(done), "bytes": dict(volume), "failed": dict(failed), "totals": totals}


@router.get("/traffic")
async def traffic_page(request: Request, window: str = "24h") -> Response:
    who = viewer(request)
    if who is None:
        return login_redirect(request)
    window = window if window in WINDOWS else "24h"
    span, unit = WINDOWS[window]
    archive = ctx(request).archive
    until = utcnow()
    since = until - span + (dt.timedelta(hours=1) if unit == "hour" else dt.timedelta(days=1))

    def build() -> dict[str, Any]:
        with archive.sessions() as s:
            rows = stats.transfers_by_link(s, since, until, unit)
            ingested = stats.ingestion_rate(s, since, until, unit)
        keys = stats.buckets(since, until, unit)
        t = traffic(rows, keys)
        per = "hour" if unit == "hour" else "day"
        return {
            "totals": sorted(t["totals"].items()),
            "charts": [
                charts.time_series(
                    keys, t["done"], title="files transferred", ylabel=f"files / {per}"
                ),
                charts.time_series(
                    keys,
                    t["bytes"],
                    title="bytes transferred",
                    ylabel=f"bytes / {per}",
                    fmt=svg.human_bytes,
                ),
                charts.time_series(
                    keys, t["failed"], title="failed transfers", ylabel=f"failures / {per}"
                ),
                charts.time_series(
                    keys,
                    {"ingested": [float(v.files) for v in ingested]},
                    title="files ingested",
                    ylabel=f"files / {per}",
                    legend=False,
                ),
            ],
        }

    built = await run_in_threadpool(build)  # matplotlib: CPU, off the event loop
    return html(
        "dash/traffic.html",
        title="Traffic",
        active="traffic",
        who=who,
        window=window,
        windows=list(WINDOWS),
        **built,
    )
