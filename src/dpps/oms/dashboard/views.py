"""The web dashboard: server-rendered pages over the same library and queries as the API.

Sign-in checks the API token once and opens a dashboard session of its own (a separate
secret, ``accounts.sign_in``) kept in an HttpOnly, SameSite=Strict cookie scoped to ``/ui``;
the API refuses that secret as a bearer token, and signing out revokes it. Each page
authenticates the session like the API does its tokens (so revocation and expiry apply at once)
and needs the ``read`` action. Pages only read; the sign-in and sign-out forms refuse posts from
other sites and wrong tokens are throttled (``dashboard.signin``).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from dpps.bdms import stats
from dpps.bdms.archive import Archive
from dpps.bdms.listings import query_fields
from dpps.core.authz import Principal
from dpps.core.clock import utcnow
from dpps.core.errors import DppsError, InvalidInput, PermissionDenied
from dpps.core.states import TransferState
from dpps.oms import accounts
from dpps.oms.dashboard import (
    campaigns,
    quality,
    replication,
    rses,
    signin,
    sites,
    traffic,
    workload,
)
from dpps.oms.dashboard.common import COOKIE, ctx, error_page, html, login_redirect, viewer
from dpps.oms.report import alarms
from dpps.wms import stats as wms_stats
from dpps.wms.states import CampaignState

router = APIRouter(prefix="/ui", include_in_schema=False)
router.include_router(campaigns.router)
router.include_router(workload.router)
router.include_router(quality.router)
router.include_router(replication.router)
router.include_router(rses.router)
router.include_router(sites.router)
router.include_router(traffic.router)

PAGE = 50
STATIC = Path(__file__).resolve().parent.parent / "static"
PROVENANCE_KEYS = ("provenance", "inputs", "software", "software_version", "job_id", "workflow")


def _safe_next(value: str | None) -> str:
    """Only our own pages: a login link must not send people elsewhere."""
    if value and value.startswith("/ui/") and not value.startswith("//"):
        return value
    return "/ui/"


@router.get("/login")
def login_page(request: Request, next: str = "/ui/") -> HTMLResponse:
    return html("dash/login.html", title="Sign in", who=None, next=_safe_next(next), error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0].strip()
    target = _safe_next((form.get("next") or ["/ui/"])[0])
    if not signin.same_origin(request):
        return html(
            "dash/login.html",
            403,
            title="Sign in",
            who=None,
            next=target,
            error="sign in from this site's own page",
        )
    guard, client = signin.throttle(request), signin.client_of(request)
    wait = guard.retry_after(client)
    if wait:
        refused = html(
            "dash/login.html",
            429,
            title="Sign in",
            who=None,
            next=target,
            error=f"too many wrong tokens: try again in {wait} s",
        )
        refused.headers["Retry-After"] = str(wait)
        return refused

    def check() -> tuple[Principal, str, dt.datetime]:
        return accounts.sign_in(ctx(request).archive.sessions, token)

    try:
        if not token or len(token) > 200:
            raise PermissionDenied("give a token")
        _who, secret, expires = await run_in_threadpool(check)
    except PermissionDenied as exc:
        guard.failed(client)
        return html("dash/login.html", 401, title="Sign in", who=None, next=target, error=str(exc))
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        secret,  # a session of its own, never the API token itself
        max_age=max(60, int((expires - utcnow()).total_seconds())),
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    if not signin.same_origin(request):
        return JSONResponse({"detail": "sign out from this site's own page"}, status_code=403)
    secret = request.cookies.get(COOKIE)
    if secret and len(secret) <= 200:
        accounts.sign_out(ctx(request).archive.sessions, secret)
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path="/ui")
    return response


@router.get("/static/app.js")
def script() -> FileResponse:
    return FileResponse(STATIC / "app.js", media_type="text/javascript")


@router.get("/")
def overview(request: Request) -> Response:
    who = viewer(request)
    if who is None:
        return login_redirect(request)
    archive = ctx(request).archive
    now = utcnow()
    with archive.sessions() as s:
        totals = stats.catalog_totals(s)
        stored = stats.stored_by_site_and_level(s)
        rules = stats.rules_by_state(s)
        transfers = stats.transfers_by_state(s)
        hourly = stats.ingestion_rate(s, now - dt.timedelta(hours=23), now, "hour")
        daily = stats.ingestion_rate(s, now - dt.timedelta(days=29), now, "day")
        campaign_states = wms_stats.campaigns_by_state(s)
    health = archive.preservation.health()
    site_bytes: dict[str, dict[str, float]] = {}
    for v in stored:
        site_bytes.setdefault(v.site, {})[v.data_level] = v.bytes
    return html(
        "dash/overview.html",
        title="Overview",
        active="overview",
        who=who,
        totals=totals,
        stored=stored,
        site_bytes=site_bytes,
        rules=rules,
        transfers=transfers,
        in_flight=sum(transfers.get(s, 0) for s in stats.TRANSFER_IN_FLIGHT),
        failed=transfers.get(TransferState.FAILED.value, 0),
        hourly=[(v.key, v.files) for v in hourly],
        daily=[(v.key[:10], v.files) for v in daily],
        ingested_24h=sum(v.files for v in hourly),
        health=health,
        alarms=alarms(health),
        campaigns_running=campaign_states.get(CampaignState.RUNNING.value, 0),
        campaigns_queued=campaign_states.get(CampaignState.QUEUED.value, 0),
    )


@router.get("/products")
def products(request: Request, q: str = "", offset: int = 0) -> Response:
    who = viewer(request)
    if who is None:
        return login_redirect(request)
    archive: Archive = ctx(request).archive
    offset = max(0, min(offset, 10**9))
    error, files, total = None, [], 0
    try:
        files = archive.list_files(q, limit=PAGE, offset=offset)
        total = archive.count(q)
    except InvalidInput as exc:
        error = str(exc)
    return html(
        "dash/products.html",
        status=400 if error else 200,
        title="Products",
        active="products",
        who=who,
        q=q,
        files=files,
        total=total,
        offset=offset,
        limit=PAGE,
        error=error,
        fields=query_fields(),
    )


@router.get("/search-count")
def search_count(request: Request, q: str = "") -> JSONResponse:
    if viewer(request) is None:
        return JSONResponse({"error": "sign in again"}, status_code=401)
    try:
        return JSONResponse({"count": ctx(request).archive.count(q)})
    except InvalidInput as exc:
        return JSONResponse({"error": str(exc)})


@router.get("/products/{did:path}")
def product(request: Request, did: str) -> Response:
    who = viewer(request)
    if who is None:
        return login_redirect(request)
    try:
        details = ctx(request).archive.show(did)
    except DppsError as exc:
        return error_page(who, exc)
    return html(
        "dash/product.html",
        title=details.file.did,
        active="products",
        who=who,
        d=details,
        rules=replication.rules_of(request, details.file.did),
        provenance_keys=PROVENANCE_KEYS,
    )
