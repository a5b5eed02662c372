"""Accounts, roles, scopes and bearer tokens: the domain logic behind the CLI and the REST API.

Tokens are 32 random bytes (``secrets.token_urlsafe``) shown once, at creation; the catalog
keeps only their SHA-256. A slow, salted password hash (bcrypt, argon2) protects *guessable*
secrets; a 256-bit random token cannot be guessed, so one fast hash is as safe and lets every
request be authenticated with one indexed lookup.

``AccountService`` owns the transactions (it is called by CLI commands and REST handlers, the
outermost layer); the functions below it take a session and never commit. Every change is an
event naming the acting account. Authorisation is checked here, against the one matrix in
``authz``, so the CLI and the API cannot disagree.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from collections.abc import Callable, Iterable, Sequence

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.orm import Session, sessionmaker

from dpps.catalog import events
from dpps.catalog.engine import transaction
from dpps.catalog.models import AccountRow, TokenRow
from dpps.core.accounts import DEFAULT_TOKEN_DAYS, AccountInfo, NewToken, TokenInfo
from dpps.core.authz import (
    ROOT,
    Action,
    Principal,
    Role,
    parse_role,
    parse_scope,
    principal_of,
    require,
)
from dpps.core.clock import utcnow
from dpps.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied

ACCOUNT_RE = re.compile(r"^[a-z][a-z0-9_.\-]{0,63}$")
TOKEN_PREFIX = "dpps_"
#: Dashboard sessions: tokens of their own, never the API token the user signed in with, so
#: the browser's cookie never holds a credential that works anywhere else, and signing out
#: revokes it. ``principal_for_token`` (the API's bearer check) refuses them.
SESSION_PREFIX = "dpps_ui_"
SESSION_HOURS = 12.0
MAX_TOKEN_DAYS = 3650

#: The local catalog owner: whoever can open the catalog database acts as this account.


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def validate_account_name(name: str) -> str:
    if not ACCOUNT_RE.match(name):
        raise InvalidInput(
            f"invalid account name {name!r}: 1-64 characters of a-z, 0-9, '_', '.', '-', "
            "starting with a letter"
        )
    return name


def account_info(row: AccountRow) -> AccountInfo:
    return AccountInfo(
        row.name, list(row.roles), list(row.scopes), row.email, row.created_at, row.disabled_at
    )


def token_info(row: TokenRow, account: str) -> TokenInfo:
    return TokenInfo(
        row.id,
        account,
        row.description,
        row.created_at,
        row.expires_at,
        row.revoked_at,
        row.last_used_at,
    )


# -- session-level functions (caller owns the transaction) -----------------------------------


def get_account_row(session: Session, name: str) -> AccountRow:
    row = session.scalars(select(AccountRow).where(AccountRow.name == name)).one_or_none()
    if row is None:
        raise NotFound(f"no such account {name!r}")
    return row


def authenticate(session: Session, token: str) -> tuple[Principal, TokenRow]:
    """The account a bearer token stands for; PermissionDenied if it is not valid now."""
    found = session.execute(
        select(TokenRow, AccountRow)
        .join(AccountRow, AccountRow.id == TokenRow.account_id)
        .where(TokenRow.token_hash == hash_token(token))
    ).one_or_none()
    if found is None:
        raise PermissionDenied("unknown token")
    tok, account = found
    _check_valid(tok.id, tok.revoked_at, tok.expires_at, account.name, account.disabled_at)
    return principal_of(account, tok.id), tok


#: One statement, built once: the per-request token lookup of the API (columns, no ORM
#: entities: it runs on every request, so its cost is the floor of every answer).
_PRINCIPAL = (
    select(
        TokenRow.id,
        TokenRow.revoked_at,
        TokenRow.expires_at,
        AccountRow.name,
        AccountRow.roles,
        AccountRow.scopes,
        AccountRow.disabled_at,
    )
    .join(AccountRow, AccountRow.id == TokenRow.account_id)
    .where(TokenRow.token_hash == bindparam("token_hash"))
)


def open_session(session: Session, token: TokenRow) -> tuple[str, dt.datetime]:
    """A dashboard session for the account of ``token`` (already authenticated): a new
    secret and its expiry, at most ``SESSION_HOURS`` and never past the token's own; the
    caller commits. Only its hash is stored, like any token's."""
    now = utcnow()
    expires = min(token.expires_at, now + dt.timedelta(hours=SESSION_HOURS))
    secret = SESSION_PREFIX + secrets.token_urlsafe(32)
    row = TokenRow(
        account_id=token.account_id,
        token_hash=hash_token(secret),
        description=f"dashboard session (signed in with token {token.id})",
        created_at=now,
        expires_at=expires,
    )
    session.add(row)
    session.flush()
    return secret, expires


