"""Transient catalog failures are retried with backoff or reported; nothing is half done."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import create_engine

from dpps.acada.simulate import simulate
from dpps.bdms.archive import Archive
from dpps.catalog.engine import make_engine
from dpps.core.daemon import DaemonContext
from dpps.core.errors import Unavailable
from tests.acada.helpers import assert_exactly_once, lfn_of, small, triggers_left

QUEUE = "UC-110-1.1.4"


@contextmanager
def catalog_locked(url: str) -> Iterator[threading.Event]:
    """Hold the catalog's write lock in another connection until the yielded event is set
    (SQLite: the database lock; PostgreSQL: an EXCLUSIVE lock on the dids table)."""
    release = threading.Event()
    held = threading.Event()

    def hold() -> None:
        if url.startswith("sqlite"):
            conn: Any = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
            conn.execute("BEGIN IMMEDIATE")
            held.set()
            release.wait(120)
            conn.execute("ROLLBACK")
            conn.close()
            return
        engine = create_engine(url)
        with engine.connect() as conn:
            conn.exec_driver_sql("LOCK TABLE dids IN EXCLUSIVE MODE")
            held.set()
            release.wait(120)
            conn.rollback()
        engine.dispose()

    thread = threading.Thread(target=hold)
    thread.start()
    assert held.wait(60)
    try:
        yield release
    finally:
        release.set()
        thread.join(60)


def impatient(archive: Archive, catalog_url: str, attempts: int) -> Archive:
    """The same workspace through an engine that gives up on a lock after ~0.1 s."""
    if catalog_url.startswith("sqlite"):
        engine = make_engine(catalog_url, busy_timeout_s=0.05)
    else:
        engine = create_engine(catalog_url, connect_args={"options": "-c lock_timeout=100"})
    acada = archive.config.acada.model_copy(
        update={"retry_attempts": attempts, "retry_base_s": 0.1, "retry_max_s": 0.8}
    )
    config = archive.config.model_copy(update={"acada": acada})
    return Archive(config, engine=engine)


@pytest.mark.verifies_usecase(QUEUE)
def test_locked_catalog_is_retried_with_backoff(archive: Archive, catalog_url: str) -> None:
    patient = impatient(archive, catalog_url, attempts=10)
    queue = patient.acada.queue(executor="inline")
    try:
        files = simulate(queue.settings.landing, small())
        with catalog_locked(catalog_url) as release:
            threading.Timer(1.0, release.set).start()
            handled = queue.run_once(DaemonContext("ingest"))
        assert handled == len(files)
        assert queue.metrics.transient._value.get() >= 1  # it did meet the lock
    finally:
        queue.close()
        patient.close()
    assert_exactly_once(archive, [lfn_of(queue.settings.landing, f) for f in files])
    assert triggers_left(queue.settings.landing) == []


@pytest.mark.verifies_usecase(QUEUE)
def test_catalog_down_too_long_is_unavailable_and_leaves_nothing_half_done(
    archive: Archive, catalog_url: str
) -> None:
    hasty = impatient(archive, catalog_url, attempts=2)
    queue = hasty.acada.queue(executor="inline")
    try:
        files = simulate(queue.settings.landing, small())
        with catalog_locked(catalog_url), pytest.raises(Unavailable, match="failed 2 times"):
            queue.run_once(DaemonContext("ingest"))
        assert len(triggers_left(queue.settings.landing)) == len(files)
        assert_exactly_once(archive, [])
        assert queue.run_once(DaemonContext("ingest")) == len(files)  # the lock is gone
    finally:
        queue.close()
        hasty.close()
    assert_exactly_once(archive, [lfn_of(queue.settings.landing, f) for f in files])
