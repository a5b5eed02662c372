"""ASGI middleware of the API besides the body-size limit: metrics and storable text.

``TextGuard`` refuses paths and query strings carrying NUL characters or bytes that are not
UTF-8: no database can store them, and a request that cannot be stored is the client's error
(400), not the server's (500). ``RequestMetrics`` times every answer by route template.
"""

from __future__ import annotations

import time
from urllib.parse import unquote_to_bytes

from starlette.routing import Match

from dpps.oms.api.limits import ASGIApp, Message, Receive, Scope, Send, refuse
from dpps.oms.metrics import HttpMetrics


def _bad_text(raw: bytes) -> bool:
    if b"\x00" in raw:
        return True
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


class TextGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw_path = scope.get("raw_path") or str(scope.get("path", "")).encode(
                "utf-8", "replace"
            )
            query = scope.get("query_string", b"")
            if _bad_text(unquote_to_bytes(raw_path)) or _bad_text(
                unquote_to_bytes(query.replace(b"+", b" "))
            ):
                await refuse(
                    send, 400, "Invalid input", "path or query holds NUL or non-UTF-8 bytes"
                )
                return
        await self.app(scope, receive, send)


class RequestMetrics:
    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            state = scope.get("state") or {}
            kind = state.get("error_kind")
            if kind is None and status >= 400:
                kind = f"http_{status}"
            self.metrics.observe(
                scope.get("method", ""),
                _route(scope),
                status,
                time.perf_counter() - started,
                kind,
            )


def _route(scope: Scope) -> str:
    """The route template (``/api/v1/dids/{did:path}``): bounded label cardinality."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    app = scope.get("app")
    for candidate in getattr(getattr(app, "router", None), "routes", ()):
        match, _ = candidate.matches(scope)
        if match == Match.FULL:
            return str(getattr(candidate, "path", "unmatched"))
    return "unmatched"


#: The dashboard's pages: its own script only, inline styles (templates and SVG plots use
#: them), never framed by another site, forms posted only to itself.
DASHBOARD_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; "
    "object-src 'none'"
)


class SecurityHeaders:
    """Headers every answer carries (``nosniff``, no referrer to other sites), and on the
    dashboard's pages a Content-Security-Policy, no framing, and ``no-store``: a signed-in
    page must not stay in a shared browser's cache after its user left."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        dashboard = path == "/ui" or path.startswith("/ui/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                extra = [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                ]
                if dashboard:
                    extra += [
                        (b"content-security-policy", DASHBOARD_CSP.encode()),
                        (b"x-frame-options", b"DENY"),
                    ]
                    if not path.startswith("/ui/static/"):
                        extra.append((b"cache-control", b"no-store"))
                headers += [(k, v) for k, v in extra if k not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)
