"""Remote views of the sub-APIs the CLI uses besides the archive's own methods: accounts
(``AccountsAPI`` over REST) and ``Archive.preservation`` (``PreservationAPI``: health,
deletion, staging, audits, export).

Kept apart from ``archive.py`` so each module keeps to one job; both import record types only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, Protocol
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter

from dpps.bdms.records import (
    AuditReport,
    DeletionReport,
    ExportReport,
    HealthReport,
    StageInfo,
)
from dpps.bdms.types import Page
from dpps.core.accounts import DEFAULT_TOKEN_DAYS, AccountInfo, NewToken, TokenInfo
from dpps.core.errors import InvalidInput
from dpps.core.identifiers import DID

ENV_URL = "DPPS_URL"
STAGE = "/api/v1/stage-requests"
AUDITS = "/api/v1/audits"
AUDIT_CHUNK = 5_000
NO_READ_TIMEOUT = httpx.Timeout(None, connect=10.0)
"""Replica ids per audit request (the server takes up to 10,000)."""


class Transport(Protocol):
    """What these views need from ``RemoteArchive``."""

    http: httpx.Client

    def _json(self, method: str, path: str, **kwargs: Any) -> Any: ...

    def whoami(self) -> dict[str, Any]: ...


def load[T](cls: type[T], data: Any) -> T:
    return TypeAdapter(cls).validate_python(data)


def paged(
    remote: Transport, path: str, params: dict[str, Any], limit: int, page: int = 1000
) -> list[Any]:
    """Up to ``limit`` items of a paginated list endpoint (``Page``), fetched page by page."""
    return paged_total(remote, path, params, limit, page=page)[0]


def paged_total(
    remote: Transport,
    path: str,
    params: dict[str, Any],
    limit: int,
    offset: int = 0,
    *,
    page: int = 1000,
) -> tuple[list[Any], int]:
    """Up to ``limit`` items from ``offset`` of a paginated list endpoint, fetched page by
    page, and the server's ``total`` (all matches, from its latest answer)."""
    out: list[Any] = []
    total = 0
    while len(out) < limit:
        want = min(page, limit - len(out))
        answer = remote._json(
            "GET", path, params={**params, "limit": want, "offset": offset + len(out)}
        )
        out.extend(answer["items"])
        total = int(answer["total"])
        if len(answer["items"]) < want:
            break
    return out, total


class RemoteUnsupported(InvalidInput, AttributeError):
    """A command asked the remote archive for something only a local archive offers."""


def unsupported(what: str) -> NoReturn:
    """What a remote twin does in a method of the shared Protocol the server does not offer
    (``what``, e.g. ``'acada'``): a clear "run it on the server" (exit code 3)."""
    raise RemoteUnsupported(
        f"'{what}' is not available over REST yet: unset {ENV_URL} and run the command on "
        "the server"
    )


