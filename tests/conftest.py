"""Shared fixtures: every catalog test runs on SQLite and on a real, throwaway PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dpps.bdms.archive import Archive
from dpps.testing.postgres import TemporaryPostgres, postgres_available

pytest_plugins = ["dpps.verify.pytest_plugin", "tests.property.cases"]


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporaryPostgres]:
    """One PostgreSQL server for the whole session, on 127.0.0.1, stopped by PID at the end."""
    if not postgres_available():
        if os.environ.get("DPPS_REQUIRE_POSTGRES"):
            pytest.fail("PostgreSQL binaries not found but DPPS_REQUIRE_POSTGRES is set")
        pytest.skip("PostgreSQL binaries not found")
    with TemporaryPostgres(tmp_path_factory.mktemp("pg")) as server:
        yield server


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to a new, empty catalog database on each backend (a PostgreSQL one is dropped
    after the test, as tmp_path is removed: the session's server would otherwise hold them all)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.db'}"
        return
    server: TemporaryPostgres = request.getfixturevalue("postgres_server")
    url = server.create_database()
    yield url
    server.drop_database(url)


@pytest.fixture
def archive(tmp_path: Path, catalog_url: str) -> Iterator[Archive]:
    """A fresh workspace with the reference topology, on each catalog backend."""
    with Archive.init(tmp_path / "ws", catalog_url=catalog_url) as arch:
        yield arch
