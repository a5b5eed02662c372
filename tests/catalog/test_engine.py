"""The one write helper: ``transaction`` (with the SQLite writer lock) and ``write`` (retried).

Failures are real: a PostgreSQL deadlock between two threads, a duplicate key, a SQLite file
locked by another connection past its busy timeout. Only ``Unavailable`` is raised by the unit
of work itself, standing for a catalog that went away and came back.
"""

from __future__ import annotations

import fcntl
import gc
import os
import threading
from pathlib import Path

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dpps.bdms.archive import Archive
from dpps.catalog import engine as engine_mod
from dpps.catalog.engine import (
    Retry,
    lock_path,
    make_engine,
    make_sessionmaker,
    transaction,
    write,
)
from dpps.catalog.models import HeartbeatRow
from dpps.core.clock import utcnow
from dpps.core.errors import Unavailable

FAST = {"base_s": 0.001, "jitter": (1.0, 1.0)}


def _beat(session: Session, instance: str) -> None:
    now = utcnow()
    session.add(
        HeartbeatRow(
            daemon="test",
            instance=instance,
            hostname="h",
            pid=1,
            started_at=now,
            last_seen=now,
            details={},
        )
    )
    session.flush()


def test_writers_queue_on_a_lock_file_only_on_sqlite(archive: Archive) -> None:
    path = lock_path(archive.engine)
    if archive.engine.dialect.name == "sqlite":
        assert path is not None
        assert path.endswith(".wms-writer")
        assert Path(path).parent.is_dir()
    else:
        assert path is None
    with transaction(archive.sessions, serialise_on_sqlite=True) as session:
        assert session.in_transaction()  # a plain transaction on PostgreSQL
    if path is not None:
        assert Path(path).exists()


def test_the_lock_file_excludes_other_writers_while_a_transaction_runs(tmp_path: Path) -> None:
    archive = Archive.init(tmp_path / "ws")
    path = lock_path(archive.engine)
    assert path is not None
    seen: list[str] = []

    def other() -> None:
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            seen.append("got the lock")
        except BlockingIOError:
            seen.append("excluded")
        finally:
            os.close(fd)

    with transaction(archive.sessions, serialise_on_sqlite=True):
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    other()  # released with the transaction
    assert seen == ["excluded", "got the lock"]
    archive.close()


def test_each_thread_has_its_own_lock_descriptor_closed_with_the_thread(tmp_path: Path) -> None:
    """Two threads exclude each other (one shared descriptor would let both in), and a
    finished thread's descriptor is closed (workers start a heartbeat thread per job)."""
    path = str(tmp_path / "catalog.db.wms-writer")
    mine = engine_mod._lock_fd(path)
    fcntl.flock(mine, fcntl.LOCK_EX)
    seen: list[str] = []

    def other() -> None:
        fd = engine_mod._lock_fd(path)
        seen.append("same" if fd == mine else "own")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            seen.append("got the lock")
        except BlockingIOError:
            seen.append("excluded")

    open_before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    gc.collect()
    fcntl.flock(mine, fcntl.LOCK_UN)
    assert seen == ["own", "excluded"] * 5
    assert len(os.listdir("/proc/self/fd")) == open_before


def test_pauses_double_up_to_the_maximum_within_the_jitter() -> None:
    retry = Retry(base_s=0.2, max_s=1.0, jitter=(0.5, 1.5))
    for failed, nominal in [(1, 0.2), (2, 0.4), (3, 0.8), (4, 1.0), (9, 1.0)]:
        for _ in range(20):
            assert 0.5 * nominal <= retry.pause_s(failed) <= 1.5 * nominal
    daemon = Retry()  # the daemons' old write_retrying: uniform(0.01, 0.05) * 2**n
    assert all(0.01 <= daemon.pause_s(1) <= 0.05 for _ in range(20))
    assert all(0.04 <= daemon.pause_s(3) <= 0.2 for _ in range(20))


