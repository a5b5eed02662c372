"""Opening a workspace whose SQLite catalog is missing (issue 15, defect 10).

SQLite creates a database file on first connection, so a deleted, moved or unmounted catalog
used to come back empty: a second archive beside the real one, which every command then wrote
to. Only ``dpps init`` (``Archive.init``) creates a catalog; opening a workspace without its
catalog file is ``NotFound`` (exit code 5, as for a missing workspace) and creates nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dpps.bdms.archive import Archive
from dpps.cli.main import app
from dpps.core.errors import NotFound

runner = CliRunner()


def _catalog_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("catalog.db"))


def test_a_missing_catalog_is_not_found_and_not_recreated(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    with Archive.init(ws) as archive:
        rses = sorted(archive.config.rses)
        assert (ws / "catalog.db").is_file()
    (ws / "catalog.db").rename(tmp_path / "catalog.db.away")
    before = _catalog_files(ws)
    with pytest.raises(NotFound, match=r"catalog .*catalog\.db does not exist"):
        Archive.open(ws)
    assert _catalog_files(ws) == before
    assert not (ws / "catalog.db").exists()
    # Once the catalog is back, the same workspace opens with what it held.
    (tmp_path / "catalog.db.away").rename(ws / "catalog.db")
    with Archive.open(ws) as archive:
        assert sorted(r.name for r in archive.rses()) == rses


def test_an_unmounted_catalog_directory_is_not_found_and_not_created(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    mount = tmp_path / "mnt" / "catalogs"
    mount.mkdir(parents=True)
    url = f"sqlite:///{mount / 'catalog.db'}"
    Archive.init(ws, catalog_url=url).close()
    mount.rename(tmp_path / "mnt" / "away")  # the disk is not mounted
    with pytest.raises(NotFound, match="does not exist"):
        Archive.open(ws)
    assert not mount.exists()


def test_init_still_creates_the_catalog(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    Archive.init(ws).close()
    (ws / "catalog.db").unlink()
    with Archive.init(ws, force=True) as archive:  # the one explicit way to a new catalog
        assert archive.rses()
    assert (ws / "catalog.db").is_file()


def test_the_cli_reports_a_missing_catalog_with_exit_code_5(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    result = runner.invoke(app, ["init", str(ws), "--json"])
    assert result.exit_code == 0, result.stderr
    (ws / "catalog.db").rename(tmp_path / "catalog.db.away")
    for command in (["ls"], ["health"], ["daemon", "evaluator", "--once"]):
        result = runner.invoke(app, ["-w", str(ws), *command])
        assert result.exit_code == NotFound.exit_code, (command, result.stderr)
        assert "does not exist" in result.stderr
        assert "dpps init" in result.stderr
        assert not (ws / "catalog.db").exists()


def test_a_relative_catalog_url_is_checked_in_the_workspace(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    Archive.init(ws).close()
    config = yaml.safe_load((ws / "dpps.yaml").read_text())
    assert config["catalog"]["url"] == "sqlite:///catalog.db"
    (ws / "catalog.db").unlink()
    result = runner.invoke(app, ["-w", str(ws), "ls"])
    assert result.exit_code == NotFound.exit_code, result.stderr
    assert str(ws / "catalog.db") in result.stderr.replace("\n", "")
    assert not (ws / "catalog.db").exists()