def close_session(session: Session, secret: str) -> bool:
    """Revoke a dashboard session (sign-out); False if it was no live session."""
    if not secret.startswith(SESSION_PREFIX):
        return False
    row = session.scalars(
        select(TokenRow).where(TokenRow.token_hash == hash_token(secret))
    ).one_or_none()
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    return True


def sign_in(sessions: sessionmaker[Session], api_token: str) -> tuple[Principal, str, dt.datetime]:
    """The dashboard's sign-in: the account of a valid API token that may read, and a new
    session for it (secret, expiry). PermissionDenied otherwise."""
    if api_token.startswith(SESSION_PREFIX):
        raise PermissionDenied("sign in with an API token, not a dashboard session")
    with transaction(sessions) as session:
        who, tok = authenticate(session, api_token)
        if not who.can(Action.READ):
            raise PermissionDenied(f"account {who.name!r} may not read")
        secret, expires = open_session(session, tok)
    return who, secret, expires


def sign_out(sessions: sessionmaker[Session], secret: str) -> None:
    """Revoke a dashboard session: its cookie is worthless from now on, wherever it is."""
    with transaction(sessions) as session:
        close_session(session, secret)


def principal_for_token(db: Session | Connection, token: str) -> Principal:
    """``authenticate`` without loading the rows: what each API request needs (a bare
    connection will do). A dashboard session's secret is no API token."""
    if token.startswith(SESSION_PREFIX):
        raise PermissionDenied("a dashboard session is not an API token")
    found = db.execute(_PRINCIPAL, {"token_hash": hash_token(token)}).one_or_none()
    if found is None:
        raise PermissionDenied("unknown token")
    token_id, revoked_at, expires_at, name, roles, scopes, disabled_at = found
    _check_valid(token_id, revoked_at, expires_at, name, disabled_at)
    return Principal(
        name,
        frozenset(Role(r) for r in roles if r in Role.__members__.values()),
        frozenset(scopes),
        token_id,
    )


def _check_valid(
    token_id: int,
    revoked_at: dt.datetime | None,
    expires_at: dt.datetime,
    account: str,
    disabled_at: dt.datetime | None,
) -> None:
    if revoked_at is not None:
        raise PermissionDenied(f"token {token_id} was revoked on {revoked_at:%Y-%m-%d %H:%M}")
    if expires_at <= utcnow():
        raise PermissionDenied(f"token {token_id} expired on {expires_at:%Y-%m-%d %H:%M}")
    if disabled_at is not None:
        raise PermissionDenied(f"account {account!r} is disabled")


def _record(session: Session, actor: Principal, action: str, **details: object) -> None:
    events.record(session, account=actor.name, action=action, details=details)


def _roles(values: Iterable[str]) -> list[str]:
    return sorted({parse_role(v).value for v in values})


def _scopes(values: Iterable[str]) -> list[str]:
    return sorted({parse_scope(v) for v in values})


