"""ACADA's landing area: a symbolic link is refused without reading what it points to
(issue 15, note 12c).

The queue used to read and checksum a link's target (metadata extraction opens the file)
before finding that it lay outside the RSE root: a link could make the daemon read any file
it may read, or block a worker forever on a FIFO. It now decides from ``lstat`` alone.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from dpps.bdms.archive import Archive
from dpps.bdms.ingestion.queue import IngestionQueue
from dpps.catalog.models import DIDRow
from dpps.core.daemon import DaemonContext
from tests.acada.helpers import assert_exactly_once, lfn_of, simulate_untriggered, small, trigger

ACADA = "UC-110-1.1.1"


@pytest.fixture
def queue(archive: Archive) -> Iterator[IngestionQueue]:
    q = archive.acada.queue(executor="inline")
    yield q
    q.close()


def run_within(queue: IngestionQueue, seconds: float, unblock: Path | None = None) -> None:
    """One pass of the queue in a thread; fails if it is still running after ``seconds``
    (then opens ``unblock``, a FIFO, for writing so the blocked reader returns)."""
    errors: list[BaseException] = []

    def one_pass() -> None:
        try:
            queue.run_once(DaemonContext("ingest"))
        except BaseException as exc:  # reported in the test's thread
            errors.append(exc)

    worker = threading.Thread(target=one_pass, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        if unblock is not None:
            fd = os.open(unblock, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)
        worker.join(30)
        pytest.fail("the queue opened what a landing symlink points to")
    if errors:
        raise errors[0]


def quarantine_reason(queue: IngestionQueue, rel: str) -> dict[str, str]:
    data: dict[str, str] = json.loads(
        (queue.settings.quarantine / (rel + ".reason.json")).read_text()
    )
    return data


@pytest.mark.verifies_usecase(ACADA)
def test_a_symlink_to_a_fifo_is_refused_without_opening_it(
    archive: Archive, queue: IngestionQueue, tmp_path: Path
) -> None:
    landing = queue.settings.landing
    good = simulate_untriggered(landing, small())
    fifo = tmp_path / "elsewhere.fifo"
    os.mkfifo(fifo)
    link = good[0].with_name("LINKED.fits.fz")
    link.symlink_to(fifo)
    for path in [*good, link]:
        trigger(path)
    run_within(queue, 60.0, unblock=fifo)
    assert_exactly_once(archive, [lfn_of(landing, f) for f in good])
    rel = link.relative_to(landing).as_posix()
    moved = queue.settings.quarantine / rel
    assert moved.is_symlink()  # the link itself was moved, its target left alone
    assert fifo.exists()
    reason = quarantine_reason(queue, rel)
    assert reason["error_type"] == "PermissionDenied"
    assert "symbolic link" in reason["reason"]


@pytest.mark.verifies_usecase(ACADA)
def test_a_symlink_to_a_landing_file_is_not_registered_under_the_link_name(
    archive: Archive, queue: IngestionQueue
) -> None:
    """A link to a file inside the landing area used to register the link's name with the
    target's path: one copy under two names."""
    landing = queue.settings.landing
    good = simulate_untriggered(landing, small())
    alias = good[0].with_name("ALIAS.fits.fz")
    alias.symlink_to(good[0])
    trigger(alias)
    run_within(queue, 60.0)
    with archive.sessions() as s:
        names = set(s.scalars(select(DIDRow.name).where(DIDRow.did_type == "FILE")))
    assert lfn_of(landing, alias) not in names
    assert (
        "symbolic link"
        in quarantine_reason(queue, alias.relative_to(landing).as_posix())["reason"]
    )


@pytest.mark.verifies_usecase(ACADA)
def test_a_fifo_in_the_landing_area_is_refused_without_opening_it(
    archive: Archive, queue: IngestionQueue
) -> None:
    landing = queue.settings.landing
    good = simulate_untriggered(landing, small())
    fifo = good[0].with_name("PIPE.fits.fz")
    os.mkfifo(fifo)
    trigger(fifo)
    run_within(queue, 60.0, unblock=fifo)
    reason = quarantine_reason(queue, fifo.relative_to(landing).as_posix())
    assert "not a regular file" in reason["reason"]
