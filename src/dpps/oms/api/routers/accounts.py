"""Accounts, roles, scopes and tokens. Checks live in ``AccountService`` (shared with the CLI)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from dpps.core.authz import MATRIX, Action, Role
from dpps.oms.api.deps import Accounts, Context, CurrentPrincipal
from dpps.oms.api.problems import PROBLEM_RESPONSES
from dpps.oms.api.schemas import (
    AccountIn,
    AccountOut,
    MatrixOut,
    NewTokenOut,
    Page,
    RoleIn,
    ScopeIn,
    TokenIn,
    TokenOut,
    WhoAmIOut,
)

router = APIRouter(prefix="/api/v1", tags=["accounts"], responses=PROBLEM_RESPONSES)


@router.get("/whoami", response_model=WhoAmIOut, summary="The token's account and its rights")
def whoami(who: CurrentPrincipal, ctx: Context) -> WhoAmIOut:
    return WhoAmIOut(
        name=who.name,
        default_scope=ctx.archive.config.default_scope,
        roles=sorted(who.roles),
        scopes=sorted(who.scopes),
        token_id=who.token_id,
        allowed=[a.value for a in Action if who.can(a)],
    )


@router.get("/roles", response_model=MatrixOut, summary="The role matrix: action -> roles")
def roles(_who: CurrentPrincipal) -> MatrixOut:
    return MatrixOut(
        roles=[r.value for r in Role],
        actions={a.value: sorted(r.value for r in MATRIX[a]) for a in Action},
    )


@router.get("/accounts", response_model=Page[AccountOut], summary="All accounts")
def list_accounts(service: Accounts) -> Page[AccountOut]:
    items = [AccountOut.model_validate(a) for a in service.list_accounts()]
    return Page[AccountOut](items=items, total=len(items), limit=len(items), offset=0)


@router.post(
    "/accounts",
    response_model=AccountOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create an account",
)
def add_account(body: AccountIn, service: Accounts) -> AccountOut:
    info = service.add_account(body.name, body.roles, body.scopes, body.email)
    return AccountOut.model_validate(info)


@router.get("/accounts/{name}", response_model=AccountOut, summary="One account")
def get_account(name: str, service: Accounts) -> AccountOut:
    return AccountOut.model_validate(service.get_account(name))


@router.post("/accounts/{name}/roles", response_model=AccountOut, summary="Grant a role")
def grant_role(name: str, body: RoleIn, service: Accounts) -> AccountOut:
    return AccountOut.model_validate(service.grant_role(name, body.role))


@router.delete("/accounts/{name}/roles/{role}", response_model=AccountOut, summary="Revoke a role")
def revoke_role(name: str, role: str, service: Accounts) -> AccountOut:
    return AccountOut.model_validate(service.revoke_role(name, role))


@router.post("/accounts/{name}/scopes", response_model=AccountOut, summary="Grant a scope")
def grant_scope(name: str, body: ScopeIn, service: Accounts) -> AccountOut:
    return AccountOut.model_validate(service.grant_scope(name, body.scope))


@router.delete(
    "/accounts/{name}/scopes/{scope}", response_model=AccountOut, summary="Revoke a scope"
)
def revoke_scope(name: str, scope: str, service: Accounts) -> AccountOut:
    return AccountOut.model_validate(service.revoke_scope(name, scope))


@router.post("/accounts/{name}/disable", response_model=AccountOut, summary="Disable an account")
def disable_account(name: str, service: Accounts) -> AccountOut:
    return AccountOut.model_validate(service.disable_account(name))


@router.get("/accounts/{name}/tokens", response_model=list[TokenOut], summary="Tokens")
def list_tokens(name: str, service: Accounts) -> list[TokenOut]:
    return [TokenOut.model_validate(t) for t in service.list_tokens(name)]


@router.post(
    "/accounts/{name}/tokens",
    response_model=NewTokenOut,
    status_code=status.HTTP_201_CREATED,
    summary="Create a token; its secret is in this answer only",
)
def create_token(name: str, body: TokenIn, service: Accounts) -> NewTokenOut:
    new = service.create_token(name, days=body.expires_days, description=body.description)
    return NewTokenOut.model_validate(new)


@router.delete("/tokens/{token_id}", response_model=TokenOut, summary="Revoke a token")
def revoke_token(
    token_id: Annotated[int, Path(ge=1, le=2**31 - 1)], service: Accounts
) -> TokenOut:
    return TokenOut.model_validate(service.revoke_token(token_id))
