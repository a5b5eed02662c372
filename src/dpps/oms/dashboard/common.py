"""What every dashboard page needs: the archive, who is signed in, rendering, the error page.

Kept apart from the pages themselves so that each group of pages (``views``, ``campaigns``)
is its own small module and they all authenticate and fail the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse

from dpps.core.authz import Action, Principal
from dpps.core.errors import DppsError, NotFound, PermissionDenied
from dpps.oms import accounts
from dpps.oms.templating import render

if TYPE_CHECKING:  # the API package imports the dashboard: no import back at run time
    from dpps.oms.api.deps import ApiContext

#: The cookie that carries the dashboard session (HttpOnly, SameSite=Strict, path /ui).
COOKIE = "dpps_token"


def ctx(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.dpps
    return context


def viewer(request: Request) -> Principal | None:
    """The signed-in account, or None (no cookie, unknown/expired/revoked token, no read)."""
    token = request.cookies.get(COOKIE)
    if not token or len(token) > 200 or not token.startswith(accounts.SESSION_PREFIX):
        return None  # a cookie holds a dashboard session, never an API token
    with ctx(request).archive.sessions() as session:
        try:
            who, _tok = accounts.authenticate(session, token)
        except PermissionDenied:
            return None
    return who if who.can(Action.READ) else None


def login_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/ui/login?next={quote(target)}", status_code=303)


def html(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(render(template, **context), status_code=status)


def error_page(who: Principal, exc: DppsError) -> HTMLResponse:
    """The dashboard's error page with the status the API would answer (404 for NotFound)."""
    status = 404 if isinstance(exc, NotFound) else exc.http_status
    return html("dash/error.html", status, title=exc.title, who=who, message=str(exc))
