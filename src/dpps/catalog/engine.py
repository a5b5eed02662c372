"""Engines, sessions and schema migrations for SQLite (embedded) and PostgreSQL (production).

SQLite runs in WAL mode with a busy timeout, so readers never block the one writer and short
writer transactions queue instead of failing. The schema is only ever created by Alembic, so a
catalog made today can be upgraded in thirty years.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from dpps.core.errors import Unavailable

#: PostgreSQL deadlock and serialisation failures: the transaction can be redone as it is.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})

#: Execution option marking a connection whose transaction will write (see ``transaction``).
WRITE_OPTION = "dpps_write"


def make_engine(url: str, busy_timeout_s: float = 30.0, echo: bool = False) -> Engine:
    """Create an engine with the settings each backend needs for concurrent daemons."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url, echo=echo, connect_args={"timeout": busy_timeout_s, "check_same_thread": False}
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy, not pysqlite, decide when transactions begin (BEGIN IMMEDIATE
            # below), so a writer takes the lock up front instead of failing on upgrade.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            # LIKE is case-sensitive, as on PostgreSQL, and can then use the name index.
            cur.execute("PRAGMA case_sensitive_like=ON")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # Writers take the lock up front (and wait busy_timeout for it); readers use a
            # deferred transaction so that, with WAL, they never wait for a writer.
            immediate = conn.get_execution_options().get(WRITE_OPTION, False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def _alembic_config(engine: Engine) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option(
        "script_location", str(resources.files("dpps.catalog").joinpath("migrations"))
    )
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the catalog schema to ``revision`` (creating it on an empty database)."""
    try:
        command.upgrade(_alembic_config(engine), revision)
    except OperationalError as exc:
        raise Unavailable(f"catalog database unreachable: {exc.orig}") from None


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(_alembic_config(engine)).get_current_head()


@contextmanager
def transaction(factory: sessionmaker[Session], *, commit: bool = True) -> Iterator[Session]:
    """One unit of work that writes: commit on success (unless ``commit`` is False, for dry
    runs), roll back on any error. Reads need no transaction of their own: use ``factory()``.
    """
    with factory() as session:
        try:
            session.connection(execution_options={WRITE_OPTION: True})
            yield session
            if commit:
                session.commit()
            else:
                session.rollback()
        except OperationalError as exc:
            session.rollback()
            if getattr(exc.orig, "sqlstate", None) in RETRYABLE_SQLSTATES:
                raise  # deadlock or serialisation conflict: the caller may simply redo it
            # Locked past the busy timeout, connection lost, server restarting: transient, so
            # callers (daemons, the ingestion queue) retry after a pause instead of crashing.
            raise Unavailable(f"catalog database unavailable: {exc.orig}") from exc
        except BaseException:
            session.rollback()
            raise
