"""Dashboard pages of the storage elements (``/ui/rses``) and of each one (``/ui/rses/NAME``).

A shifter asked "is this data center all right?" needs, on one page: what it holds, the state
of its replicas, whether the daemons that serve it are alive, and what failed there lately.
Everything comes from the library's aggregates and listings (``bdms.stats``,
``bdms.listings``); a daemon serves an RSE when its site process was started for it (its
heartbeat is ``NAME@RSE,...``, ``cli.daemon_cmds.PartitionHeartbeats``) or when it serves the
whole archive (no ``@``).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from dpps.bdms import stats
from dpps.bdms.listings import TransferFilter
from dpps.bdms.types import Page, PageRequest, TransferRecord
from dpps.core.errors import NotFound
from dpps.core.states import TransferState
from dpps.oms.dashboard.common import ctx, error_page, html, login_redirect, viewer

if TYPE_CHECKING:
    from dpps.bdms.archive import Archive

router = APIRouter()

#: Failed transfers shown on an RSE's page (the rest: the transfers list, filtered).
FAILURES = 20
#: A heartbeat older than this is shown as late (the daemons beat every few seconds).
LATE_S = 120.0


def daemons_of(
    wanted: Collection[str], beats: list[stats.HeartbeatAge], own: str = "this RSE's site process"
) -> list[dict[str, Any]]:
    """The live daemon instances that serve any RSE of ``wanted``: the site's own processes
    (labelled ``own``), then the archive-wide ones."""
    rows = []
    for b in beats:
        name, _, served = b.daemon.partition("@")
        rses = [r for r in served.split(",") if r]
        if rses and not set(rses) & set(wanted):
            continue
        rows.append(
            {
                "daemon": name,
                "instance": b.instance,
                "scope": own if rses else "whole archive",
                "seconds": b.seconds,
                "late": b.seconds > LATE_S,
            }
        )
    return sorted(rows, key=lambda r: (r["scope"] != own, r["daemon"]))


def transfers_of(
    archive: Archive, where: TransferFilter
) -> tuple[Page[TransferRecord], dict[str, int]]:
    """The newest failed transfers ``where`` selects (RSE or site), and how many are in
    flight per state: the storage pages' two views of the transfers."""
    failed = replace(where, state=TransferState.FAILED.value)
    failures = archive.views.transfers(failed, PageRequest(0, FAILURES), order="updated")
    in_flight = {
        st: archive.views.transfers(replace(where, state=st), PageRequest(0, 1)).total
        for st in stats.TRANSFER_IN_FLIGHT
    }
    return failures, in_flight


@router.get("/rses")
def rses_page(request: Request) -> Response:
    who = viewer(request)
    if who is None:
        return login_redirect(request)
    rses = sorted(ctx(request).archive.rses(), key=lambda r: (r.site, r.name))
    return html("dash/rses.html", title="Storage", active="rses", who=who, rses=rses)


@router.get("/rses/{name}")
def rse_page(request: Request, name: str) -> Response:
    who = viewer(request)
    if who is None:
        return login_redirect(request)
    archive = ctx(request).archive
    found = [r for r in archive.rses() if r.name == name]
    if not found:
        return error_page(who, NotFound(f"no RSE {name[:64]!r}"))
    rse = found[0]
    with archive.sessions() as s:
        replicas = [(st, n, b) for r, st, n, b in stats.replicas_by_rse_state(s) if r == name]
        beats = stats.heartbeat_ages(s)
    failures, in_flight = transfers_of(archive, TransferFilter(involving=name))
    return html(
        "dash/rse.html",
        title=f"RSE {rse.name}",
        active="rses",
        who=who,
        rse=rse,
        replicas=replicas,
        replica_rows=[(st, float(n)) for st, n, _ in replicas],
        daemons=daemons_of([name], beats),
        failures=failures,
        in_flight=in_flight,
        siblings=[r for r in archive.rses() if r.site == rse.site and r.name != rse.name],
    )