class RemotePreservation:
    """``PreservationAPI`` over REST: the health check, deletion, tape staging, audits and
    export by hand (same records as the library; the server checks roles)."""

    def __init__(self, remote: Transport) -> None:
        self.remote = remote

    def health(self) -> HealthReport:
        return load(HealthReport, self.remote._json("GET", "/api/v1/health"))

    def delete(self, did: str | DID, *, reason: str) -> DeletionReport:
        """``dpps delete`` on the server: archive managers and admins only (403 otherwise)."""
        body = {"did": str(did), "reason": reason}
        return load(DeletionReport, self.remote._json("POST", "/api/v1/deletions", json=body))

    def stage_requests(self, *, state: str | None = None, limit: int = 100) -> list[StageInfo]:
        """The newest ``limit``, oldest first (as the library lists them)."""
        return list(reversed(self.stage_listing(state=state, limit=limit).items))

    def stage_listing(
        self, *, state: str | None = None, limit: int = 100, offset: int = 0
    ) -> Page[StageInfo]:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if state is not None:
            params["state"] = state
        data = self.remote._json("GET", STAGE, params=params)
        return Page(load(list[StageInfo], data["items"]), int(data["total"]), offset, limit)

    def stage(
        self,
        dids: Sequence[str | DID],
        *,
        wait: bool = False,
        timeout_s: float | None = None,
        status: Callable[[str], None] | None = None,
    ) -> list[StageInfo]:
        """Staging is requested, and with ``wait`` waited for, by the server."""
        if not dids:
            raise InvalidInput("nothing to stage: give at least one DID")
        if wait and status is not None:
            status("the server is staging the files")
        body = {"dids": [str(d) for d in dids], "wait": wait, "timeout_s": timeout_s}
        # The answer comes when the server has waited: no read timeout shorter than its wait.
        extra: dict[str, Any] = {}
        if wait:
            extra["timeout"] = (
                NO_READ_TIMEOUT if timeout_s is None else httpx.Timeout(timeout_s + 60, connect=10)
            )
        data = self.remote._json("POST", STAGE, json=body, **extra)
        return load(list[StageInfo], data)

    def plan_audit(self, *, rse: str | None = None, limit: int | None = None) -> list[int]:
        if limit is not None and limit < 1:
            raise InvalidInput(f"limit must be at least 1, not {limit}")
        params = {k: v for k, v in (("rse", rse), ("limit", limit)) if v is not None}
        return load(list[int], self.remote._json("GET", f"{AUDITS}/plan", params=params))

    def export_size(self, did: str | DID) -> int:
        """One step for the progress bar: the server writes the bag, then it is downloaded."""
        return 1

    def export(
        self,
        did: str | DID,
        dest: Path,
        *,
        progress: Callable[[int], None] | None = None,
        wait: bool = True,
        timeout_s: float | None = None,
    ) -> ExportReport:
        """The bag is written on the server (``export`` role) and downloaded to ``dest``."""
        from dpps.client.export import export_remote

        del timeout_s  # the server's export runs to its end (wait=False: replicas not staged)
        report = export_remote(self.remote, str(did), dest, wait=wait)
        if progress is not None:
            progress(1)
        return report

    def audit(
        self,
        *,
        replica_ids: Sequence[int],
        progress: Callable[[int], None] | None = None,
        bytes_per_s: float | None = None,
    ) -> AuditReport:
        """The planned replicas re-read on the server, ``AUDIT_CHUNK`` per request."""
        parts: list[AuditReport] = []
        ids = list(replica_ids)
        for start in range(0, max(len(ids), 1), AUDIT_CHUNK):
            chunk = ids[start : start + AUDIT_CHUNK]
            body = {"replica_ids": chunk, "bytes_per_s": bytes_per_s}
            # Reading thousands of replicas takes as long as it takes: no read timeout.
            data = self.remote._json("POST", AUDITS, json=body, timeout=NO_READ_TIMEOUT)
            parts.append(load(AuditReport, data))
            if progress is not None:
                progress(len(chunk))
        return AuditReport(
            examined=sum(p.examined for p in parts),
            good=sum(p.good for p in parts),
            bad=[b for p in parts for b in p.bad],
            lost=[d for p in parts for d in p.lost],
            skipped=sum(p.skipped for p in parts),
            bytes=sum(p.bytes for p in parts),
            seconds=sum(p.seconds for p in parts),
            errors=[e for p in parts for e in p.errors],
        )


class RemoteAccounts:
    """``AccountService``'s methods over REST (the server checks the role matrix)."""

    def __init__(self, remote: Transport) -> None:
        self.remote = remote

    def _account(self, method: str, path: str, **kwargs: Any) -> AccountInfo:
        return load(AccountInfo, self.remote._json(method, path, **kwargs))

    def add_account(
        self, name: str, roles: Sequence[str], scopes: Sequence[str] = (), email: str | None = None
    ) -> AccountInfo:
        body = {"name": name, "roles": list(roles), "scopes": list(scopes), "email": email}
        return self._account("POST", "/api/v1/accounts", json=body)

    def list_accounts(self) -> list[AccountInfo]:
        return load(list[AccountInfo], self.remote._json("GET", "/api/v1/accounts")["items"])

    def get_account(self, name: str) -> AccountInfo:
        return self._account("GET", f"/api/v1/accounts/{quote(name)}")

    def grant_role(self, name: str, role: str) -> AccountInfo:
        return self._account("POST", f"/api/v1/accounts/{quote(name)}/roles", json={"role": role})

    def revoke_role(self, name: str, role: str) -> AccountInfo:
        return self._account("DELETE", f"/api/v1/accounts/{quote(name)}/roles/{quote(role)}")

    def grant_scope(self, name: str, scope: str) -> AccountInfo:
        path = f"/api/v1/accounts/{quote(name)}/scopes"
        return self._account("POST", path, json={"scope": scope})

    def revoke_scope(self, name: str, scope: str) -> AccountInfo:
        return self._account("DELETE", f"/api/v1/accounts/{quote(name)}/scopes/{quote(scope)}")

    def disable_account(self, name: str) -> AccountInfo:
        return self._account("POST", f"/api/v1/accounts/{quote(name)}/disable")

    def create_token(
        self, name: str, *, days: float = DEFAULT_TOKEN_DAYS, description: str | None = None
    ) -> NewToken:
        body = {"expires_days": days, "description": description}
        data = self.remote._json("POST", f"/api/v1/accounts/{quote(name)}/tokens", json=body)
        return load(NewToken, data)

    def list_tokens(self, name: str | None = None) -> list[TokenInfo]:
        who = name or str(self.remote.whoami()["name"])
        return load(
            list[TokenInfo], self.remote._json("GET", f"/api/v1/accounts/{quote(who)}/tokens")
        )

    def revoke_token(self, token_id: int) -> TokenInfo:
        return load(TokenInfo, self.remote._json("DELETE", f"/api/v1/tokens/{token_id}"))
