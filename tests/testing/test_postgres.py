"""The throwaway PostgreSQL server: real connections, 127.0.0.1 only, stopped by PID."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from dpps.testing.postgres import (
    TemporaryPostgres,
    postgres_available,
    postgres_bin_dir,
    process_alive,
)

pytestmark = pytest.mark.postgres


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket in LISTEN state on ``port`` (Linux /proc/net)."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].rsplit(":", 1)
            if fields[3] == "0A" and int(port_hex, 16) == port:  # 0A = LISTEN
                found.add(address)
    return found


def test_bin_dir_found() -> None:
    assert postgres_available()
    bin_dir = postgres_bin_dir()
    assert bin_dir is not None
    assert (bin_dir / "initdb").is_file()


def test_select_version(postgres_server: TemporaryPostgres) -> None:
    engine = sa.create_engine(postgres_server.url)
    try:
        with engine.connect() as conn:
            version = conn.execute(sa.text("SELECT version()")).scalar_one()
    finally:
        engine.dispose()
    assert version.startswith("PostgreSQL")


def test_listens_on_loopback_only(postgres_server: TemporaryPostgres) -> None:
    with psycopg.connect(host="127.0.0.1", port=postgres_server.port, user="postgres") as conn:
        row = conn.execute("SHOW listen_addresses").fetchone()
    assert row == ("127.0.0.1",)
    # postmaster.pid: pid, data dir, start time, port, socket dir, listen address, ...
    lines = (postgres_server.data_dir / "postmaster.pid").read_text().splitlines()
    assert int(lines[0]) == postgres_server.pid
    assert int(lines[3]) == postgres_server.port
    assert lines[5] == "127.0.0.1"
    if Path("/proc/net/tcp").exists():
        # 0100007F is 127.0.0.1 in the kernel's little-endian hex.
        assert _listening_addresses(postgres_server.port) == {"0100007F"}


def test_create_database_gives_independent_databases(
    postgres_server: TemporaryPostgres,
) -> None:
    first, second = postgres_server.create_database(), postgres_server.create_database()
    assert first != second
    engines = [sa.create_engine(url) for url in (first, second)]
    try:
        with engines[0].begin() as conn:
            conn.execute(sa.text("CREATE TABLE marker (x integer)"))
            conn.execute(sa.text("INSERT INTO marker VALUES (1)"))
        with engines[1].connect() as conn:
            assert conn.execute(sa.text("SELECT to_regclass('marker')")).scalar() is None
        with engines[0].connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM marker")).scalar_one() == 1
    finally:
        for engine in engines:
            engine.dispose()


def test_create_database_rejects_bad_names(postgres_server: TemporaryPostgres) -> None:
    with pytest.raises(ValueError, match="invalid database name"):
        postgres_server.create_database('x"; DROP DATABASE postgres; --')


def test_catalog_url_fixture_works_on_both_backends(catalog_url: str) -> None:
    engine = sa.create_engine(catalog_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()


def test_stop_leaves_no_process(tmp_path: Path) -> None:
    server = TemporaryPostgres(tmp_path / "pg")
    with server:
        pid = server.pid
        assert process_alive(pid)
        url = server.create_database("named_db")
        assert url.endswith("/named_db")
    assert not process_alive(pid)
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.pid
    server.stop()  # idempotent


def test_stop_kills_by_pid_when_pg_ctl_cannot(tmp_path: Path) -> None:
    """If pg_ctl stop fails (here: data dir gone), the postmaster is still stopped by PID."""
    server = TemporaryPostgres(tmp_path / "pg")
    server.start()
    pid = server.pid
    (server.data_dir / "postmaster.pid").rename(server.data_dir / "postmaster.pid.moved")
    server.stop()
    assert not process_alive(pid)


def test_start_failure_reports_server_log(tmp_path: Path) -> None:
    with TemporaryPostgres(tmp_path / "a") as running:
        clash = TemporaryPostgres(tmp_path / "b", port=running.port)
        with pytest.raises(RuntimeError, match="server log"):
            clash.start()
        clash.stop()
        assert process_alive(running.pid)


def test_a_kept_server_directory_is_started_again_with_its_data() -> None:
    """A benchmark builds a large catalog once and measures it again later (``--keep`` /
    ``--reuse``): a second server on the same directory starts on the data already there
    instead of failing in initdb (a reachable directory of ours: pytest's tmp_path is private
    to root, and the server would then work in a directory of its own, removed at stop)."""
    base = Path(tempfile.mkdtemp(prefix="dpps-pg-keep-"))
    base.chmod(0o755)
    try:
        with TemporaryPostgres(base) as first:
            url = first.create_database("kept")
            engine = sa.create_engine(url)
            with engine.begin() as conn:
                conn.execute(sa.text("CREATE TABLE t (x int)"))
                conn.execute(sa.text("INSERT INTO t VALUES (42)"))
            engine.dispose()
        with TemporaryPostgres(base) as second:
            engine = sa.create_engine(second.url.rsplit("/", 1)[0] + "/kept")
            with engine.connect() as conn:
                assert conn.execute(sa.text("SELECT x FROM t")).scalar_one() == 42
            engine.dispose()
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_dropped_database_is_gone_even_with_a_connection_open(tmp_path: Path) -> None:
    """The session's server drops each test's database after it; a test's engine that was
    not disposed must not keep the space in use."""
    with TemporaryPostgres(tmp_path / "pg") as server:
        url = server.create_database("to_drop")
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        server.drop_database(url)  # the pooled connection is still open
        engine.dispose()
        admin = sa.create_engine(server.url)
        with admin.connect() as conn:
            names = conn.execute(sa.text("SELECT datname FROM pg_database")).scalars().all()
        admin.dispose()
        assert "to_drop" not in names
        with pytest.raises(ValueError, match="not a database"):
            server.drop_database(server.url)
