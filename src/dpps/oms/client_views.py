"""Remote views of the sub-APIs the CLI uses besides the archive's own methods: accounts
(``AccountService`` over REST) and the part of ``Archive.preservation`` the server offers.

Kept apart from ``client.py`` so each module keeps to one job; both import no server code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol
from urllib.parse import quote

from pydantic import TypeAdapter

from dpps.bdms.deletion import DeletionReport
from dpps.bdms.health import HealthReport
from dpps.core.errors import InvalidInput
from dpps.core.identifiers import DID
from dpps.oms.accounts import AccountInfo, NewToken, TokenInfo

ENV_URL = "DPPS_URL"


class Transport(Protocol):
    """What these views need from ``RemoteArchive``."""

    def _json(self, method: str, path: str, **kwargs: Any) -> Any: ...

    def whoami(self) -> dict[str, Any]: ...


def load[T](cls: type[T], data: Any) -> T:
    return TypeAdapter(cls).validate_python(data)


class RemoteUnsupported(InvalidInput, AttributeError):
    """A command asked the remote archive for something only a local archive offers."""


class RemotePreservation:
    """The part of ``Archive.preservation`` the server offers: the health check, deletion."""

    def __init__(self, remote: Transport) -> None:
        self.remote = remote

    def health(self) -> HealthReport:
        return load(HealthReport, self.remote._json("GET", "/api/v1/health"))

    def delete(self, did: str | DID, *, reason: str) -> DeletionReport:
        """``dpps delete`` on the server: archive managers and admins only (403 otherwise)."""
        body = {"did": str(did), "reason": reason}
        return load(DeletionReport, self.remote._json("POST", "/api/v1/deletions", json=body))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        raise RemoteUnsupported(
            f"'preservation.{name}' is not available over REST yet: unset {ENV_URL} and run "
            "the command on the server"
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
        self, name: str, *, days: float = 30, description: str | None = None
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
