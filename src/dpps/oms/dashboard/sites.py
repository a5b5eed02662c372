"""Dashboard pages of the data centers (``/ui/sites``) and of each one (``/ui/sites/NAME``).

An operator's unit is the data center, not the storage element: PIC runs a disk and a tape
RSE behind one set of site processes and one long-haul link. Its page answers "is PIC all
right?" on one screen: what its RSEs hold and in which states, the daemons serving them, what
it sent and received per link over the last day, what is in flight, and what failed lately.
Every figure comes from the same aggregates and listings as the RSE page (``bdms.stats``,
``bdms.listings``) summed over the site's RSEs, so the two pages never disagree.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from dpps.bdms import stats
from dpps.bdms.listings import TransferFilter
from dpps.core.clock import utcnow
from dpps.core.errors import NotFound
from dpps.oms.dashboard.common import ctx, error_page, html, login_redirect, viewer
from dpps.oms.dashboard.rses import daemons_of, transfers_of
from dpps.oms.dashboard.traffic import traffic

router = APIRouter()

#: The window of the per-link totals (the traffic page draws the same numbers over time).
LINK_WINDOW = dt.timedelta(hours=24)


@router.get("/sites")
def sites_page(request: Request) -> Response:
    who = viewer(request)
    if who is None:
        return login_redirect(request)
    grouped: dict[str, dict[str, Any]] = defaultdict(lambda: {"rses": [], "files": 0, "bytes": 0})
    for rse in sorted(ctx(request).archive.rses(), key=lambda r: r.name):
        site = grouped[rse.site]
        site["rses"].append(rse)
        site["files"] += rse.files
        site["bytes"] += rse.bytes
    return html(
        "dash/sites.html",
        title="Data centers",
        active="rses",
        who=who,
        sites=sorted(grouped.items()),
    )


@router.get("/sites/{name}")
def site_page(request: Request, name: str) -> Response:
    who = viewer(request)
    if who is None:
        return login_redirect(request)
    archive = ctx(request).archive
    rses = sorted((r for r in archive.rses() if r.site == name), key=lambda r: r.name)
    if not rses:
        return error_page(who, NotFound(f"no data center {name[:64]!r}"))
    names = {r.name for r in rses}
    until = utcnow()
    since = until - LINK_WINDOW
    with archive.sessions() as s:
        states: dict[str, dict[str, int]] = defaultdict(dict)
        for rse, st, n, _b in stats.replicas_by_rse_state(s):
            if rse in names:
                states[rse][st] = n
        beats = stats.heartbeat_ages(s)
        links = [
            v
            for v in stats.transfers_by_link(s, since, until, "day")
            if name in (v.source, v.dest)
        ]
    failures, in_flight = transfers_of(archive, TransferFilter(site=name))
    return html(
        "dash/site.html",
        title=f"Data center {name}",
        active="rses",
        who=who,
        site=name,
        rses=rses,
        states=states,
        files=sum(r.files for r in rses),
        bytes=sum(r.bytes for r in rses),
        daemons=daemons_of(names, beats, own="this site's process"),
        links=link_totals(links, stats.buckets(since, until, "day")),
        failures=failures,
        in_flight=in_flight,
    )


def link_totals(rows: list[stats.LinkVolume], days: list[str]) -> list[dict[str, Any]]:
    """Per link: files and bytes done, failures (the traffic page's totals); the busiest
    link first."""
    totals = traffic(rows, days)["totals"]
    return sorted(
        ({"link": link, **t} for link, t in totals.items()),
        key=lambda t: (-t["bytes"], -t["failed"], t["link"]),
    )
