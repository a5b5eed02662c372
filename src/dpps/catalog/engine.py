"""Engines, sessions and schema migrations for SQLite (embedded) and PostgreSQL (production).

SQLite runs in WAL mode with a busy timeout, so readers never block the one writer and short
writer transactions queue instead of failing. The schema is only ever created by Alembic, so a
catalog made today can be upgraded in thirty years.

Every write goes through ``transaction`` (one unit of work, no retry) or ``write`` (the same,
redone as ``Retry`` says). ``Retry`` is what a caller decides about failures that may pass:

* ``Retry()`` (the daemons' steps and the archive's multi-statement deletions): only what
  PostgreSQL resolved by aborting the transaction - a deadlock or a serialisation conflict -
  is redone, a few times, after a few tens of milliseconds; everything else propagates at once,
  a SQLite lock held past the busy timeout as ``Unavailable``, which the daemon runner retries
  after a pause;
* ``Retry(on="transient", ...)`` (the ACADA ingestion queue, which must ride out a catalog
  restart): also ``Unavailable`` and any database error, with exponential backoff and jitter,
  an ``IntegrityError`` (two daemons made the same container) at most ``integrity_attempts``
  times, ``Unavailable`` when the attempts are used up.

``serialise_on_sqlite`` makes writers queue on an exclusive ``flock`` next to the SQLite file
before they begin (the WMS's manager and workers, see ``lock_path``).

Alembic is imported only to migrate: every opening of the archive checks the schema revision,
and loading Alembic for that check (75 ms, with Mako and Pygments) was a good part of each CLI
command's start (issue 14). The check reads Alembic's version table with plain SQL and the
head from the migration scripts' ``revision``/``down_revision`` lines.
"""

from __future__ import annotations

import ast
import fcntl
import functools
import json
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from dpps.core.errors import ConfigError, NotFound, Unavailable

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

#: PostgreSQL deadlock and serialisation failures: the transaction can be redone as it is.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})

#: Execution option marking a connection whose transaction will write (see ``transaction``).
WRITE_OPTION = "dpps_write"

#: JSON columns are written strictly: Python's default would write NaN and Infinity, which are
#: not JSON, and one such value makes the database fail every JSON query touching that row.
#: One encoder for every value (``json.dumps`` with an option builds one per call, a third of
#: the cost of the three documents each registered file carries); the same text.
strict_json = json.JSONEncoder(allow_nan=False).encode


#: libpq's TCP settings for a site process reaching the catalog over a WAN (any of them given
#: in the catalog URL wins). Without them a connection whose link went down stays open: a
#: query sent into it waits for TCP's retransmissions, which back off to minutes, long after
#: the link is back. With them a connection that cannot deliver for 30 s, or answers no
#: keepalive within 25 s of silence, fails; the daemon retries its pass on a new one.
POSTGRES_TCP: dict[str, int] = {
    "connect_timeout": 10,
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
}


def make_engine(url: str, busy_timeout_s: float = 30.0, echo: bool = False) -> Engine:
    """Create an engine with the settings each backend needs for concurrent daemons."""
    try:
        make_url(url)
    except ArgumentError as exc:  # a typo in dpps.yaml, not a bug: exit 4, not "internal error"
        raise ConfigError(f"catalog url is not a database URL: {exc}") from None
    try:
        return _make_engine(url, busy_timeout_s, echo)
    except (ArgumentError, ImportError) as exc:  # unknown dialect or driver
        raise ConfigError(f"catalog url cannot be used: {exc}") from None


def _make_engine(url: str, busy_timeout_s: float, echo: bool) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            echo=echo,
            json_serializer=strict_json,
            connect_args={"timeout": busy_timeout_s, "check_same_thread": False},
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
    given = make_url(url).query
    return create_engine(
        url,
        echo=echo,
        json_serializer=strict_json,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=20,
        connect_args={k: v for k, v in POSTGRES_TCP.items() if k not in given},
    )


