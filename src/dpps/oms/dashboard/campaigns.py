"""Dashboard pages of reprocessing campaigns: the list (``/ui/campaigns``) and one campaign.

Both read the campaign records of the WMS (``WMS.campaigns``), the same rows ``dpps campaign``
and the REST API show, so a person watching a long campaign in a browser sees what its
runner last wrote: phase, progress, error and, once finished, the report. Pages only read;
any signed-in account may see them.

A stored report is data written by another version of dpps perhaps: ``report_view`` reads it
key by key with defaults, so a report missing a part shows the rest instead of failing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from dpps.core.clock import utcnow
from dpps.core.errors import DppsError, InvalidInput
from dpps.oms.dashboard.common import ctx, error_page, html, login_redirect, viewer
from dpps.wms import stats
from dpps.wms.api import WMS
from dpps.wms.states import CampaignState

router = APIRouter()

#: Campaigns listed at most (newest first); the counts by state cover all of them.
LIST_LIMIT = 100
#: Rows of the per-job table of a report shown at most (the counts cover all of them).
STEP_ROWS = 500
STATES = tuple(s.value for s in CampaignState)
#: The definition's keys in the order a person reads them; others follow alphabetically.
SPEC_ORDER = (
    "query",
    "software_version",
    "category",
    "activity",
    "priority",
    "models",
    "irf",
    "configs",
    "timeout_s",
    "max_attempts",
)
#: How a step's run came about (``StepRun.how``), as columns of the per-step table.
HOWS = ("submitted", "retried", "waited", "existing")
TALLY = ("files", "bytes", "on_disk_files", "on_disk_bytes", "tape_only_files", "tape_only_bytes")


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, Sequence) and not isinstance(value, str) else []


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _block_key(item: tuple[str, Any]) -> tuple[int, str]:
    key = str(item[0])
    return (int(key), "") if key.isdigit() else (2**62, key)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _run(value: Any, id_key: str) -> dict[str, Any]:
    """A ``StepRun`` (``id_key`` job_id) or ``BlockRun`` (workflow_id) as strings and counts."""
    row = _map(value)
    return {
        "step": _text(row.get("step")),
        "obs_id": _text(row.get("obs_id")),
        "name": _text(row.get("name")),
        "id": _text(row.get(id_key)),
        "how": _text(row.get("how")),
        "state": _text(row.get("state")),
        "reason": _text(row.get("reason")),
        "outputs": len(_list(row.get("outputs"))),
    }


def _failure(value: Any) -> dict[str, str]:
    row = _map(value)
    where = row.get("job") if row.get("job") is not None else row.get("workflow")
    return {
        "step": _text(row.get("step")),
        "obs_id": _text(row.get("obs_id")),
        "where": _text(where),
        "error": _text(row.get("error")),
    }


def report_view(report: Mapping[str, Any]) -> dict[str, Any]:
    """A stored ``CampaignReport.to_mapping()`` as the campaign page shows it: every number
    defaulted, blocks in obs_id order, the chart inputs computed here (not in the template)."""
    volume = _map(report.get("volume"))
    total = _map(volume.get("total"))
    sites = sorted(
        (str(k), {n: _int(_map(v).get(n)) for n in ("files", "bytes", "disk_bytes", "tape_bytes")})
        for k, v in _map(volume.get("sites")).items()
    )
    blocks = sorted(
        ((str(k), _map(v)) for k, v in _map(volume.get("blocks")).items()), key=_block_key
    )
    counts = sorted((str(k), _map(v)) for k, v in _map(report.get("counts")).items())
    staging = _map(report.get("staging"))
    verification = _map(report.get("verification"))
    ok = report.get("ok")
    return {
        "ok": ok if isinstance(ok, bool) else None,
        "dry_run": bool(report.get("dry_run")),
        "seconds": report.get("seconds"),
        "models": report.get("models"),
        "irf": report.get("irf"),
        "total": {k: _int(total.get(k)) for k in TALLY},
        "sites": sites,
        "blocks": [(b, {k: _int(v.get(k)) for k in TALLY}) for b, v in blocks],
        "unused_files": _int(volume.get("unused_files")),
        "unreadable": [str(d) for d in _list(volume.get("unreadable"))],
        "estimated_staging_s": volume.get("estimated_staging_s"),
        "staging": {
            "files": _int(staging.get("files")),
            "bytes": _int(staging.get("bytes")),
            "own_requests": len(_list(staging.get("own_requests"))),
            "joined_requests": len(_list(staging.get("joined_requests"))),
            "ready": _int(staging.get("ready")),
            "failed": [str(d) for d in _list(staging.get("failed"))],
            "released": len(_list(staging.get("released"))),
            "seconds": staging.get("seconds"),
        },
        "counts": [
            (step, {k: _int(row.get(k)) for k in ("runs", "ok", "failed", *HOWS)})
            for step, row in counts
        ],
        "step_runs": [_run(s, "job_id") for s in _list(report.get("steps"))],
        "block_runs": [_run(b, "workflow_id") for b in _list(report.get("blocks"))],
        "skipped": [str(s) for s in _list(report.get("skipped"))],
        "failures": [_failure(f) for f in _list(report.get("failures"))],
        "verification": {
            "ok": verification.get("ok") if isinstance(verification.get("ok"), bool) else None,
            "products": _int(verification.get("products")),
            "checksums_verified": _int(verification.get("checksums_verified")),
            "previous_versions": [str(v) for v in _list(verification.get("previous_versions"))],
            "problems": [str(p) for p in _list(verification.get("problems"))],
        },
        # Chart inputs: bytes per data centre split by disk and tape; jobs per step by outcome.
        "site_chart": {s: {"disk": v["disk_bytes"], "tape": v["tape_bytes"]} for s, v in sites},
        "step_chart": {
            step: {"ok": _int(row.get("ok")), "failed": _int(row.get("failed"))}
            for step, row in counts
        },
    }


def spec_items(spec: Mapping[str, Any]) -> list[tuple[str, Any]]:
    known = [(k, spec[k]) for k in SPEC_ORDER if k in spec]
    return known + sorted((k, v) for k, v in spec.items() if k not in SPEC_ORDER)


@router.get("/campaigns")
def campaigns_page(request: Request, state: str = "") -> Response:
    who = viewer(request)
    if who is None:
        return login_redirect(request)
    wanted = state.strip().upper()
    if wanted and wanted not in STATES:
        text = f"unknown campaign state {state[:40]!r}: use one of {', '.join(STATES)}"
        return error_page(who, InvalidInput(text))
    archive = ctx(request).archive
    rows = WMS(archive).campaigns.recent(state=wanted or None, limit=LIST_LIMIT)
    with archive.sessions() as s:
        by_state = stats.campaigns_by_state(s)
    return html(
        "dash/campaigns.html",
        title="Campaigns",
        active="campaigns",
        who=who,
        rows=rows,
        by_state=by_state,
        state=wanted,
        states=STATES,
        shown_total=by_state.get(wanted, 0) if wanted else sum(by_state.values()),
        now=utcnow(),
    )


@router.get("/campaigns/{name}")
def campaign_page(request: Request, name: str) -> Response:
    who = viewer(request)
    if who is None:
        return login_redirect(request)
    try:
        info = WMS(ctx(request).archive).campaigns.get(name)
    except DppsError as exc:
        return error_page(who, exc)
    report = info.report
    return html(
        "dash/campaign.html",
        title=info.name,
        active="campaigns",
        who=who,
        c=info,
        spec=spec_items(info.spec),
        r=report_view(report) if isinstance(report, Mapping) else None,
        unreadable_report=report is not None and not isinstance(report, Mapping),
        step_rows=STEP_ROWS,
        now=utcnow(),
    )
