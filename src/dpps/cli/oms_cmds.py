"""Operations commands: accounts, roles, scopes, tokens and ``dpps report``.

``dpps serve`` (in ``daemon_cmds``) serves the REST API and dashboard through
``dpps.oms.server``.

Locally these act as the catalog's owner (``root``: whoever can open the catalog database);
with ``DPPS_URL`` set they go to the server, which checks the token's account against the role
matrix. Either way the checks are the ones in ``dpps.oms.accounts`` and ``dpps.core.authz``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from dpps.bdms.types import to_jsonable
from dpps.cli.common import JsonOpt, command, is_remote, open_local_archive, remote_archive
from dpps.cli.listing import Column, Listing, OutputFormat, OutputOpt, emit, output_format
from dpps.cli.output import console, emit_json, err_console
from dpps.core.accounts import DEFAULT_TOKEN_DAYS, AccountInfo, AccountsAPI
from dpps.core.authz import Role, matrix_rows
from dpps.core.errors import InvalidInput


def accounts_api(ctx: typer.Context) -> AccountsAPI:
    remote = remote_archive(ctx)
    if remote is not None:
        return remote.accounts
    from dpps.core.authz import ROOT
    from dpps.oms.accounts import AccountService

    return AccountService(open_local_archive(ctx).sessions, ROOT)


def _accounts(infos: list[AccountInfo]) -> Listing:
    columns = [
        Column("account"),
        Column("roles", whole=False),
        Column("scopes", whole=False),
        *(Column(c) for c in ("email", "created", "disabled")),
    ]
    rows = [
        [a.name, ", ".join(a.roles), ", ".join(a.scopes), a.email, a.created_at, a.disabled_at]
        for a in infos
    ]
    return Listing(columns, rows, infos)


def _show_accounts(infos: list[AccountInfo], json_: bool) -> None:
    """The accounts a change touched: JSON as a list (not a listing's page)."""
    emit_json(infos) if json_ else emit(_accounts(infos), OutputFormat.TABLE)


NameArg = Annotated[str, typer.Argument(help="Account name.")]


def account_add(
    ctx: typer.Context,
    name: NameArg,
    role: Annotated[
        list[str], typer.Option("--role", help=f"Role (repeatable): {', '.join(Role)}.")
    ],
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", help="Scope the account may write (repeatable; '*': all)."),
    ] = None,
    email: Annotated[str | None, typer.Option(help="Contact address.")] = None,
    json_: JsonOpt = False,
) -> None:
    """Create an account with roles and the scopes it may write."""
    _show_accounts([accounts_api(ctx).add_account(name, role, scope or [], email)], json_)


def account_list(ctx: typer.Context, output: OutputOpt = None, json_: JsonOpt = False) -> None:
    """List accounts with their roles and scopes."""
    emit(_accounts(accounts_api(ctx).list_accounts()), output_format(output, json_))


def account_show(ctx: typer.Context, name: NameArg, json_: JsonOpt = False) -> None:
    """Show one account."""
    _show_accounts([accounts_api(ctx).get_account(name)], json_)


def account_disable(ctx: typer.Context, name: NameArg, json_: JsonOpt = False) -> None:
    """Disable an account: its history stays, none of its tokens works any more."""
    _show_accounts([accounts_api(ctx).disable_account(name)], json_)


RoleArg = Annotated[str, typer.Argument(help=f"One of {', '.join(Role)}.")]
ScopeArg = Annotated[str, typer.Argument(help="A scope, or '*' for all.")]


def role_grant(ctx: typer.Context, name: NameArg, role: RoleArg, json_: JsonOpt = False) -> None:
    """Give an account a role."""
    _show_accounts([accounts_api(ctx).grant_role(name, role)], json_)


def role_revoke(ctx: typer.Context, name: NameArg, role: RoleArg, json_: JsonOpt = False) -> None:
    """Take a role from an account."""
    _show_accounts([accounts_api(ctx).revoke_role(name, role)], json_)


def role_list(output: OutputOpt = None, json_: JsonOpt = False) -> None:
    """Show the role matrix: which role may take which action.

    -o json gives each action's roles (``items``); -o plain the actions.
    """
    rows = matrix_rows()
    items = [
        {"action": a, "roles": [r.value for r, ok in zip(Role, al, strict=True) if ok]}
        for a, al in rows
    ]
    columns = [Column("action"), *(Column(r.value) for r in Role)]
    table_rows = [[a, *("x" if ok else "-" for ok in al)] for a, al in rows]
    emit(Listing(columns, table_rows, items), output_format(output, json_))


def scope_grant(
    ctx: typer.Context, name: NameArg, scope: ScopeArg, json_: JsonOpt = False
) -> None:
    """Let an account write DIDs in a scope."""
    _show_accounts([accounts_api(ctx).grant_scope(name, scope)], json_)


