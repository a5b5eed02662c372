"""Records of accounts and tokens, and the account operations both twins offer.

``dpps.oms.accounts.AccountService`` (local, over the catalog) and
``dpps.client.views.RemoteAccounts`` (over REST) return these records and both satisfy
``AccountsAPI``; kept in ``core`` so the client names them without importing the server.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

DEFAULT_TOKEN_DAYS = 30


@dataclass(frozen=True, slots=True)
class AccountInfo:
    name: str
    roles: list[str]
    scopes: list[str]
    email: str | None
    created_at: dt.datetime
    disabled_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: int
    account: str
    description: str | None
    created_at: dt.datetime
    expires_at: dt.datetime
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None


@dataclass(frozen=True, slots=True)
class NewToken:
    """A token just created: the only time its secret is ever shown."""

    id: int
    account: str
    token: str
    expires_at: dt.datetime


class AccountsAPI(Protocol):
    """What ``AccountService`` (local) and ``RemoteAccounts`` (REST) both offer."""

    def add_account(
        self,
        name: str,
        roles: Sequence[str],
        scopes: Sequence[str] = (),
        email: str | None = None,
    ) -> AccountInfo: ...
    def list_accounts(self) -> list[AccountInfo]: ...
    def get_account(self, name: str) -> AccountInfo: ...
    def grant_role(self, name: str, role: str) -> AccountInfo: ...
    def revoke_role(self, name: str, role: str) -> AccountInfo: ...
    def grant_scope(self, name: str, scope: str) -> AccountInfo: ...
    def revoke_scope(self, name: str, scope: str) -> AccountInfo: ...
    def disable_account(self, name: str) -> AccountInfo: ...
    def create_token(
        self, name: str, *, days: float = DEFAULT_TOKEN_DAYS, description: str | None = None
    ) -> NewToken: ...
    def list_tokens(self, name: str | None = None) -> list[TokenInfo]: ...
    def revoke_token(self, token_id: int) -> TokenInfo: ...
