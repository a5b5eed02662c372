"""The FastAPI application: one router per resource, problem+json errors, limits, metrics.

``create_app`` takes an open ``Archive`` (tests, ``dpps serve``) or what opens one (a
``Config``, a workspace path, or None for ``$DPPS_WORKSPACE`` / the current directory), so the
app also runs alone behind any ASGI server::

    uvicorn --factory dpps.oms.api:app_from_env --host 127.0.0.1 --port 8000

To add a resource: write ``routers/<resource>.py`` with
an ``APIRouter`` like the others (thin handlers over the library, schemas in ``schemas.py``, an
action of ``dpps.core.authz`` per write) and append it to ``ROUTERS`` below.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import RedirectResponse, Response
from prometheus_client import CollectorRegistry

from dpps.bdms.archive import Archive
from dpps.core.config import ApiConfig, Config
from dpps.core.version import __version__
from dpps.core.wire import UPLOAD_PATH
from dpps.oms import metrics
from dpps.oms.api import problems
from dpps.oms.api.deps import ApiContext
from dpps.oms.api.limits import BodySizeLimit
from dpps.oms.api.middleware import RequestMetrics, SecurityHeaders, TextGuard
from dpps.oms.api.routers import (
    accounts,
    agents,
    campaigns,
    datasets,
    dids,
    events,
    files,
    ops,
    preservation,
    replicas,
    rses,
    rules,
    staging,
    transfers,
    wms,
    wms_flows,
)
from dpps.oms.dashboard.views import router as dashboard_router

ROUTERS = (
    ops.public,
    ops.router,
    dids.router,
    datasets.router,
    files.router,
    replicas.router,
    rses.router,
    rules.router,
    transfers.router,
    preservation.router,
    staging.router,
    events.router,
    accounts.router,
    wms.jobs,
    wms.accounting,
    wms_flows.workflows,
    wms_flows.transformations,
    campaigns.router,
    agents.router,
)

DESCRIPTION = """The REST API of dpps: the same operations as the `dpps` command line.

Every endpoint except `/health` and `/metrics` needs a bearer token (`dpps token create`).
Errors are RFC 9457 problem details (`application/problem+json`). Lists are paged with
`limit` and `offset` and report the `total` number of matches."""


def _open(source: Archive | Config | str | Path | None) -> tuple[Archive, bool]:
    if isinstance(source, Archive):
        return source, False
    if isinstance(source, Config):
        archive = Archive(source)
        archive.prepare_catalog()
        return archive, True
    return Archive.open(source), True


def create_app(
    source: Archive | Config | str | Path | None = None,
    *,
    settings: ApiConfig | None = None,
) -> FastAPI:
    """The API and dashboard over one archive (an app that opened it also closes it); its
    limits and thread count are the archive's ``api`` settings unless ``settings`` is given."""
    archive, owned = _open(source)
    settings = settings or archive.config.api

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threads
        try:
            yield
        finally:
            if owned:
                archive.close()

    app = FastAPI(
        title="dpps",
        version=__version__,
        description=DESCRIPTION,
        docs_url=None,  # Swagger UI loads from a CDN: nothing may come from the internet
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=lifespan,
    )
    app.state.dpps = ApiContext(archive, settings)
    problems.install(app)
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(dashboard_router)

    registry = CollectorRegistry()
    http = metrics.HttpMetrics(registry)
    registry.register(metrics.CatalogCollector(archive.sessions, health=archive.config.health))

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        body = metrics.exposition(registry, metrics.DAEMON_REGISTRY)
        return Response(body, media_type=metrics.CONTENT_TYPE)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=307)

    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_body_bytes,
        upload_prefix=UPLOAD_PATH,
        max_upload_bytes=settings.max_upload_bytes,
    )
    app.add_middleware(TextGuard)
    app.add_middleware(RequestMetrics, metrics=http)
    app.add_middleware(SecurityHeaders)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with its 422 answers replaced: validation errors are 400 here."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                operation.get("responses", {}).pop("422", None)
        for name in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(name, None)
        app.openapi_schema = schema
    return app.openapi_schema


def app_from_env() -> FastAPI:
    """Factory for ASGI servers: the workspace of ``$DPPS_WORKSPACE`` or the current dir, with
    its ``api`` settings read from ``dpps.yaml`` and ``DPPS_API__*`` like any other process's
    (so every worker of ``dpps serve --workers N`` has the same)."""
    return create_app(None)