def scope_revoke(
    ctx: typer.Context, name: NameArg, scope: ScopeArg, json_: JsonOpt = False
) -> None:
    """Stop an account writing DIDs in a scope."""
    _show_accounts([accounts_api(ctx).revoke_scope(name, scope)], json_)


def token_create(
    ctx: typer.Context,
    name: NameArg,
    expires: Annotated[
        float, typer.Option("--expires", min=0.001, max=3650, help="Lifetime in days.")
    ] = DEFAULT_TOKEN_DAYS,
    description: Annotated[str | None, typer.Option(help="What the token is for.")] = None,
    json_: JsonOpt = False,
) -> None:
    """Create a bearer token for an account. Its secret is printed now and never again."""
    new = accounts_api(ctx).create_token(name, days=expires, description=description)
    if json_:
        emit_json(new)
        return
    console.print(new.token, soft_wrap=True)
    err_console.print(
        f"token {new.id} for {new.account}, expires {new.expires_at:%Y-%m-%d %H:%M} UTC; "
        "store it now: only its hash is kept"
    )


def token_list(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Account (default: your own).")] = None,
    output: OutputOpt = None,
    json_: JsonOpt = False,
) -> None:
    """List an account's tokens (never their secrets)."""
    fmt = output_format(output, json_)
    tokens = accounts_api(ctx).list_tokens(name or (None if is_remote() else "root"))
    columns = [
        *(Column(c) for c in ("id", "account")),
        Column("description", whole=False),
        *(Column(c) for c in ("created", "expires", "revoked", "last used")),
    ]
    rows = [
        [t.id, t.account, t.description, t.created_at, t.expires_at, t.revoked_at, t.last_used_at]
        for t in tokens
    ]
    emit(Listing(columns, rows, tokens), fmt)


def token_revoke(
    ctx: typer.Context,
    token_id: Annotated[int, typer.Argument(metavar="ID", min=1, help="Token id.")],
    json_: JsonOpt = False,
) -> None:
    """Revoke a token: it stops working at once."""
    info = accounts_api(ctx).revoke_token(token_id)
    if json_:
        emit_json(info)
    else:
        console.print(f"token {info.id} of {info.account} revoked at {info.revoked_at}")


def report(
    ctx: typer.Context,
    since: Annotated[
        str, typer.Option(help="Start: 24h, 7d, 2w back from now, or an ISO date (UTC).")
    ] = "24h",
    until: Annotated[
        str | None, typer.Option(help="End (ISO date/time, UTC; default now).")
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="markdown, html or json.")] = "markdown",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file.")
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Operations report: volumes ingested and replicated per site, failures, repairs, jobs."""
    from dpps.oms import report as report_mod

    fmt = "json" if json_ else fmt
    if fmt not in report_mod.FORMATS:
        raise InvalidInput(f"--format must be one of {', '.join(report_mod.FORMATS)}")
    remote = remote_archive(ctx)
    if remote is not None:
        text = remote.report(since, until, fmt)
        if fmt == "json":
            text = json.dumps(json.loads(text), indent=2) + "\n"
    else:
        start = report_mod.parse_since(since)
        end = report_mod.parse_since(until) if until else None
        archive = open_local_archive(ctx)
        with archive.sessions() as session:
            rep = report_mod.build_report(session, archive.config, start, end)
        if fmt == "json":
            text = json.dumps(to_jsonable(rep), indent=2) + "\n"
        else:
            text = (report_mod.render_html if fmt == "html" else report_mod.render_markdown)(rep)
    if output is not None:
        output.write_text(text, encoding="utf-8")
        err_console.print(f"report written to {output}")
    else:
        console.out(text, end="", highlight=False)


def register(app: typer.Typer) -> None:
    account_app = typer.Typer(help="Accounts: who may act on the archive.", no_args_is_help=True)
    command(account_app, account_add, "add")
    command(account_app, account_list, "list")
    command(account_app, account_show, "show")
    command(account_app, account_disable, "disable")
    app.add_typer(account_app, name="account")
    role_app = typer.Typer(help="Roles of accounts and the role matrix.", no_args_is_help=True)
    command(role_app, role_grant, "grant")
    command(role_app, role_revoke, "revoke")
    command(role_app, role_list, "list")
    app.add_typer(role_app, name="role")
    scope_app = typer.Typer(help="Scopes an account may write.", no_args_is_help=True)
    command(scope_app, scope_grant, "grant")
    command(scope_app, scope_revoke, "revoke")
    app.add_typer(scope_app, name="scope")
    token_app = typer.Typer(help="Bearer tokens for the REST API.", no_args_is_help=True)
    command(token_app, token_create, "create")
    command(token_app, token_list, "list")
    command(token_app, token_revoke, "revoke")
    app.add_typer(token_app, name="token")
    command(app, report)