def sqlite_file(url: str | URL) -> str | None:
    """The database file an SQLite URL names; None for PostgreSQL, in-memory or URI-mode
    SQLite (which have no one file to look at), or a malformed URL (``make_engine`` says so)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return database


def require_catalog(url: str) -> None:
    """Refuse to open an SQLite catalog whose file is missing, instead of letting SQLite
    create an empty one: a deleted, moved or unmounted catalog would otherwise start a second,
    empty archive beside the real one. Only ``dpps init`` (``Archive.init``) creates one.
    PostgreSQL databases are created by their administrator; an empty one gets its schema."""
    database = sqlite_file(url)
    if database is not None and not os.path.exists(database):
        raise NotFound(
            f"catalog {database} does not exist (moved, deleted or not mounted?); "
            "restore it, or run 'dpps init' to create a new archive"
        )


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def single_statement_reads(engine: Engine) -> Engine:
    """The engine for reads of one statement each, which need no transaction to be consistent
    (``locate``, a listing's page with its total). Never for writes.

    On PostgreSQL its connections are in autocommit: no BEGIN and ROLLBACK round trips around
    the statement (with the pool's ping, five round trips became two for ``locate``), and
    psycopg keeps the statements it prepared, which every ROLLBACK discards (through a
    session none is ever prepared, so each listing is planned again with its literal values).
    On SQLite, the engine itself: a deferred BEGIN is no round trip there, and pysqlite's
    autocommit switch would undo the connection's own transaction handling (the ``begin``
    listener above).
    """
    if engine.dialect.name != "postgresql":
        return engine
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def _alembic_config(engine: Engine) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option(
        "script_location", str(resources.files("dpps.catalog").joinpath("migrations"))
    )
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the catalog schema to ``revision`` (creating it on an empty database)."""
    from alembic import command

    try:
        command.upgrade(_alembic_config(engine), revision)
    except OperationalError as exc:
        raise Unavailable(f"catalog database unreachable: {exc.orig}") from None


#: Alembic's table of applied revisions (its default name, which dpps keeps).
VERSION_TABLE = "alembic_version"


def current_revision(engine: Engine) -> str | None:
    """The catalog's schema revision (None: no schema yet), as Alembic's
    ``MigrationContext.get_current_revision`` reads it, without loading Alembic. Several rows
    (branches, which dpps never makes) read as None: ``upgrade`` then lets Alembic decide."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return None
        rows = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    return str(rows[0]) if len(rows) == 1 else None


def head_revision(engine: Engine) -> str | None:
    """The newest revision of the migration scripts shipped with dpps."""
    return _head_from_scripts() or _head_from_alembic(engine)


@functools.cache
def _head_from_scripts() -> str | None:
    """The one revision no script revises; None when anything is unusual (no scripts, a
    merge of branches, a computed value): Alembic then answers."""
    scripts = _script_revisions()
    if scripts is None:
        return None
    heads = set(scripts) - {down for down in scripts.values() if down is not None}
    return heads.pop() if len(heads) == 1 else None


def known_revision(revision: str) -> bool | None:
    """Whether the migration scripts shipped with this dpps know ``revision`` (None: the
    scripts could not be read without Alembic). A catalog at a revision they do not know was
    migrated by a newer dpps: this one must not touch it."""
    scripts = _script_revisions()
    return None if scripts is None else revision in scripts


@functools.cache
def _script_revisions() -> dict[str, str | None] | None:
    """{revision: down_revision} of the migration scripts, read from their module-level
    literals (Alembic's template writes them so); None when a value is not a literal."""
    found: dict[str, str | None] = {}
    versions = resources.files("dpps.catalog").joinpath("migrations", "versions")
    for script in versions.iterdir():
        if not script.name.endswith(".py"):
            continue
        values: dict[str, Any] = {}
        for node in ast.parse(script.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
                if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
                    try:
                        values[target.id] = ast.literal_eval(node.value)
                    except ValueError:
                        return None
        revision, down = values.get("revision"), values.get("down_revision")
        if not isinstance(revision, str) or not (down is None or isinstance(down, str)):
            return None
        found[revision] = down
    return found or None


def _head_from_alembic(engine: Engine) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config(engine)).get_current_head()


@contextmanager
def transaction(
    factory: sessionmaker[Session], *, commit: bool = True, serialise_on_sqlite: bool = False
) -> Iterator[Session]:
    """One unit of work that writes: commit on success (unless ``commit`` is False, for dry
    runs), roll back on any error. Reads need no transaction of their own: use ``factory()``.

    ``serialise_on_sqlite``: first queue on the writer lock file beside an SQLite catalog (see
    ``lock_path``); a plain transaction on PostgreSQL. Never nest such transactions in one
    thread: the inner one would wait for the outer one forever instead of timing out.
    """
    bind = factory.kw.get("bind")
    path = lock_path(bind if isinstance(bind, Engine) else None) if serialise_on_sqlite else None
    if path is None:
        with _transaction(factory, commit) as session:
            yield session
        return
    fd = _lock_fd(path)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with _transaction(factory, commit) as session:
            yield session
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


@contextmanager
def _transaction(factory: sessionmaker[Session], commit: bool) -> Iterator[Session]:
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


# -- redoing a write ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Retry:
    """When and how often ``write`` redoes a failed transaction.

    The pause before attempt ``n + 1`` (``n`` from 0) is ``min(max_s, base_s * 2**n)`` times a
    factor drawn uniformly from ``jitter``, so that writers that collided do not collide again.
    """

    #: Attempts in all (1: never redo).
    attempts: int = 5
    #: First pause (s), doubled after each failed attempt, never above ``max_s``.
    base_s: float = 0.01
    max_s: float = float("inf")
    #: Range of the random factor applied to each pause.
    jitter: tuple[float, float] = (1.0, 5.0)
    #: "conflict": only PostgreSQL's deadlock and serialisation failures (the transaction can
    #: be redone as it is); "transient": also ``Unavailable`` and any database error.
    on: Literal["conflict", "transient"] = "conflict"
    #: With "transient": attempts after which an ``IntegrityError`` is raised (a race that
    #: redoing resolves quickly, or a real conflict that it never will). None: ``attempts``.
    integrity_attempts: int | None = None
    #: Called before each pause with the attempt that failed (from 1) and its error.
    on_retry: Callable[[int, Exception], None] | None = None

    def pause_s(self, failed: int) -> float:
        """The pause after ``failed`` failed attempts (from 1)."""
        return min(self.max_s, self.base_s * 2.0 ** (failed - 1)) * random.uniform(*self.jitter)


#: Daemon steps and deletions: redo what PostgreSQL aborted to break a deadlock.
CONFLICTS = Retry()


def write[T](
    sessions: sessionmaker[Session],
    fn: Callable[[Session], T],
    *,
    retry: Retry = CONFLICTS,
    serialise_on_sqlite: bool = False,
    stop: threading.Event | None = None,
) -> T:
    """Run ``fn`` in one write ``transaction`` and return its result, redoing the whole
    transaction as ``retry`` says. ``fn`` must be safe to run again after a rollback (it is
    the idempotent step of a daemon, or rereads what it decides on). ``stop`` cuts a pause
    short: the write then fails with ``Unavailable`` instead of waiting.
    """
    for attempt in range(1, retry.attempts + 1):
        try:
            with transaction(sessions, serialise_on_sqlite=serialise_on_sqlite) as session:
                return fn(session)
        except (DBAPIError, Unavailable) as exc:
            if not _redo(retry, attempt, exc):
                raise
            if retry.on_retry is not None:
                retry.on_retry(attempt, exc)
            pause = retry.pause_s(attempt)
            if stop is None:
                time.sleep(pause)
            elif stop.wait(pause):
                raise Unavailable("stopped while retrying a catalog write") from exc
    raise AssertionError("unreachable")  # pragma: no cover


def _redo(retry: Retry, attempt: int, exc: DBAPIError | Unavailable) -> bool:
    """Whether ``write`` redoes after ``exc`` ended ``attempt``; raises what ends it for good
    when that is not ``exc`` itself."""
    if retry.on == "conflict":
        if isinstance(exc, Unavailable):
            return False
        code = getattr(exc.orig, "sqlstate", None)
        if code in RETRYABLE_SQLSTATES and attempt < retry.attempts:
            return True
        if "database is locked" in str(exc.orig):
            raise Unavailable(f"catalog busy: {exc.orig}") from None
        return False
    if isinstance(exc, IntegrityError):
        limit = retry.integrity_attempts or retry.attempts
        return attempt < min(limit, retry.attempts)
    if attempt < retry.attempts:
        return True
    raise Unavailable(f"catalog write failed {attempt} times: {exc}") from exc


# -- the writer lock file (SQLite) -------------------------------------------------------------
#
# SQLite has one writer at a time, and a connection that finds the database locked polls for
# it with growing sleeps (1, 2, 5, 10 ... 100 ms: SQLite's busy handler). The WMS's manager and
# workers write a few short transactions per job, so on the embedded catalog they would spend
# more time asleep in that handler than writing. With ``serialise_on_sqlite`` they first queue
# on an exclusive ``flock`` next to the database file: the kernel wakes the next writer the
# moment the previous one is done. Other writers (the archive's daemons, the CLI) still meet
# them in SQLite's own lock and busy timeout, so nothing depends on everyone using it. A
# process that dies drops its lock with its file descriptors. PostgreSQL locks rows, not the
# database: there it does nothing.


def lock_path(engine: Engine | None) -> str | None:
    """The writer lock file of an SQLite database file; None for PostgreSQL or in-memory
    SQLite."""
    database = None if engine is None else sqlite_file(engine.url)
    return None if database is None else f"{database}.wms-writer"


class _Descriptors(dict[str, int]):
    """One thread's lock-file descriptors, closed when the thread ends (its locals go)."""

    def __del__(self) -> None:
        for fd in self.values():
            with suppress(OSError):
                os.close(fd)


_LOCAL = threading.local()


def _lock_fd(path: str) -> int:
    """This thread's descriptor of the lock file. Each thread opens its own: a ``flock`` is
    held by an open file, so two threads sharing one descriptor would not exclude each other;
    keeping it saves an open and a close per transaction."""
    fds = getattr(_LOCAL, "fds", None)
    if fds is None:
        fds = _LOCAL.fds = _Descriptors()
    fd = fds.get(path)
    if fd is None:
        fd = fds[path] = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o664)
    return fd