class AccountService:
    """Account administration as one actor (``ROOT`` locally, the token's account over REST)."""

    def __init__(self, sessions: sessionmaker[Session], actor: Principal = ROOT) -> None:
        self.sessions = sessions
        self.actor = actor

    def _require_self_or(self, name: str, action: Action) -> None:
        if name == self.actor.name:
            require(self.actor, Action.TOKEN_OWN)
        else:
            require(self.actor, action)

    def add_account(
        self,
        name: str,
        roles: Sequence[str],
        scopes: Sequence[str] = (),
        email: str | None = None,
    ) -> AccountInfo:
        require(self.actor, Action.ACCOUNT_WRITE)
        validate_account_name(name)
        if not roles:
            raise InvalidInput("give the account at least one role (--role)")
        row = AccountRow(
            name=name,
            roles=_roles(roles),
            scopes=_scopes(scopes),
            email=email,
            created_at=utcnow(),
        )
        with transaction(self.sessions) as session:
            if session.scalars(select(AccountRow.id).where(AccountRow.name == name)).first():
                raise Conflict(f"account {name!r} exists already")
            session.add(row)
            session.flush()
            _record(
                session, self.actor, "account.add", name=name, roles=row.roles, scopes=row.scopes
            )
            return account_info(row)

    def list_accounts(self) -> list[AccountInfo]:
        require(self.actor, Action.ACCOUNT_READ)
        with self.sessions() as session:
            rows = session.scalars(select(AccountRow).order_by(AccountRow.name))
            return [account_info(r) for r in rows]

    def get_account(self, name: str) -> AccountInfo:
        self._require_self_or(name, Action.ACCOUNT_READ)
        with self.sessions() as session:
            return account_info(get_account_row(session, name))

    def _update(self, name: str, action: str, change: Callable[[AccountRow], None]) -> AccountInfo:
        """Apply ``change`` to the account row inside one transaction (no lost updates)."""
        require(self.actor, Action.ACCOUNT_WRITE)
        with transaction(self.sessions) as session:
            row = get_account_row(session, name)
            before = {"roles": list(row.roles), "scopes": list(row.scopes)}
            change(row)
            after = {"roles": list(row.roles), "scopes": list(row.scopes)}
            _record(session, self.actor, action, name=name, before=before, after=after)
            return account_info(row)

    def grant_role(self, name: str, role: str) -> AccountInfo:
        new = parse_role(role).value

        def change(row: AccountRow) -> None:
            row.roles = sorted({*row.roles, new})

        return self._update(name, "account.role_grant", change)

    def revoke_role(self, name: str, role: str) -> AccountInfo:
        gone = parse_role(role).value

        def change(row: AccountRow) -> None:
            if gone not in row.roles:
                raise NotFound(f"account {name!r} does not hold role {gone!r}")
            row.roles = [r for r in row.roles if r != gone]

        return self._update(name, "account.role_revoke", change)

    def grant_scope(self, name: str, scope: str) -> AccountInfo:
        new = parse_scope(scope)

        def change(row: AccountRow) -> None:
            row.scopes = sorted({*row.scopes, new})

        return self._update(name, "account.scope_grant", change)

    def revoke_scope(self, name: str, scope: str) -> AccountInfo:
        def change(row: AccountRow) -> None:
            if scope not in row.scopes:
                raise NotFound(f"account {name!r} does not hold scope {scope!r}")
            row.scopes = [s for s in row.scopes if s != scope]

        return self._update(name, "account.scope_revoke", change)

    def disable_account(self, name: str) -> AccountInfo:
        """A disabled account keeps its history; none of its tokens works any more."""

        def change(row: AccountRow) -> None:
            if row.disabled_at is None:
                row.disabled_at = utcnow()

        return self._update(name, "account.disable", change)

    def create_token(
        self, name: str, *, days: float = DEFAULT_TOKEN_DAYS, description: str | None = None
    ) -> NewToken:
        self._require_self_or(name, Action.ACCOUNT_WRITE)
        if not 0 < days <= MAX_TOKEN_DAYS:
            raise InvalidInput(f"token lifetime must be between 0 and {MAX_TOKEN_DAYS} days")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = utcnow()
        with transaction(self.sessions) as session:
            account = get_account_row(session, name)
            if account.disabled_at is not None:
                raise Conflict(f"account {name!r} is disabled")
            row = TokenRow(
                account_id=account.id,
                token_hash=hash_token(secret),
                description=description,
                created_at=now,
                expires_at=now + dt.timedelta(days=days),
            )
            session.add(row)
            session.flush()
            _record(
                session,
                self.actor,
                "token.create",
                account=name,
                token_id=row.id,
                expires_at=row.expires_at.isoformat(),
            )
            return NewToken(row.id, name, secret, row.expires_at)

    def list_tokens(self, name: str | None = None) -> list[TokenInfo]:
        """Tokens of one account (default: the actor's own), never their secrets."""
        name = name or self.actor.name
        self._require_self_or(name, Action.ACCOUNT_READ)
        with self.sessions() as session:
            account = get_account_row(session, name)
            rows = session.scalars(
                select(TokenRow).where(TokenRow.account_id == account.id).order_by(TokenRow.id)
            )
            return [token_info(r, name) for r in rows]

    def revoke_token(self, token_id: int) -> TokenInfo:
        with transaction(self.sessions) as session:
            found = session.execute(
                select(TokenRow, AccountRow.name)
                .join(AccountRow, AccountRow.id == TokenRow.account_id)
                .where(TokenRow.id == token_id)
            ).one_or_none()
            if found is None:
                # Same answer whether the token does not exist or is not the actor's to see.
                raise NotFound(f"no such token {token_id}")
            row, owner = found
            if owner != self.actor.name and not self.actor.can(Action.ACCOUNT_WRITE):
                raise NotFound(f"no such token {token_id}")
            self._require_self_or(owner, Action.ACCOUNT_WRITE)
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                _record(session, self.actor, "token.revoke", account=owner, token_id=row.id)
            return token_info(row, owner)
