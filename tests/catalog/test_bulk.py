"""``insert_rows`` on both backends and both paths (PostgreSQL's COPY, ordinary INSERT): the
same rows land, Python-side defaults are applied, conflicting rows are skipped, and a failure
leaves nothing behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Table, func, select
from sqlalchemy.exc import IntegrityError

from dpps.bdms.archive import Archive
from dpps.catalog import bulk, events
from dpps.catalog.engine import transaction
from dpps.catalog.models import DIDRow, EventRow, RSERow, TransferRow
from dpps.core.clock import utcnow
from tests.bdms.replication_helpers import ingest_dataset

TRANSFERS: Table = TransferRow.__table__  # type: ignore[assignment]


@pytest.fixture(params=["copy", "insert"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(bulk, "COPY_FROM", 1 if request.param == "copy" else 10**9)
    return str(request.param)


def _ids(archive: Archive) -> tuple[list[int], list[int]]:
    with archive.sessions() as s:
        dids = list(s.scalars(select(DIDRow.id).where(DIDRow.did_type == "FILE")))
        rses = list(s.scalars(select(RSERow.id).where(RSERow.name.in_(["PIC", "CTAO-S"]))))
    return dids, rses


def _row(did_id: int, rse_id: int, **extra: Any) -> dict[str, Any]:
    return {
        "did_id": did_id,
        "dest_rse_id": rse_id,
        "state": "QUEUED",
        "bytes": 5,
        "next_attempt_at": utcnow(),
        **extra,
    }


def test_rows_defaults_and_conflicts(archive: Archive, tmp_path: Path, path: str) -> None:
    ingest_dataset(archive, tmp_path / "src", 4, size=100)
    dids, (pic, other) = _ids(archive)
    with transaction(archive.sessions) as s:
        bulk.insert_rows(s, TRANSFERS, [_row(d, pic) for d in dids])
    with transaction(archive.sessions) as s:  # two collide with the open ones: skipped
        rows = [_row(d, pic, activity="again") for d in dids[:2]]
        rows += [_row(d, other, activity="new") for d in dids]
        bulk.insert_rows(s, TRANSFERS, rows, ignore_conflicts=True)
    with archive.sessions() as s:
        t = TransferRow
        got = sorted(
            s.execute(
                select(t.did_id, t.dest_rse_id, t.activity, t.priority, t.attempts, t.max_attempts)
            )
        )
    expected = sorted(
        [(d, pic, "default", 3, 0, 5) for d in dids] + [(d, other, "new", 3, 0, 5) for d in dids]
    )
    assert got == expected, path


def test_a_failed_bulk_insert_leaves_nothing(archive: Archive, tmp_path: Path, path: str) -> None:
    ingest_dataset(archive, tmp_path / "src", 3, size=100)
    dids, (pic, _other) = _ids(archive)
    rows = [_row(d, pic) for d in dids] + [_row(dids[0], pic)]  # a duplicate open transfer
    with pytest.raises(IntegrityError), transaction(archive.sessions) as s:
        bulk.insert_rows(s, TRANSFERS, rows)
    with archive.sessions() as s:
        assert s.scalar(select(func.count()).select_from(TransferRow)) == 0
    with transaction(archive.sessions) as s:  # the connection is usable afterwards
        bulk.insert_rows(s, TRANSFERS, rows[:-1])
        bulk.insert_rows(s, TRANSFERS, [])
    with archive.sessions() as s:
        assert s.scalar(select(func.count()).select_from(TransferRow)) == len(dids)


def test_events_keep_their_json_details(archive: Archive, path: str) -> None:
    """Events go through ``insert_rows`` (COPY on PostgreSQL): a JSON document with quotes,
    backslashes, tabs, newlines and non-ASCII text must come back as it went in."""
    details = {"reason": 'say "no"\\\tthen\nstop', "nested": {"ids": [1, 2]}, "site": "La Palma ñ"}
    with transaction(archive.sessions) as s:
        events.record_many(s, [{"account": "root", "action": "test.json", "details": details}] * 3)
    with archive.sessions() as s:
        got = list(s.scalars(select(EventRow.details).where(EventRow.action == "test.json")))
    assert got == [details] * 3, path
