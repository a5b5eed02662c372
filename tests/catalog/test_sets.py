"""``among``: the same rows on both backends (``IN`` on SQLite, ``= ANY(array)`` on
PostgreSQL), an empty set matching nothing."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from dpps.bdms.archive import Archive
from dpps.catalog.models import DIDRow
from dpps.catalog.sets import among
from tests.bdms.replication_helpers import ingest_dataset


def test_among_selects_the_same_rows_as_in(archive: Archive, tmp_path: Path) -> None:
    ingest_dataset(archive, tmp_path / "src", 5, size=10)
    with archive.sessions() as s:
        ids = sorted(s.scalars(select(DIDRow.id).where(DIDRow.did_type == "FILE")))
        wanted = [ids[0], ids[3], 10**9]  # one id that does not exist
        got = sorted(s.scalars(select(DIDRow.id).where(among(s, DIDRow.id, wanted))))
        assert got == [ids[0], ids[3]]
        assert list(s.scalars(select(DIDRow.id).where(among(s, DIDRow.id, [])))) == []
        everything = select(DIDRow.id).where(among(s, DIDRow.id, iter(ids)))  # any iterable
        assert sorted(s.scalars(everything)) == ids
