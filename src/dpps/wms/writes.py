"""Write transactions of the job manager and its workers, queued in turn on SQLite.

SQLite has one writer at a time, and a connection that finds the database locked polls for it
with growing sleeps (1, 2, 5, 10 ... 100 ms: SQLite's busy handler). The manager and its
workers write a few short transactions per job, so on the embedded catalog they would spend
more time asleep in that handler than writing. Here they first queue on an exclusive
``flock`` next to the database file: the kernel wakes the next writer the moment the previous
one is done. Other writers (the archive's daemons, the CLI) still meet the WMS in SQLite's own
lock and busy timeout, so nothing depends on everyone using this. A process that dies drops its
lock with its file descriptors. PostgreSQL locks rows, not the database: there this is just
``transaction``.

Never nest these (a write transaction inside another one in the same thread): the inner one
would wait for the outer one forever instead of timing out.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from dpps.catalog.engine import transaction


def lock_path(engine: Engine | None) -> str | None:
    """The lock file of an SQLite database file; None for PostgreSQL or in-memory SQLite."""
    if engine is None or engine.dialect.name != "sqlite":
        return None
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return f"{database}.wms-writer"


@contextmanager
def write(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """``transaction(sessions)``, taken in turn with the other WMS writers on SQLite."""
    bind = sessions.kw.get("bind")
    path = lock_path(bind if isinstance(bind, Engine) else None)
    if path is None:
        with transaction(sessions) as session:
            yield session
        return
    fd = _fd(path)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with transaction(sessions) as session:
            yield session
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


class _Descriptors(dict[str, int]):
    """One thread's lock-file descriptors, closed when the thread ends (its locals go)."""

    def __del__(self) -> None:
        for fd in self.values():
            with suppress(OSError):
                os.close(fd)


_LOCAL = threading.local()


def _fd(path: str) -> int:
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