def test_a_deadlock_is_redone_by_default(archive: Archive) -> None:
    """Two writers lock two rows in opposite orders; PostgreSQL aborts one of them with
    40P01 and ``write`` redoes it, so both finish. (SQLite writers never deadlock: the
    second one waits for the first one's BEGIN IMMEDIATE.)"""
    if archive.engine.dialect.name != "postgresql":
        pytest.skip("deadlocks are PostgreSQL's")
    with transaction(archive.sessions) as session:
        _beat(session, "a")
        _beat(session, "b")
    barrier = threading.Barrier(2)
    attempts: list[str] = []
    errors: list[BaseException] = []

    def writer(first: str, second: str) -> None:
        def step(session: Session) -> None:
            attempts.append(first)
            session.execute(text("SET LOCAL deadlock_timeout = '100ms'"))
            for n, instance in enumerate((first, second)):
                session.execute(
                    update(HeartbeatRow)
                    .where(HeartbeatRow.instance == instance)
                    .values(details={"by": first})
                )
                if n == 0 and len(attempts) <= 2:
                    barrier.wait(timeout=30)

        try:
            write(archive.sessions, step)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=p) for p in [("a", "b"), ("b", "a")]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(attempts) == 3  # one of the two was aborted once and redone


def test_only_deadlocks_are_redone_by_default(archive: Archive) -> None:
    calls: list[int] = []

    def gone(_session: Session) -> None:
        calls.append(1)
        raise Unavailable("catalog restarting")

    with pytest.raises(Unavailable):
        write(archive.sessions, gone)
    assert calls == [1]  # the daemon runner retries Unavailable after its pause

    def duplicate(session: Session) -> None:
        calls.append(2)
        _beat(session, "same")
        _beat(session, "same")

    with pytest.raises(IntegrityError):
        write(archive.sessions, duplicate)
    assert calls == [1, 2]


def test_transient_failures_are_redone_and_reported(archive: Archive) -> None:
    retried: list[tuple[int, str]] = []
    outcomes = iter([Unavailable("down"), Unavailable("still down"), None])

    def flaky(session: Session) -> str:
        exc = next(outcomes)
        if exc is not None:
            raise exc
        _beat(session, "flaky")
        return "done"

    retry = Retry(
        attempts=5, on="transient", on_retry=lambda n, e: retried.append((n, str(e))), **FAST
    )
    assert write(archive.sessions, flaky, retry=retry) == "done"
    assert retried == [(1, "down"), (2, "still down")]
    with archive.sessions() as session:
        assert session.scalar(select(HeartbeatRow.instance)) == "flaky"


def test_transient_failures_end_as_unavailable_after_the_last_attempt(archive: Archive) -> None:
    calls: list[int] = []

    def down(_session: Session) -> None:
        calls.append(1)
        raise Unavailable("down")

    with pytest.raises(Unavailable, match="catalog write failed 3 times: down"):
        write(archive.sessions, down, retry=Retry(attempts=3, on="transient", **FAST))
    assert len(calls) == 3


def test_an_integrity_error_is_redone_at_most_integrity_attempts_times(archive: Archive) -> None:
    with transaction(archive.sessions) as session:
        _beat(session, "taken")
    calls: list[int] = []

    def race(session: Session) -> None:
        calls.append(1)
        _beat(session, "taken")

    retry = Retry(attempts=10, on="transient", integrity_attempts=3, **FAST)
    with pytest.raises(IntegrityError):
        write(archive.sessions, race, retry=retry)
    assert len(calls) == 3


def test_a_stop_request_cuts_the_pause_short(archive: Archive) -> None:
    stop = threading.Event()
    stop.set()

    def down(_session: Session) -> None:
        raise Unavailable("down")

    retry = Retry(attempts=5, on="transient", base_s=60.0)
    with pytest.raises(Unavailable, match="stopped while retrying"):
        write(archive.sessions, down, retry=retry, stop=stop)


def test_a_sqlite_lock_held_past_the_busy_timeout_is_unavailable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    Archive.init(tmp_path / "ws", catalog_url=url).close()
    holder = make_engine(url)
    waiter = make_sessionmaker(make_engine(url, busy_timeout_s=0.05))
    with transaction(make_sessionmaker(holder)) as session:
        _beat(session, "holder")
        with pytest.raises(Unavailable, match="catalog database unavailable"):
            write(waiter, lambda s: _beat(s, "waiter"))
