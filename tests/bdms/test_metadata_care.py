"""Metadata corrections and re-extraction: every change is an event keeping the old value."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import update

from dpps.bdms.archive import Archive
from dpps.catalog.engine import transaction
from dpps.catalog.models import DIDRow
from dpps.core.errors import InvalidInput, NotFound
from tests.bdms.helpers import make_fits

LFN = "/ctao/dl0/obs_100/tel_001.fits"


@pytest.fixture
def stored(archive: Archive, tmp_path: Path) -> None:
    archive.ingest([make_fits(tmp_path, obs_id=100, tel_id=1)], "CTAO-N", lfn=LFN)


@pytest.mark.verifies_usecase("UC-110-1.2.2")
@pytest.mark.usefixtures("stored")
def test_meta_set_records_old_values(archive: Archive) -> None:
    changes = archive.set_meta(LFN, {"category": "B", "quality": "good"}, reason="review")
    assert {(c.key, c.old, c.new) for c in changes} == {
        ("category", None, "B"),
        ("quality", None, "good"),
    }
    assert [f.name for f in archive.list_files("category=B and meta.quality=good")] == [LFN]
    event = next(e for e in archive.show(LFN).events if e.action == "meta.set")
    assert event.reason == "review"
    assert {"key": "category", "old": None, "new": "B"} in event.details["changes"]
    assert archive.set_meta(LFN, {"category": "B"}) == []  # no change, no event


@pytest.mark.usefixtures("stored")
def test_meta_set_refuses_bad_keys_and_protected_fields(archive: Archive) -> None:
    with pytest.raises(InvalidInput, match="cannot be changed"):
        archive.set_meta(LFN, {"adler32": "00000000"})
    with pytest.raises(InvalidInput, match="metadata key"):
        archive.set_meta(LFN, {"Bad Key": "x"})
    with pytest.raises(InvalidInput, match="obs_id"):
        archive.set_meta(LFN, {"obs_id": "not-a-number"})
    with pytest.raises(NotFound):
        archive.set_meta("/no/such.fits", {"quality": "x"})


@pytest.mark.verifies_usecase("UC-110-1.2.2")
@pytest.mark.usefixtures("stored")
def test_refresh_restores_extracted_values_and_keeps_manual_ones(archive: Archive) -> None:
    archive.set_meta(LFN, {"quality": "good"})
    # Simulate an older, buggy extractor having stored wrong values.
    with transaction(archive.sessions) as session:
        session.execute(update(DIDRow).where(DIDRow.name == LFN).values(obs_id=999, tel_id=None))
    dry = archive.refresh_meta(f"name={LFN}", dry_run=True)
    assert dry.changed == 1
    assert archive.show(LFN).file.obs_id == 999
    report = archive.refresh_meta(f"name={LFN}")
    assert report.examined == 1
    assert report.changed == 1
    assert not report.failed
    assert {(c.key, c.old, c.new) for c in report.changes} >= {
        ("obs_id", 999, 100),
        ("tel_id", None, 1),
    }
    info = archive.show(LFN).file
    assert (info.obs_id, info.tel_id, info.meta["quality"]) == (100, 1, "good")
    assert archive.refresh_meta(f"name={LFN}").changed == 0


@pytest.mark.verifies_usecase("UC-110-1.2.2")
def test_refresh_keeps_metadata_given_at_ingest(archive: Archive, tmp_path: Path) -> None:
    archive.ingest(
        [make_fits(tmp_path, obs_id=7)],
        "CTAO-N",
        lfn="/given.fits",
        meta={"campaign": "commissioning", "category": "C"},
    )
    report = archive.refresh_meta("name=/given.fits")
    assert report.changed == 0, report.changes
    info = archive.show("/given.fits").file
    assert (info.meta["campaign"], info.category, info.obs_id) == ("commissioning", "C", 7)
