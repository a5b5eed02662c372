"""Accounts, roles, scopes and tokens: the domain rules, locally and through the CLI."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from typer.testing import CliRunner

from dpps.bdms.archive import Archive
from dpps.catalog.models import EventRow, TokenRow
from dpps.cli.main import app
from dpps.core.authz import MATRIX, Action, Principal, Role
from dpps.core.clock import utcnow
from dpps.core.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from dpps.oms.accounts import AccountService, authenticate
from tests.oms.conftest import Seeded

runner = CliRunner()


@pytest.mark.verifies_usecase("UC-160-1.2")
def test_tokens_are_stored_only_as_hashes(archive: Archive) -> None:
    service = AccountService(archive.sessions)
    service.add_account("alice", ["reader"])
    new = service.create_token("alice", days=2, description="laptop")
    assert new.token.startswith("dpps_")
    assert len(new.token) > 40
    with archive.sessions() as session:
        row = session.get(TokenRow, new.id)
        assert row is not None
        assert row.token_hash == hashlib.sha256(new.token.encode()).hexdigest()
        stored = json.dumps([str(v) for v in row.__dict__.values()])
        assert new.token not in stored
        who, _ = authenticate(session, new.token)
    assert who == Principal("alice", frozenset({Role.READER}), frozenset(), new.id)
    listed = service.list_tokens("alice")
    assert [t.id for t in listed] == [new.id]
    assert not hasattr(listed[0], "token")


@pytest.mark.verifies_usecase("UC-160-1.2")
def test_expired_revoked_and_disabled_tokens_stop_working(
    seeded: Seeded, client: TestClient
) -> None:
    service = AccountService(seeded.archive.sessions)
    service.add_account("bob", ["reader"])
    tokens = {k: service.create_token("bob") for k in ("expired", "revoked", "ok")}
    headers = {k: {"Authorization": f"Bearer {t.token}"} for k, t in tokens.items()}
    for h in headers.values():
        assert client.get("/api/v1/whoami", headers=h).json()["name"] == "bob"
    with seeded.archive.sessions() as session, session.begin():
        session.execute(
            update(TokenRow)
            .where(TokenRow.id == tokens["expired"].id)
            .values(expires_at=utcnow() - dt.timedelta(seconds=1))
        )
    service.revoke_token(tokens["revoked"].id)
    expired = client.get("/api/v1/whoami", headers=headers["expired"])
    assert expired.status_code == 401
    assert "expired" in expired.json()["detail"]
    revoked = client.get("/api/v1/whoami", headers=headers["revoked"])
    assert revoked.status_code == 401
    assert "revoked" in revoked.json()["detail"]
    assert client.get("/api/v1/whoami", headers=headers["ok"]).status_code == 200
    service.disable_account("bob")
    disabled = client.get("/api/v1/whoami", headers=headers["ok"])
    assert disabled.status_code == 401
    assert "disabled" in disabled.json()["detail"]
    unknown = client.get("/api/v1/whoami", headers={"Authorization": "Bearer dpps_nope"})
    assert unknown.status_code == 401
    with seeded.archive.sessions() as session:
        actions = set(session.scalars(select(EventRow.action).where(EventRow.account == "root")))
    assert {"account.add", "token.create", "token.revoke", "account.disable"} <= actions


@pytest.mark.verifies_usecase("UC-160-1.2")
def test_account_rules_and_clear_errors(archive: Archive) -> None:
    service = AccountService(archive.sessions)
    service.add_account("carol", ["operator"], ["ctao"], email="carol@example.org")
    with pytest.raises(Conflict):
        service.add_account("carol", ["reader"])
    with pytest.raises(InvalidInput, match="unknown role"):
        service.add_account("dave", ["wizard"])
    with pytest.raises(InvalidInput, match="invalid account name"):
        service.add_account("Dave Smith", ["reader"])
    with pytest.raises(InvalidInput, match="invalid scope"):
        service.add_account("dave", ["reader"], ["Not A Scope"])
    with pytest.raises(InvalidInput, match="at least one role"):
        service.add_account("dave", [])
    with pytest.raises(NotFound):
        service.grant_role("nobody", "reader")
    with pytest.raises(InvalidInput):
        service.create_token("carol", days=0)
    info = service.grant_role("carol", "archive-manager")
    assert info.roles == ["archive-manager", "operator"]
    assert service.revoke_role("carol", "operator").roles == ["archive-manager"]
    with pytest.raises(NotFound):
        service.revoke_role("carol", "reader")
    assert service.grant_scope("carol", "*").scopes == ["*", "ctao"]
    assert service.revoke_scope("carol", "*").scopes == ["ctao"]
    carol = Principal("carol", frozenset({Role.ARCHIVE_MANAGER}), frozenset({"ctao"}))
    as_carol = AccountService(archive.sessions, carol)
    with pytest.raises(PermissionDenied):
        as_carol.add_account("eve", ["admin"])
    with pytest.raises(PermissionDenied):
        as_carol.list_accounts()
    own = as_carol.create_token("carol")
    assert as_carol.revoke_token(own.id).revoked_at is not None
    theirs = service.create_token("carol")
    service.add_account("frank", ["reader"])
    as_frank = AccountService(
        archive.sessions, Principal("frank", frozenset({Role.READER}), frozenset())
    )
    with pytest.raises(NotFound):  # someone else's token does not exist for frank
        as_frank.revoke_token(theirs.id)


def test_the_matrix_covers_every_action_and_admin_holds_all() -> None:
    assert set(MATRIX) == set(Action)
    assert all(Role.ADMIN in roles for roles in MATRIX.values())
    assert MATRIX[Action.READ] == frozenset(Role)
    assert Role.READER not in set().union(
        *(MATRIX[a] for a in Action if a not in (Action.READ, Action.TOKEN_OWN))
    )


@pytest.mark.verifies_usecase("UC-160-1.2")
def test_account_commands_locally(tmp_path: Path, catalog_url: str) -> None:
    ws = tmp_path / "ws"
    assert runner.invoke(app, ["init", str(ws), "--catalog-url", catalog_url]).exit_code == 0
    w = ("-w", str(ws))
    add = runner.invoke(
        app, [*w, "account", "add", "ops", "--role", "operator", "--scope", "ctao", "--json"]
    )
    assert add.exit_code == 0, add.stderr
    assert json.loads(add.stdout)[0]["roles"] == ["operator"]
    dup = runner.invoke(app, [*w, "account", "add", "ops", "--role", "reader"])
    assert dup.exit_code == Conflict.exit_code
    assert "exists already" in dup.stderr
    bad = runner.invoke(app, [*w, "account", "add", "x", "--role", "king"])
    assert bad.exit_code == InvalidInput.exit_code
    assert "unknown role" in bad.stderr
    grant = runner.invoke(app, [*w, "role", "grant", "ops", "reader", "--json"])
    assert json.loads(grant.stdout)[0]["roles"] == ["operator", "reader"]
    token = runner.invoke(app, [*w, "token", "create", "ops", "--expires", "3", "--json"])
    assert token.exit_code == 0, token.stderr
    created = json.loads(token.stdout)
    plain = runner.invoke(app, [*w, "token", "create", "ops"])
    assert plain.stdout.strip().startswith("dpps_")
    assert "only its hash" in plain.stderr
    listed = json.loads(runner.invoke(app, [*w, "token", "list", "ops", "--json"]).stdout)["items"]
    assert next(t["id"] for t in listed) == created["id"]
    assert all("token" not in t for t in listed)
    revoke = runner.invoke(app, [*w, "token", "revoke", str(created["id"]), "--json"])
    assert json.loads(revoke.stdout)["revoked_at"] is not None
    gone = runner.invoke(app, [*w, "token", "revoke", "9999"])
    assert gone.exit_code == NotFound.exit_code
    accounts = json.loads(runner.invoke(app, [*w, "account", "list", "--json"]).stdout)["items"]
    assert [a["name"] for a in accounts] == ["ops"]
    listed_roles = json.loads(runner.invoke(app, ["role", "list", "--json"]).stdout)["items"]
    matrix = {row["action"]: row["roles"] for row in listed_roles}
    assert matrix["rule.write.dl0"] == ["admin", "archive-manager"]


@pytest.mark.parametrize(
    "command",
    [
        ["account", "add"],
        ["account", "list"],
        ["account", "show"],
        ["account", "disable"],
        ["role", "grant"],
        ["role", "revoke"],
        ["role", "list"],
        ["scope", "grant"],
        ["scope", "revoke"],
        ["token", "create"],
        ["token", "list"],
        ["token", "revoke"],
        ["report"],
        ["serve"],
    ],
    ids=" ".join,
)
def test_operations_commands_have_help_and_json(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.stdout
    assert "--json" in result.stdout
