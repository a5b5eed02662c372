"""Request dependencies: the shared archive, bearer-token authentication, per-request views.

Authentication is one indexed lookup of the token's SHA-256 per request, so a revoked or
expired token stops working at once. ``last_used_at`` is written at most once a minute per
token: writing it on every request would make every read a write and, on SQLite, queue all
readers behind the one writer.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import update
from starlette.exceptions import HTTPException

from dpps.bdms.archive import Archive
from dpps.catalog.engine import transaction
from dpps.catalog.models import TokenRow
from dpps.core.authz import Action, Principal, require
from dpps.core.clock import utcnow
from dpps.core.config import ApiConfig
from dpps.core.errors import PermissionDenied
from dpps.oms import accounts


@dataclass
class ApiContext:
    """What every request shares: the archive (one engine), its ``api`` settings (from the
    configuration tree, or given by a test), token bookkeeping."""

    archive: Archive
    settings: ApiConfig
    _touched: dict[int, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def spool(self) -> Path:
        path = self.archive.config.workspace / (self.settings.spool_dir or "spool")
        path.mkdir(parents=True, exist_ok=True)
        return path

    def touch(self, token_id: int) -> None:
        """Record that a token was used, at most once per interval per token."""
        now = time.monotonic()
        with self._lock:
            last = self._touched.get(token_id)
            if last is not None and now - last < self.settings.touch_interval_s:
                return
            self._touched[token_id] = now
        with transaction(self.archive.sessions) as session:
            session.execute(
                update(TokenRow).where(TokenRow.id == token_id).values(last_used_at=utcnow())
            )


async def context(request: Request) -> ApiContext:
    """(Trivial dependencies are ``async``: they run on the event loop instead of costing a
    hop to the thread pool each.)"""
    ctx: ApiContext = request.app.state.dpps
    return ctx


_bearer = HTTPBearer(auto_error=False, description="A token from `dpps token create`.")


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def principal(
    request: Request,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ctx: Annotated[ApiContext, Depends(context)],
) -> Principal:
    """The account of the request's bearer token; 401 without a valid one."""
    if creds is None:
        raise _unauthorized("missing bearer token (Authorization: Bearer <token>)")
    if len(creds.credentials) > 200:
        raise _unauthorized("unknown token")
    # A bare connection, not a Session: half the CPU of the one lookup every request makes.
    with ctx.archive.engine.connect() as connection:
        try:
            who = accounts.principal_for_token(connection, creds.credentials)
        except PermissionDenied as exc:
            raise _unauthorized(str(exc)) from None
    if who.token_id is not None:
        ctx.touch(who.token_id)
    request.state.account = who.name
    return who


CurrentPrincipal = Annotated[Principal, Depends(principal)]
Context = Annotated[ApiContext, Depends(context)]


def allowed(action: Action) -> object:
    """Dependency: the request's principal, refused unless its roles allow ``action``."""

    async def check(who: CurrentPrincipal) -> Principal:
        require(who, action)
        return who

    return Depends(check)


def producing(action: Action) -> object:
    """Dependency: ``action`` and the right to write where its products go.

    Jobs, workflows, transformations and campaigns register their outputs in the archive's
    default scope (``dpps.wms.outputs``); an account that may not write there may not start
    work that would, whatever its role."""

    async def check(who: CurrentPrincipal, ctx: Context) -> Principal:
        require(who, action, scopes=[ctx.archive.config.default_scope])
        return who

    return Depends(check)


async def archive_view(who: CurrentPrincipal, ctx: Context) -> Archive:
    """The archive acting as the request's account: every event it writes names it."""
    return ctx.archive.as_account(who.name)


async def account_service(who: CurrentPrincipal, ctx: Context) -> accounts.AccountService:
    return accounts.AccountService(ctx.archive.sessions, who)


ArchiveView = Annotated[Archive, Depends(archive_view)]
Accounts = Annotated[accounts.AccountService, Depends(account_service)]
Reader = Annotated[Principal, allowed(Action.READ)]
