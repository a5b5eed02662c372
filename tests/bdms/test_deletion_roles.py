"""``dpps delete`` (deliberate removal, UC-110-1.9) is the archive manager's once accounts exist:
locally (Python, as an account), over REST and through the CLI against a live server. A
refusal is a clear error with its exit code or HTTP status, and removes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from typer.testing import CliRunner

from dpps.bdms.archive import Archive
from dpps.catalog.models import DIDRow, ReplicaRow
from dpps.cli.main import app
from dpps.core.authz import Role
from dpps.core.errors import PermissionDenied
from dpps.oms.api import create_app
from dpps.oms.server import BackgroundServer
from tests.oms.conftest import DL0, Seeded, account_for, seed

pytestmark = [
    pytest.mark.verifies_usecase("UC-110-1.9"),
    pytest.mark.verifies_usecase("UC-160-1.2"),  # the role matrix, for deletion
]

REFUSED = [r.value for r in Role if r not in (Role.ADMIN, Role.ARCHIVE_MANAGER)]


@pytest.fixture
def seeded(archive: Archive, tmp_path: Path) -> Seeded:
    return seed(archive, tmp_path)


@pytest.fixture
def client(seeded: Seeded) -> Iterator[TestClient]:
    with TestClient(create_app(seeded.archive)) as test_client:
        yield test_client


def _catalog(archive: Archive) -> tuple[int, int]:
    """(replicas, DIDs marked deleted): what a refused deletion must leave alone."""
    with archive.sessions() as session:
        replicas = session.scalar(select(func.count()).select_from(ReplicaRow))
        deleted = session.scalar(
            select(func.count()).select_from(DIDRow).where(DIDRow.deleted_at.is_not(None))
        )
    return int(replicas or 0), int(deleted or 0)


@pytest.mark.parametrize("role", REFUSED)
def test_only_the_archive_manager_deletes_locally(seeded: Seeded, role: str) -> None:
    archive = seeded.archive
    before = _catalog(archive)
    with pytest.raises(PermissionDenied, match=r"did\.delete.*archive-manager"):
        archive.as_account(account_for(role)).preservation.delete(DL0, reason="test")
    with pytest.raises(PermissionDenied, match="unknown"):
        archive.as_account("nobody").preservation.delete(DL0, reason="test")
    assert _catalog(archive) == before
    report = archive.as_account(account_for("archive-manager")).preservation.delete(
        DL0, reason="bad calibration"
    )
    assert report.files == 3
    assert _catalog(archive) == (before[0] - 3, before[1] + 4)  # 3 files and the dataset


def test_the_local_catalog_owner_is_an_admin(seeded: Seeded) -> None:
    """Locally the CLI acts as ``root`` (whoever can open the catalog): allowed."""
    result = CliRunner().invoke(
        app,
        ["-w", str(seeded.archive.config.workspace), "delete", DL0, "--reason", "x", "--json"],
        env={"DPPS_URL": ""},
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["files"] == 3


def test_rest_deletion_needs_the_archive_manager(seeded: Seeded, client: TestClient) -> None:
    before = _catalog(seeded.archive)
    body = {"did": DL0, "reason": "bad calibration"}
    for role in REFUSED:
        response = client.post("/api/v1/deletions", json=body, headers=seeded.headers(role))
        assert response.status_code == 403, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert "did.delete" in response.json()["detail"]
    assert _catalog(seeded.archive) == before
    response = client.post(
        "/api/v1/deletions", json={"did": DL0, "reason": " "}, headers=seeded.headers("admin")
    )
    assert response.status_code == 400  # a reason is the preservation record
    assert _catalog(seeded.archive) == before
    response = client.post(
        "/api/v1/deletions", json=body, headers=seeded.headers("archive-manager")
    )
    assert response.status_code == 200, response.text
    assert response.json()["files"] == 3
    assert _catalog(seeded.archive) == (before[0] - 3, before[1] + 4)


def test_cli_against_a_server_refuses_with_exit_code_8(seeded: Seeded) -> None:
    runner = CliRunner()
    with BackgroundServer(seeded.archive) as server:
        before = _catalog(seeded.archive)
        for role in ("reader", "operator"):
            env = {"DPPS_URL": server.url, "DPPS_TOKEN": seeded.tokens[role]}
            result = runner.invoke(app, ["delete", DL0, "--reason", "x"], env=env)
            assert result.exit_code == PermissionDenied.exit_code == 8
            assert "may not did.delete" in result.stderr
            assert result.stderr.count("\n") == 1  # one clear line, no traceback
        assert _catalog(seeded.archive) == before
        env = {"DPPS_URL": server.url, "DPPS_TOKEN": seeded.tokens["archive-manager"]}
        result = runner.invoke(app, ["delete", DL0, "--reason", "bad", "--json"], env=env)
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["files"] == 3
